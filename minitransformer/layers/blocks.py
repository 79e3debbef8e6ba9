"""Transformer blocks: attention and feed-forward sublayers joined by residual connections.

A block is only wiring; the sublayers are passed in, so BERT, GPT-2, LLaMA and T5 share these two
classes while choosing their own norms, MLPs and attention settings.

Post-norm (the 2017 paper, BERT):   x = norm(x + sublayer(x))
Pre-norm  (GPT-2, LLaMA, T5):       x = x + sublayer(norm(x))

Each ``forward`` reads top to bottom, one sublayer at a time: the sublayer's input (:meth:`inputs`),
the sublayer, the residual sum (:meth:`add`), which is where pre- and post-norm differ.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from minitransformer.layers.attention import MultiHeadAttention
from minitransformer.layers.mlp import MLP
from minitransformer.layers.norms import LayerNorm


def residual(x: torch.Tensor, sublayer: Callable[[torch.Tensor], torch.Tensor], norm: nn.Module,
             norm_first: bool, dropout: nn.Module) -> torch.Tensor:
    """One residual connection, pre-norm or post-norm."""
    if norm_first:
        return x + dropout(sublayer(norm(x)))
    return norm(x + dropout(sublayer(x)))


class ResidualBlock(nn.Module):
    """What both blocks share: the two halves of a residual connection, pre-norm or post-norm.

    Subclasses set ``norm_first`` and ``dropout`` (residual dropout, on each sublayer's output).
    """

    norm_first: bool
    dropout: nn.Module

    def inputs(self, x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """What a sublayer reads: the normed stream (pre-norm) or the stream itself (post-norm)."""
        return norm(x) if self.norm_first else x

    def add(self, x: torch.Tensor, h: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        """The residual sum of the stream and a sublayer's output (after dropout), normed after it in post-norm."""
        x = x + self.dropout(h)
        return x if self.norm_first else norm(x)


class EncoderBlock(ResidualBlock):
    """Self attention then feed-forward, each inside a residual connection.

    Args:
        self_attn: a :class:`MultiHeadAttention`.
        mlp: the feed-forward module, (B, T, C) -> (B, T, C).
        attn_norm, mlp_norm: the norms of the two sublayers.
        norm_first: True for pre-norm, False for post-norm.
        dropout: residual dropout (applied to each sublayer's output before the sum).
    """

    def __init__(self, self_attn: MultiHeadAttention, mlp: nn.Module, attn_norm: nn.Module, mlp_norm: nn.Module,
                 norm_first: bool = False, dropout: float = 0.0):
        super().__init__()
        self.self_attn = self_attn
        self.mlp = mlp
        self.attn_norm = attn_norm
        self.mlp_norm = mlp_norm
        self.norm_first = norm_first
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def standard(cls, hidden_size: int, num_attention_heads: int, intermediate_size: int, *,
                 norm_first: bool = False, activation: str = "relu", layer_norm_eps: float = 1e-5,
                 dropout: float = 0.0, attn_implementation: str = "math") -> EncoderBlock:
        """The block of "Attention Is All You Need" (and ``torch.nn.TransformerEncoderLayer``)."""
        return cls(
            MultiHeadAttention(hidden_size, num_attention_heads, dropout=dropout,
                               attn_implementation=attn_implementation),
            MLP(hidden_size, intermediate_size, activation, dropout=dropout),
            LayerNorm(hidden_size, layer_norm_eps),
            LayerNorm(hidden_size, layer_norm_eps),
            norm_first=norm_first,
            dropout=dropout,
        )

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None,
                output_attentions: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` (B, T, C), ``attn_mask`` broadcastable to (B, H, T, T). Returns (B, T, C) and the probabilities."""
        h, weights = self.self_attn(self.inputs(x, self.attn_norm), attn_mask=attn_mask, position_ids=position_ids,
                                    output_attentions=output_attentions)  # (B, T, C)
        x = self.add(x, h, self.attn_norm)
        x = self.add(x, self.mlp(self.inputs(x, self.mlp_norm)), self.mlp_norm)
        return x, weights


class DecoderBlock(ResidualBlock):
    """Masked self attention, optional cross attention over an encoder's output, then feed-forward.

    Without ``cross_attn`` this is the block of a decoder-only model (GPT-2, LLaMA). The causal mask
    is passed in by the model (built once per forward, see ``masks.decoder_mask``), not built here.
    """

    def __init__(self, self_attn: MultiHeadAttention, mlp: nn.Module, attn_norm: nn.Module, mlp_norm: nn.Module,
                 cross_attn: MultiHeadAttention | None = None, cross_attn_norm: nn.Module | None = None,
                 norm_first: bool = True, dropout: float = 0.0):
        super().__init__()
        if (cross_attn is None) != (cross_attn_norm is None):
            raise ValueError("pass both cross_attn and cross_attn_norm, or neither")
        self.self_attn = self_attn
        self.cross_attn = cross_attn
        self.mlp = mlp
        self.attn_norm = attn_norm
        self.cross_attn_norm = cross_attn_norm
        self.mlp_norm = mlp_norm
        self.norm_first = norm_first
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def standard(cls, hidden_size: int, num_attention_heads: int, intermediate_size: int, *,
                 cross_attention: bool = True, norm_first: bool = False, activation: str = "relu",
                 layer_norm_eps: float = 1e-5, dropout: float = 0.0,
                 attn_implementation: str = "math") -> DecoderBlock:
        """The decoder block of "Attention Is All You Need" (``torch.nn.TransformerDecoderLayer``)."""

        def mha() -> MultiHeadAttention:
            return MultiHeadAttention(hidden_size, num_attention_heads, dropout=dropout,
                                      attn_implementation=attn_implementation)

        return cls(
            mha(),
            MLP(hidden_size, intermediate_size, activation, dropout=dropout),
            LayerNorm(hidden_size, layer_norm_eps),
            LayerNorm(hidden_size, layer_norm_eps),
            cross_attn=mha() if cross_attention else None,
            cross_attn_norm=LayerNorm(hidden_size, layer_norm_eps) if cross_attention else None,
            norm_first=norm_first,
            dropout=dropout,
        )

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                encoder_hidden_states: torch.Tensor | None = None,
                cross_attn_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None,
                output_attentions: bool = False,
                cache=None, cross_cache=None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Args:
            x: (B, T, C). attn_mask: self-attention mask, broadcastable to (B, H, T, S).
            encoder_hidden_states: (B, S_enc, C) for cross attention.
            cross_attn_mask: broadcastable to (B, H, T, S_enc).
            cache: this layer's KV cache for self attention, or None.
            cross_cache: where cross attention keeps the encoder's projected keys and values, or None.

        Returns:
            (B, T, C), self-attention probabilities, cross-attention probabilities (None unless asked).
        """
        h, self_weights = self.self_attn(self.inputs(x, self.attn_norm), attn_mask=attn_mask,
                                         position_ids=position_ids, output_attentions=output_attentions,
                                         cache=cache)  # (B, T, C)
        x = self.add(x, h, self.attn_norm)
        cross_weights = None
        if self.cross_attn is not None:
            if encoder_hidden_states is None:
                raise ValueError("this DecoderBlock has cross attention: pass encoder_hidden_states (B, S_enc, C)")
            h, cross_weights = self.cross_attn(self.inputs(x, self.cross_attn_norm),
                                               key_value_states=encoder_hidden_states, attn_mask=cross_attn_mask,
                                               output_attentions=output_attentions, cache=cross_cache)  # (B, T, C)
            x = self.add(x, h, self.cross_attn_norm)
        x = self.add(x, self.mlp(self.inputs(x, self.mlp_norm)), self.mlp_norm)
        return x, self_weights, cross_weights
