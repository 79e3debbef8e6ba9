"""Chapter 2 exercises: from token ids to vectors, and where positions come in.

Fill in each function, then grade yourself:

    minitransformer check 2          # or: pytest chapters/02_embeddings
    minitransformer.check("2")       # the same, from a notebook (it reads this file afresh)
    from exercises_02 import ...     # your functions, in this folder's notebook

Shapes: B batch, H heads, T sequence length, D head size, C model width, V vocabulary.
Use only torch; not torch.nn.Embedding or torch.nn.functional.embedding.
"""

from __future__ import annotations

import torch

from minitransformer.exercises import todo


def embedding_lookup(input_ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Exercise 2.1: the vector of every token id.

    input_ids (B, T) integers in [0, V), weight (V, C) -> (B, T, C), out[b, t] = weight[input_ids[b, t]].
    This equals one_hot(input_ids, V) @ weight, without building the (B, T, V) one-hot tensor.
    """
    todo("2.1", "index the rows of the table with the ids: weight[input_ids]")


def embed_with_positions(
    input_ids: torch.Tensor, token_weight: torch.Tensor, position_weight: torch.Tensor, past_length: int = 0
) -> torch.Tensor:
    """Exercise 2.2: token embedding plus learned absolute position embedding (GPT-2, BERT).

    input_ids (B, T), token_weight (V, C), position_weight (P, C) with one row per position.
    The tokens sit at positions past_length, ..., past_length + T - 1 (past_length > 0 when earlier
    tokens are already in a KV cache). Returns (B, T, C).
    """
    todo("2.2", "positions = torch.arange(past_length, past_length + T); "
                "embedding_lookup(input_ids, token_weight) + position_weight[positions] (broadcasts over B)")


def sinusoidal_encoding(num_positions: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """Exercise 2.3: the fixed position encoding of "Attention Is All You Need", (num_positions, dim) float32.

        PE[pos, 2i]   = sin(pos / base ** (2i / dim))
        PE[pos, 2i+1] = cos(pos / base ** (2i / dim))
    """
    todo("2.3", "angles = positions[:, None] / base ** (torch.arange(0, dim, 2) / dim); "
                "fill pe[:, 0::2] with sin(angles) and pe[:, 1::2] with cos(angles)")


def rope_inv_freq(head_dim: int, rope_theta: float = 10000.0) -> torch.Tensor:
    """Exercise 2.4: RoPE's D/2 rotation frequencies, float32: inv_freq[i] = rope_theta ** (-2i / D).

    Pair i turns by the angle position * inv_freq[i]. rope_theta is 10000 in the RoFormer paper
    and LLaMA 2, 500000 in Llama 3: a larger base means slower rotations and longer wavelengths.
    """
    todo("2.4", "1.0 / rope_theta ** (torch.arange(0, head_dim, 2).double() / head_dim), then .float()")


def rope_interleaved(x: torch.Tensor, position_ids: torch.Tensor, rope_theta: float = 10000.0) -> torch.Tensor:
    """Exercise 2.5: rotary embedding, interleaved layout (RoFormer, Meta's original LLaMA code).

    x (B, H, T, D); position_ids (T,) integers. Pair i is (x[..., 2i], x[..., 2i+1]); at position p it
    is rotated by the angle p * inv_freq[i]:
        (a, b) -> (a cos - b sin, a sin + b cos)
    Returns (B, H, T, D).
    """
    todo("2.5", "angles = position_ids[:, None] * rope_inv_freq(D, rope_theta) (T, D/2); even = x[..., 0::2], "
                "odd = x[..., 1::2]; rotate each pair, then torch.stack((new_even, new_odd), -1).flatten(-2)")


def rope_rotate_half(x: torch.Tensor, position_ids: torch.Tensor, rope_theta: float = 10000.0) -> torch.Tensor:
    """Exercise 2.6: rotary embedding, HF's rotate-half layout (LLaMA in transformers).

    Same rotation as 2.5, but pair i is (x[..., i], x[..., i + D/2]). With x = (x1, x2) split in halves,
        out = x * cos + rotate_half(x) * sin,   rotate_half(x) = (-x2, x1),
    where cos and sin are the (T, D/2) tables repeated twice along the last dim to (T, D).
    """
    todo("2.6", "cos = angles.cos().repeat(1, 2) (T, D); x1, x2 = x.chunk(2, -1); "
                "x * cos + torch.cat((-x2, x1), -1) * sin")
