"""Rotary position embedding (RoPE): positions as rotations of query/key pairs.

Each head vector of size D is seen as D/2 pairs; pair ``i`` at position ``p`` is rotated by the
angle ``p * inv_freq[i]`` with ``inv_freq[i] = rope_theta ** (-2i / D)``. The dot product of a
rotated query and a rotated key then depends only on their distance.

Two layouts say which coordinates form a pair:

- ``"half"`` (HF's rotate-half, LLaMA in ``transformers``): pair i is (x[i], x[i + D/2]).
- ``"interleaved"`` (the RoFormer paper, Meta's original LLaMA code): pair i is (x[2i], x[2i+1]).

They are the same rotation on reordered coordinates, which is why converters permute the rows of
the q/k projection weights: see :func:`interleaved_to_half_permutation`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

LAYOUTS = ("half", "interleaved")


def rope_inv_freq(head_dim: int, rope_theta: float = 10000.0, rope_scaling: dict[str, Any] | None = None) -> torch.Tensor:
    """The D/2 rotation frequencies, with HF's ``rope_scaling`` applied ("linear" or "llama3").

    - linear: positions are divided by ``factor``, i.e. every frequency is divided by it.
    - llama3: long wavelengths (beyond ``original_max_position_embeddings / low_freq_factor``) are
      divided by ``factor``, short ones kept, and the band between is interpolated smoothly.
    """
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim, got head_dim={head_dim}")
    inv_freq = 1.0 / (rope_theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).double() / head_dim))
    if not rope_scaling:
        return inv_freq.float()
    kind = rope_scaling.get("rope_type", rope_scaling.get("type"))
    if kind in (None, "default"):
        return inv_freq.float()
    factor = float(rope_scaling["factor"])
    if kind == "linear":
        return (inv_freq / factor).float()
    if kind == "llama3":
        low_freq_factor = float(rope_scaling["low_freq_factor"])
        high_freq_factor = float(rope_scaling["high_freq_factor"])
        old_context = float(rope_scaling["original_max_position_embeddings"])
        low_freq_wavelen = old_context / low_freq_factor
        high_freq_wavelen = old_context / high_freq_factor
        inv_freq = inv_freq.float()
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
        return torch.where(is_medium, smoothed, scaled)
    raise ValueError(f"rope_scaling type {kind!r} is not supported; use one of: None, 'default', 'linear', 'llama3'")


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope_half(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half layout. ``x``: (B, H, T, D); ``cos``/``sin``: (B or 1, T, D/2)."""
    cos = torch.cat((cos, cos), dim=-1).unsqueeze(1)  # (B, 1, T, D)
    sin = torch.cat((sin, sin), dim=-1).unsqueeze(1)  # (B, 1, T, D)
    return x * cos + rotate_half(x) * sin


def apply_rope_interleaved(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Interleaved layout: pairs are (x[2i], x[2i+1]). Same shapes as :func:`apply_rope_half`."""
    even, odd = x[..., 0::2], x[..., 1::2]  # (B, H, T, D/2) each
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, T, D/2)
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)  # (B, H, T, D/2, 2)
    return rotated.flatten(-2)  # (B, H, T, D)


def interleaved_to_half_permutation(head_dim: int) -> torch.Tensor:
    """Index that reorders one head's coordinates from interleaved pairs to rotate-half pairs.

    Interleaved pair i is (2i, 2i+1); rotate-half pair i is (i, i + D/2). Taking coordinates in the
    order [0, 2, 4, ..., 1, 3, 5, ...] puts every interleaved pair into rotate-half position.
    """
    return torch.cat((torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)))


def permute_qk_weight_for_rotate_half(weight: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Reorder the output rows of a q or k projection from interleaved to rotate-half layout.

    ``weight``: (num_heads * D, C), as a ``nn.Linear`` stores it. Within each head the rows are
    permuted by :func:`interleaved_to_half_permutation`; attention scores are unchanged because
    q and k are permuted alike and the dot product does not care about coordinate order.
    """
    out_features, in_features = weight.shape
    if out_features % num_heads:
        raise ValueError(f"weight has {out_features} rows, not divisible by num_heads={num_heads}")
    head_dim = out_features // num_heads
    perm = interleaved_to_half_permutation(head_dim).to(weight.device)
    per_head = weight.reshape(num_heads, head_dim, in_features)  # (H, D, C)
    return per_head[:, perm, :].reshape(out_features, in_features)  # (H*D, C)


class RotaryEmbedding(nn.Module):
    """Rotates queries and keys by their positions.

    Args:
        head_dim: D, the size of one head.
        max_position_embeddings: length of the precomputed cos/sin table (grown on demand).
        rope_theta: the base of the frequencies (10000 in the paper, 500000 in Llama 3).
        rope_scaling: HF's ``rope_scaling`` dict ("linear" or "llama3") or None.
        layout: "half" (HF) or "interleaved" (original).

    Example:
        >>> rope = RotaryEmbedding(head_dim=8)
        >>> q = k = torch.randn(1, 2, 5, 8)
        >>> q2, k2 = rope(q, k, torch.arange(5)[None])
        >>> q2.shape
        torch.Size([1, 2, 5, 8])
    """

    def __init__(
        self,
        head_dim: int,
        max_position_embeddings: int = 2048,
        rope_theta: float = 10000.0,
        rope_scaling: dict[str, Any] | None = None,
        layout: str = "half",
    ):
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.head_dim = head_dim
        self.rope_theta = rope_theta
        self.layout = layout
        self.register_buffer("inv_freq", rope_inv_freq(head_dim, rope_theta, rope_scaling), persistent=False)

    def cos_sin(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``position_ids`` (B, T) -> cos, sin of shape (B, T, D/2), computed in fp32 then cast."""
        angles = position_ids[..., None].float() * self.inv_freq.float()  # (B, T, D/2)
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, position_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``query`` (B, H, T, D), ``key`` (B, Hkv, T, D), ``position_ids`` (B, T) or (T,)."""
        if query.shape[-1] != self.head_dim:
            raise ValueError(f"query head size {query.shape[-1]} != RotaryEmbedding head_dim={self.head_dim}")
        if position_ids.dim() == 1:
            position_ids = position_ids[None]  # (T,) -> (1, T)
        cos, sin = self.cos_sin(position_ids, query.dtype)
        apply = apply_rope_half if self.layout == "half" else apply_rope_interleaved
        return apply(query, cos, sin), apply(key, cos, sin)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, rope_theta={self.rope_theta}, layout={self.layout!r}"
