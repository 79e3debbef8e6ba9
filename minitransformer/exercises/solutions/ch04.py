"""Reference solutions for chapter 4, built on minitransformer.layers (masks and attention)."""

from __future__ import annotations

import torch

from minitransformer.layers import masks
from minitransformer.layers.attention import scaled_dot_product_attention


def causal_mask(query_length: int, key_length: int | None = None) -> torch.Tensor:
    return masks.causal_mask(query_length, key_length)  # (T, S)


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    return masks.padding_mask(attention_mask)  # (B, 1, 1, S)


def decoder_mask(attention_mask: torch.Tensor, query_length: int) -> torch.Tensor:
    return masks.decoder_mask(attention_mask, query_length, attention_mask.shape[1])  # (B, 1, T, S)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # The library's rule (masks.py): softmax over no key is defined as all zeros, not NaN.
    probs = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)  # NaN on fully masked rows
    return probs.masked_fill(~mask, 0.0)


def causal_attention(query, key, value, attention_mask=None):
    T, S = query.shape[2], key.shape[2]
    mask = masks.decoder_mask(attention_mask, T, S)  # (B or 1, 1, T, S)
    return scaled_dot_product_attention(query, key, value, attn_mask=mask)  # (B, H, T, D)
