"""Reference solutions for chapter 12, written out by hand: they are the teaching versions.

They deliberately do not call ``minitransformer.lora``, ``minitransformer.quantization``,
``minitransformer.layers.flash_attention`` or ``minitransformer.training.memory``: the checks compare
them with those modules (and with torch), so the two must not be the same code.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LoRALinear(nn.Module):
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
        low_rank = x @ self.lora_A.T  # (..., in) @ (in, r) -> (..., r): the narrow middle
        return self.base(x) + self.scaling * (low_rank @ self.lora_B.T)  # (..., r) @ (r, out) -> (..., out)

    def merge(self) -> nn.Linear:
        base = self.base
        merged = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None)
        with torch.no_grad():
            merged.weight.copy_(base.weight + self.scaling * (self.lora_B @ self.lora_A))  # (out, r) @ (r, in)
            if base.bias is not None:
                merged.bias.copy_(base.bias)
        return merged


def quantize_int8(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    w = w.detach().float()
    scale = w.abs().amax(dim=1) / 127  # (O,): the row's largest magnitude becomes 127
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)  # an all-zero row: any scale gives q = 0
    q = torch.round(w / safe[:, None]).clamp(-127, 127).to(torch.int8)  # (O, I)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale[:, None]  # (O, I) x (O, 1)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    if q.dtype != torch.uint8:
        raise ValueError(f"pack_int4 takes uint8 values 0..15, got {q.dtype}")
    if q.shape[-1] % 2:
        raise ValueError(f"the last dimension must be even to pack pairs, got shape {tuple(q.shape)}")
    if q.numel() and int(q.max()) > 15:
        raise ValueError(f"4-bit values are 0..15, got {int(q.max())}")
    low, high = q[..., 0::2], q[..., 1::2]  # (..., k) each: elements 0, 2, 4... and 1, 3, 5...
    return low | (high << 4)  # (..., k): the even element in bits 0-3, the odd one in bits 4-7


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    low, high = packed & 0x0F, packed >> 4  # (..., k) each
    return torch.stack([low, high], dim=-1).flatten(-2)  # (..., k, 2) -> (..., 2k): low, high, low, high...


def combine_softmax_partials(m1: torch.Tensor, l1: torch.Tensor, o1: torch.Tensor,
                             m2: torch.Tensor, l2: torch.Tensor, o2: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    m = torch.maximum(m1, m2)  # (..., 1): the max over both sets of keys
    w1 = l1 * torch.exp(m1 - m)  # (..., 1): part 1's sum, re-expressed against the new max
    w2 = l2 * torch.exp(m2 - m)
    l = w1 + w2
    return m, l, (w1 * o1 + w2 * o2) / l  # each part's average, weighted by its share of the total


def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_size: int,
                    scale: float | None = None) -> torch.Tensor:
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    m = torch.full(q.shape[:-1] + (1,), -math.inf, dtype=q.dtype, device=q.device)  # (B, H, T, 1): nothing seen yet
    l = torch.zeros_like(m)
    o = torch.zeros(q.shape[:-1] + v.shape[-1:], dtype=q.dtype, device=q.device)  # (B, H, T, D)
    for j in range(0, k.shape[-2], block_size):
        s = q @ k[..., j:j + block_size, :].transpose(-2, -1) * scale  # (B, H, T, bk): one tile of scores
        m_j = s.amax(dim=-1, keepdim=True)  # (B, H, T, 1)
        p = torch.exp(s - m_j)  # (B, H, T, bk)
        l_j = p.sum(dim=-1, keepdim=True)
        o_j = (p @ v[..., j:j + block_size, :]) / l_j  # (B, H, T, D): softmax attention over this tile
        m, l, o = combine_softmax_partials(m, l, o, m_j, l_j, o_j)
    return o


def training_state_bytes(num_params: int, num_tensors: int) -> dict[str, int]:
    return {
        "weights": 4 * num_params,  # fp32
        "gradients": 4 * num_params,  # one .grad per weight, the weight's dtype
        "optimizer_state": 8 * num_params + 4 * num_tensors,  # exp_avg, exp_avg_sq; a fp32 step per tensor
    }


def attention_scores_bytes(batch: int, heads: int, q_len: int, k_len: int, dtype: torch.dtype) -> int:
    element = torch.empty((), dtype=dtype).element_size()  # 4 for float32, 2 for bfloat16
    return batch * heads * q_len * k_len * element  # one (B, H, T, S) matrix
