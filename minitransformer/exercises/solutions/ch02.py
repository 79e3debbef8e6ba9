"""Reference solutions for chapter 2, built on minitransformer.layers (embeddings and rope)."""

from __future__ import annotations

import torch

from minitransformer.layers.embeddings import check_positions, check_token_ids, sinusoidal_position_encoding
from minitransformer.layers.rope import apply_rope_half, apply_rope_interleaved
from minitransformer.layers.rope import rope_inv_freq as _rope_inv_freq


def embedding_lookup(input_ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    check_token_ids(input_ids, weight.shape[0])
    return weight[input_ids]  # (B, T) -> (B, T, C), as TokenEmbedding.forward does


def embed_with_positions(input_ids, token_weight, position_weight, past_length=0):
    T = input_ids.shape[-1]
    positions = torch.arange(past_length, past_length + T, device=input_ids.device)  # (T,)
    check_positions(positions, position_weight.shape[0])
    return embedding_lookup(input_ids, token_weight) + position_weight[positions]  # (B, T, C) + (T, C)


def sinusoidal_encoding(num_positions: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    return sinusoidal_position_encoding(num_positions, dim, base)  # (num_positions, dim)


def rope_inv_freq(head_dim: int, rope_theta: float = 10000.0) -> torch.Tensor:
    return _rope_inv_freq(head_dim, rope_theta)  # (D/2,)


def _cos_sin(position_ids: torch.Tensor, head_dim: int, rope_theta: float, dtype: torch.dtype):
    angles = position_ids[None, :, None].float() * _rope_inv_freq(head_dim, rope_theta)  # (1, T, D/2)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rope_interleaved(x: torch.Tensor, position_ids: torch.Tensor, rope_theta: float = 10000.0) -> torch.Tensor:
    cos, sin = _cos_sin(position_ids, x.shape[-1], rope_theta, x.dtype)
    return apply_rope_interleaved(x, cos, sin)  # (B, H, T, D)


def rope_rotate_half(x: torch.Tensor, position_ids: torch.Tensor, rope_theta: float = 10000.0) -> torch.Tensor:
    cos, sin = _cos_sin(position_ids, x.shape[-1], rope_theta, x.dtype)
    return apply_rope_half(x, cos, sin)  # (B, H, T, D)
