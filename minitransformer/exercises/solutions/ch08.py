"""Reference solutions for chapter 8 (T5), built on minitransformer.layers (relative_position, norms,
attention) and minitransformer.models.t5.

``shift_right`` and ``seq2seq_loss`` are written out: the library's ``T5.shift_right`` is a method that
reads the ids from a model's config, and the loss is not library code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from minitransformer.layers import relative_position as _relative_position
from minitransformer.layers.attention import MultiHeadAttention
from minitransformer.layers.masks import padding_mask
from minitransformer.layers.norms import RMSNorm
from minitransformer.layers.relative_position import RelativePositionBias
from minitransformer.models.t5 import T5_ATTENTION_SCALE


def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool = True, num_buckets: int = 32,
                             max_distance: int = 128) -> torch.Tensor:
    return _relative_position.relative_position_bucket(relative_position, bidirectional, num_buckets, max_distance)


def relative_position_bias(weight: torch.Tensor, query_length: int, key_length: int, bidirectional: bool,
                           max_distance: int = 128) -> torch.Tensor:
    num_buckets, num_heads = weight.shape
    bias = RelativePositionBias(num_buckets, max_distance, num_heads, bidirectional)
    bias.load_state_dict({"weight": weight})
    return bias(query_length, key_length)  # (1, H, T, S)


def t5_layer_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    norm = RMSNorm(x.shape[-1], eps=eps).to(weight.dtype)
    norm.load_state_dict({"weight": weight})
    return norm(x)


def shift_right(labels: torch.Tensor, decoder_start_token_id: int, pad_token_id: int) -> torch.Tensor:
    shifted = torch.full_like(labels, decoder_start_token_id)  # (B, T)
    shifted[:, 1:] = labels[:, :-1]
    return shifted.masked_fill(shifted == -100, pad_token_id)


def cross_attention(
    x: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    w_q: torch.Tensor,
    w_k: torch.Tensor,
    w_v: torch.Tensor,
    w_o: torch.Tensor,
    num_heads: int,
    encoder_attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    C, inner = x.shape[-1], w_q.shape[0]
    attention = MultiHeadAttention(C, num_heads, head_dim=inner // num_heads, bias=False, scale=T5_ATTENTION_SCALE)
    attention.load_state_dict({"q_proj.weight": w_q, "k_proj.weight": w_k, "v_proj.weight": w_v,
                               "o_proj.weight": w_o})
    mask = None if encoder_attention_mask is None else padding_mask(encoder_attention_mask)  # (B, 1, 1, S)
    out, _ = attention(x, key_value_states=encoder_hidden_states, attn_mask=mask)
    return out  # (B, T, C)


def seq2seq_loss(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor,
    decoder_start_token_id: int,
    pad_token_id: int,
) -> torch.Tensor:
    decoder_input_ids = shift_right(labels, decoder_start_token_id, pad_token_id)  # (B, T)
    logits = model(input_ids=input_ids, attention_mask=attention_mask,
                   decoder_input_ids=decoder_input_ids).logits  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
