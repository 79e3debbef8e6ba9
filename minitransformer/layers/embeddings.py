"""Token and position embeddings: ids -> vectors.

Shapes (see docs/notation.md): B batch, T sequence length, C model width, V vocabulary.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def check_token_ids(input_ids: torch.Tensor, vocab_size: int, name: str = "input_ids") -> None:
    """Raise a clear error for ids that are not integers, or outside ``[0, vocab_size)``, before any
    indexing fault. Every integer dtype is accepted (the embedding converts to int64)."""
    dtype = input_ids.dtype
    if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of token ids, got dtype {dtype}; "
                        f"convert with {name}.long() if the values are ids")
    if input_ids.numel() == 0 or torch.compiler.is_compiling():  # reading values would split a compiled graph
        return
    lo, hi = int(input_ids.min()), int(input_ids.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise IndexError(
            f"{name} holds id {bad}, outside the vocabulary [0, {vocab_size}) (vocab_size={vocab_size}); "
            "check that the tokenizer matches the model"
        )


class TokenEmbedding(nn.Module):
    """A lookup table: row ``i`` of ``weight`` is the vector of token ``i``.

    Indexing a (V, C) matrix with ids is the same as multiplying one-hot rows by it,
    only without building the (B, T, V) one-hot tensor.

    Example:
        >>> emb = TokenEmbedding(vocab_size=10, hidden_size=4)
        >>> emb(torch.tensor([[1, 2, 3]])).shape
        torch.Size([1, 3, 4])
    """

    def __init__(self, vocab_size: int, hidden_size: int, padding_idx: int | None = None):
        super().__init__()
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.padding_idx = padding_idx
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        check_token_ids(input_ids, self.vocab_size)
        # .long(): indexing with a uint8 tensor would read it as a boolean mask, int16 is not an index type
        return self.weight[input_ids.long()]  # (B, T) -> (B, T, C)

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, hidden_size={self.hidden_size}"


class LearnedPositionEmbedding(nn.Module):
    """One trained vector per position 0..max_position_embeddings-1 (BERT, GPT-2)."""

    def __init__(self, max_position_embeddings: int, hidden_size: int):
        super().__init__()
        self.max_position_embeddings = max_position_embeddings
        self.weight = nn.Parameter(torch.empty(max_position_embeddings, hidden_size))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        """``position_ids``: (T,) or (B, T) integer positions -> (..., C)."""
        check_positions(position_ids, self.max_position_embeddings)
        return self.weight[position_ids]


def check_positions(position_ids: torch.Tensor, max_position_embeddings: int) -> None:
    """Raise an error naming ``max_position_embeddings`` for a position the table does not hold."""
    if torch.compiler.is_compiling():  # reading values would split a compiled graph (generate checks first)
        return
    if position_ids.numel() and (int(position_ids.max()) >= max_position_embeddings or int(position_ids.min()) < 0):
        raise ValueError(
            f"position {int(position_ids.max())} is past the model's max_position_embeddings="
            f"{max_position_embeddings}: shorten the input to at most {max_position_embeddings} tokens"
        )


def sinusoidal_position_encoding(num_positions: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """The fixed encoding of "Attention Is All You Need" (section 3.5), shape (num_positions, dim).

    PE[pos, 2i]   = sin(pos / base^(2i/dim))
    PE[pos, 2i+1] = cos(pos / base^(2i/dim))
    """
    if dim % 2:
        raise ValueError(f"dim must be even for sinusoidal encoding, got dim={dim}")
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]  # (T, 1)
    inv_freq = torch.exp(-math.log(base) * torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (dim/2,)
    angles = position * inv_freq  # (T, dim/2)
    pe = torch.empty(num_positions, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angles)
    pe[:, 1::2] = torch.cos(angles)
    return pe.float()


class SinusoidalPositionEncoding(nn.Module):
    """Adds nothing to learn: a (max_positions, C) table of sines and cosines, kept out of the state dict."""

    def __init__(self, max_position_embeddings: int, hidden_size: int, base: float = 10000.0):
        super().__init__()
        self.max_position_embeddings = max_position_embeddings
        table = sinusoidal_position_encoding(max_position_embeddings, hidden_size, base)
        self.register_buffer("table", table, persistent=False)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        check_positions(position_ids, self.max_position_embeddings)
        return self.table[position_ids]
