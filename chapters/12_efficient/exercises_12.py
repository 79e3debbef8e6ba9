"""Chapter 12 exercises: a LoRA layer, int8 and int4 storage, the online softmax, memory arithmetic.

Fill in each function, then grade yourself:

    minitransformer check 12          # or: pytest chapters/12_efficient
    minitransformer.check("12")       # the same, from a notebook (it reads this file afresh)
    from exercises_12 import ...      # your functions, in this folder's notebook

Shapes: B batch, H heads, T queries, S keys, D head size; a Linear weight is (O, I) = (out, in);
r is the LoRA rank. Use only torch: not minitransformer.lora, minitransformer.quantization,
minitransformer.layers.flash_attention or minitransformer.training.memory (the checks compare you
with them), and not F.scaled_dot_product_attention or .softmax in 12.4.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from minitransformer.exercises import todo


class LoRALinear(nn.Module):
    """Exercise 12.1: a frozen ``nn.Linear`` plus a trainable low-rank update (LoRA, Hu et al. 2021).

        y = x W^T + b + scaling * (x A^T) B^T          scaling = alpha / r

    W (out, in) and b (out,) are the base layer's and stay frozen; A (r, in) and B (out, r) are the
    only parameters that learn. ``__init__`` is written for you: it freezes the base, starts A
    random and B at zero (so that the layer starts as exactly the base layer), and sets
    ``self.scaling``. Write:

    - ``forward(x)``: x (..., in) -> (..., out), the formula above. Go through the narrow middle,
      (x A^T) first, then B^T: never build the (out, in) product B A in the forward.
    - ``merge()``: a new plain ``nn.Linear`` with weight ``W + scaling * B A`` and the base's bias,
      which computes the same outputs at the cost of the base layer alone. Leave ``self.base``
      unchanged.
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)  # W and b are frozen: only A and B learn
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))  # (out, r): zero, so B A = 0 at the start
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's (and PEFT's) init
        self.r, self.scaling = r, alpha / r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        todo("12.1", "low_rank = x @ self.lora_A.T (shape (..., r)); "
                     "return self.base(x) + self.scaling * (low_rank @ self.lora_B.T)")

    def merge(self) -> nn.Linear:
        todo("12.1", "merged = nn.Linear(in, out, bias=...); under torch.no_grad(): "
                     "merged.weight.copy_(self.base.weight + self.scaling * (self.lora_B @ self.lora_A)); "
                     "copy the bias; return merged")


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exercise 12.2: symmetric int8 quantization with one scale per output channel (row).

    w (O, I) float. For each row, ``scale = max|w_row| / 127``, and ``q = round(w / scale)``, so the
    row's largest magnitude becomes +-127; clamp to [-127, 127] (never -128: the range stays
    symmetric). An all-zero row has scale 0: its q must be 0, not NaN (divide by 1 there instead).
    Returns q (O, I) ``torch.int8`` and scale (O,) float32.
    """
    todo("12.2", "scale = w.abs().amax(dim=1) / 127; safe = torch.where(scale == 0, 1.0, scale); "
                 "q = torch.round(w / safe[:, None]).clamp(-127, 127).to(torch.int8)")


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Exercise 12.2 (second half): the float32 weight back, q (O, I) int8 and scale (O,) -> (O, I)."""
    todo("12.2", "q.float() * scale[:, None]: each row times its own scale")


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Exercise 12.3: store two 4-bit values in one byte, along the last dimension.

    q (..., 2k) ``torch.uint8`` holding values 0..15 -> (..., k) uint8. Element 2j goes into the
    low four bits of byte j and element 2j + 1 into the high four bits:

        byte = q[2j] | (q[2j + 1] << 4)            [1, 2, 15, 0] -> [1 + 2 * 16, 15 + 0 * 16] = [33, 15]

    Raise ValueError (with a message saying what to fix) if q is not uint8, if its last dimension
    is odd, or if a value is above 15.
    """
    todo("12.3", "check the three errors; low, high = q[..., 0::2], q[..., 1::2]; return low | (high << 4)")


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Exercise 12.3 (second half): the inverse, (..., k) uint8 -> (..., 2k) uint8 values 0..15."""
    todo("12.3", "low, high = packed & 0x0F, packed >> 4; interleave them: "
                 "torch.stack([low, high], dim=-1).flatten(-2)")


def combine_softmax_partials(m1: torch.Tensor, l1: torch.Tensor, o1: torch.Tensor,
                             m2: torch.Tensor, l2: torch.Tensor, o2: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exercise 12.4: the online softmax: two partial attention results, over two disjoint sets of keys, made one.

    Each part summarises, for every query row, the scores s and values v of its own keys:

        m (..., 1)   the largest score,  max_j s_j
        l (..., 1)   the sum of exp(s_j - m) over its keys
        o (..., D)   its attention output: sum_j exp(s_j - m) v_j / l   (softmax over its keys only)

    Return (m, l, o) of the union of both sets of keys, as if attention had seen them all at once:
    m is the larger max; each part's l must be re-expressed against the new m (multiply it by
    exp(m_part - m)); and o is the two outputs averaged with those re-expressed sums as weights.
    A part with no keys at all comes as m = -inf, l = 0, o = 0 and must change nothing.
    """
    todo("12.4", "m = torch.maximum(m1, m2); w1 = l1 * torch.exp(m1 - m); w2 = l2 * torch.exp(m2 - m); "
                 "l = w1 + w2; return m, l, (w1 * o1 + w2 * o2) / l")


def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_size: int,
                    scale: float | None = None) -> torch.Tensor:
    """Exercise 12.4 (second half): softmax(q k^T * scale) v, one block of keys at a time.

    q (B, H, T, D); k and v (B, H, S, D); ``scale`` None means 1 / sqrt(D). Walk the keys in blocks
    of ``block_size`` (the last block is shorter when it does not divide S). For each block compute
    its (B, H, T, block) scores, its own m, l and o (as in ``combine_softmax_partials``), and fold
    them into running ones that start as "no keys yet" (m = -inf, l = 0, o = 0). Never build the
    whole (T, S) score matrix. Returns (B, H, T, D), equal to softmax attention within 1e-5.
    """
    todo("12.4", "m = full(q.shape[:-1] + (1,), -inf); l = zeros_like(m); o = zeros(B, H, T, D); "
                 "for j in range(0, S, block_size): s = q @ k[..., j:j+block_size, :].transpose(-2, -1) * scale; "
                 "m_j = s.amax(-1, keepdim=True); p = exp(s - m_j); l_j = p.sum(-1, keepdim=True); "
                 "o_j = p @ v[..., j:j+block_size, :] / l_j; m, l, o = combine_softmax_partials(...)")


def training_state_bytes(num_params: int, num_tensors: int) -> dict[str, int]:
    """Exercise 12.5: the bytes fp32 training with AdamW holds before it sees a single token.

    A model of ``num_params`` numbers in ``num_tensors`` parameter tensors, every one trained:

    - ``"weights"``: 4 bytes a number (float32);
    - ``"gradients"``: one ``.grad`` per parameter, in float32 too;
    - ``"optimizer_state"``: torch's AdamW keeps, per parameter tensor, ``exp_avg`` and
      ``exp_avg_sq`` (each the parameter's size, float32) and a ``step`` counter (a float32
      scalar tensor, 4 bytes).

    Returns a dict with exactly those three keys and int values. (In all: 16 bytes a number, plus
    4 a tensor; GPT-2 124M needs 2 GB of them.)
    """
    todo("12.5", "weights 4 * num_params; gradients the same; optimizer_state 2 * 4 * num_params + 4 * num_tensors")


def attention_scores_bytes(batch: int, heads: int, q_len: int, k_len: int, dtype: torch.dtype) -> int:
    """Exercise 12.5 (second half): the bytes of one (B, H, T, S) attention-score matrix in ``dtype``.

    This is what the math path of attention builds (and its softmax another one like it) and what
    flash attention never does. Get the size of one element from the dtype (4 bytes for float32,
    2 for bfloat16 and float16) without hard-coding a table: ``torch.empty((), dtype=dtype)`` has an
    ``element_size()``. Returns an int.
    """
    todo("12.5", "batch * heads * q_len * k_len * torch.empty((), dtype=dtype).element_size()")
