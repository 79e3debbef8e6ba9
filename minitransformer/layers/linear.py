"""Linear layers, and the matrix-vector kernel of a compiled decode step.

A decode step multiplies one token's activations by every weight matrix of the model: a
matrix-vector product, which does two floating-point operations per weight it reads. Its speed is
the speed at which the weights come from memory, and a kernel's only job is to keep that stream
full. torch's ``F.linear`` calls the BLAS (MKL for fp32, oneDNN for bf16); int8 weights have no BLAS
kernel that keeps them int8 (``F.linear`` would need an fp32 copy of the whole matrix first).

:func:`matvec` writes the product as what it is, a broadcast multiply and a sum over the input
features::

    y[m, o] = sum_i W[o, i] * x[m, i]        (W[:, None, :] * x[None, :, :]).sum(-1)

Run eagerly, that would build the (O, M, I) product in memory: never do that. Under
``torch.compile``, inductor turns it into one loop per output row that reads the row once, converts
it to fp32 in registers, multiplies and accumulates: nothing is built, and an int8 matrix is read as
int8, a quarter of the bytes of fp32.

:func:`linear` picks the kernel per shape and dtype. :func:`matvec` is taken only while compiling
(``torch.compiler.is_compiling()``), on the CPU, for at most :data:`MATVEC_MAX_ROWS` rows of input
(a decode step has B rows, a prefill B * T), for the dtypes listed there; everywhere else
``F.linear``. :class:`Linear` is ``nn.Linear`` with that forward: the same parameters, the same
state dict, the same results.

Measured on the benchmark machine (2 cores; ``scripts/bench_generation.py``, ``docs/generation.md``),
GPT-2 124M compiled decode steps, tokens/s, reduction against the BLAS: fp32 batch 1 56.5 against
52.7 (MKL), fp32 batch 8 185 against 142, bf16 batch 1 81 against 46 (oneDNN, packed weights); bf16
batch 8 155 against 307, where oneDNN's AMX kernels pay: hence the table below.

Two details make the compiled reduction stream (found by reading inductor's generated C++):
:func:`_realized` keeps the producer of ``x`` out of the reduction loop, and :func:`_row_blocks`
gives the loop several independent accumulators.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: The most input rows (B * T) for which a compiled step takes :func:`matvec` instead of ``F.linear``,
#: per weight dtype; a dtype not listed never takes it. Measured in compiled GPT-2 124M decode steps
#: (module docstring): fp32 up to batch 8, bf16 at batch 1 only (at batch 8 oneDNN's packed bf16
#: kernels win, see ``generation/compiled.py``), int8 up to batch 8 (past it, the fp32 matrix is
#: rebuilt and multiplied as a prefill does).
MATVEC_MAX_ROWS: dict[torch.dtype, int] = {torch.float32: 8, torch.bfloat16: 1, torch.int8: 8}


def _realized(x: torch.Tensor) -> torch.Tensor:
    """``x`` itself (a view of it), which inductor must compute into memory before the reduction reads it.

    ``as_strided`` is lowered by inductor as a view of a *realized* buffer, so whatever produces ``x``
    (a LayerNorm, a GELU) is computed once, in its own loop, instead of being inlined into the
    reduction and recomputed for every output row (2304 times per input element for GPT-2's query,
    key and value projections). It costs nothing at run time: no copy, and no call back into Python
    (a Python custom op that copied ``x`` did the same job for 55 to 60 microseconds a call, about
    4 ms of a 12-layer GPT-2 decode step that makes 72 of them: measured, and replaced by this).
    """
    return x.as_strided(x.shape, x.stride())


#: How many equal blocks of rows :func:`matvec` reduces side by side (see :func:`_row_blocks`).
_MATVEC_BLOCKS = 4


def _row_blocks(rows: int) -> list[tuple[int, int]]:
    """(start, stop) of the blocks of weight rows that :func:`matvec` reduces side by side.

    Inductor gives a reduction one accumulator, so its loop over a weight row is one chain of
    dependent vector adds, a latency bound: about 21 GB/s of int8 on the benchmark machine, below
    what the memory delivers. Reductions of the same shape over the same input are fused into one
    loop, each with its own accumulator (GPT-2's query, key and value projections were: 29 GB/s);
    so the matrix is cut into ``_MATVEC_BLOCKS`` equal blocks of rows, reduced in one loop that
    streams them side by side, and the sums concatenated. Rows left over by the division (GPT-2's
    50257-row head) make one more, small block, reduced in a loop of its own.
    """
    size = rows // _MATVEC_BLOCKS
    if size == 0:
        return [(0, rows)]
    blocks = [(j * size, (j + 1) * size) for j in range(_MATVEC_BLOCKS)]
    if rows % _MATVEC_BLOCKS:
        blocks.append((_MATVEC_BLOCKS * size, rows))
    return blocks


def matvec(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           scale: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight * scale[:, None], bias)`` as a multiply and a sum over the input features.

    Args:
        x: (..., I) activations, few rows (a decode step).
        weight: (O, I) in any dtype that converts to fp32 exactly: fp32, bf16, fp16, or int8 codes.
        bias: (O,) or None.
        scale: (O,) per output row, or None: int8 weights are codes times a per-row scale
            (``quantization.py``), applied here to the (O,) sums instead of to the (O, I) weights.

    Returns (..., O) in ``x.dtype``. Use it under ``torch.compile`` only: run eagerly it builds an
    (O, M, I) tensor (see the module's docstring).
    """
    rows = _realized(x.reshape(-1, x.shape[-1])).float()  # (..., I) -> (M, I), in memory (see _realized)
    blocks = _row_blocks(weight.shape[0])
    out = torch.cat([(weight[start:stop, None, :].float() * rows[None, :, :]).sum(-1)
                     for start, stop in blocks])  # (O, M): the sum over I, in fp32 (see _row_blocks)
    if scale is not None:
        out = out * scale[:, None].float()  # (O, M)
    if bias is not None:
        out = out + bias[:, None].float()  # (O, M)
    return out.t().reshape(*x.shape[:-1], weight.shape[0]).to(x.dtype)  # (O, M) -> (M, O) -> (..., O)


def use_matvec(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`linear` takes :func:`matvec` for this input: see :data:`MATVEC_MAX_ROWS`."""
    if not torch.compiler.is_compiling() or x.device.type != "cpu":
        return False
    rows = x.numel() // x.shape[-1]  # B * T
    return rows <= MATVEC_MAX_ROWS.get(weight.dtype, 0)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, with the kernel chosen per shape (module docstring): (..., I) -> (..., O)."""
    if use_matvec(x, weight):
        return matvec(x, weight, bias)
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` whose forward is :func:`linear`: a compiled decode step streams its weight.

    Same parameters and state dict as ``nn.Linear`` (``isinstance(m, nn.Linear)`` holds), so loaders,
    LoRA and quantization treat it as one.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
