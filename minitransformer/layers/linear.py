"""Linear layers, and the matrix-vector kernel a compiled decode step uses for int8 weights.

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

Why not fp32 and bf16 too: measured on the benchmark machine (``docs/generation.md``), the compiled
reduction streams fp32 and bf16 matrices as fast as the BLAS or faster when timed alone, but inside a
compiled GPT-2 step it lost: 46 against 51 tokens/s in fp32, 103 against 142 at batch 8, and in
bf16 58 against 75 for oneDNN's packed weights (``generation/compiled.py``). So the table lists int8
alone; add a dtype to it to try the reduction on your machine (``scripts/bench_generation.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: The most input rows (B * T) for which a compiled step takes :func:`matvec` instead of ``F.linear``,
#: per weight dtype; a dtype not listed never takes it (see the module docstring for the measurements).
#: int8 up to batch 8: past it, the step rebuilds each fp32 matrix and multiplies as a prefill does.
MATVEC_MAX_ROWS: dict[torch.dtype, int] = {torch.int8: 8}


@torch.library.custom_op("minitransformer::materialize", mutates_args=())
def materialize(x: torch.Tensor) -> torch.Tensor:
    """A copy of ``x`` that the compiler cannot see into: it must compute ``x`` into memory first.

    Without it inductor *inlines* the small ops that produce ``x`` (a LayerNorm, a GELU) into the
    reduction that reads it, and so recomputes them for every output row: 2304 times per input element
    for GPT-2's query/key/value projection.
    """
    return x.clone()


@materialize.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


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
    rows = materialize(x.reshape(-1, x.shape[-1]))  # (..., I) -> (M, I), in memory (see materialize)
    products = weight[:, None, :].float() * rows[None, :, :].float()  # (O, 1, I) * (1, M, I) -> (O, M, I)
    out = products.sum(-1)  # (O, M): the sum over I, in fp32; compiled, one pass over each weight row
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
