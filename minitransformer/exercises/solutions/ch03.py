"""Reference solutions for chapter 3, built on minitransformer.layers."""

from __future__ import annotations

import torch
from einops import rearrange

from minitransformer.layers.attention import repeat_kv  # noqa: F401  (exercise 3.5 is the library's function)
from minitransformer.layers.attention import scaled_dot_product_attention as _sdpa


def attention_scores(query: torch.Tensor, key: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    scale = query.shape[-1] ** -0.5 if scale is None else scale
    return query @ key.transpose(-2, -1) * scale  # (B, H, T, S)


def scaled_dot_product_attention(query, key, value, mask=None, scale=None):
    return _sdpa(query, key, value, attn_mask=mask, scale=scale)


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    return rearrange(x, "b t (h d) -> b h t d", h=num_heads)  # (B, H, T, D)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    return rearrange(x, "b h t d -> b t (h d)")  # (B, T, H*D)


def multi_head_attention(x, w_q, w_k, w_v, w_o, num_heads, num_kv_heads=None, mask=None):
    num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
    q = split_heads(x @ w_q.T, num_heads)  # (B, H, T, D)
    k = split_heads(x @ w_k.T, num_kv_heads)  # (B, Hkv, T, D)
    v = split_heads(x @ w_v.T, num_kv_heads)  # (B, Hkv, T, D)
    out = _sdpa(q, k, v, attn_mask=mask)  # (B, H, T, D)
    return merge_heads(out) @ w_o.T
