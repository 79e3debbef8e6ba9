"""Reference solutions for chapter 9, built on minitransformer.generation (cache, logits) and the models."""

from __future__ import annotations

import torch

from minitransformer.generation.cache import LayerCache, expected_cache_nbytes
from minitransformer.generation.logits import apply_repetition_penalty as _apply_repetition_penalty
from minitransformer.generation.logits import apply_top_k, apply_top_p
from minitransformer.models.base import positions_from_attention_mask


class KVCache(LayerCache):
    """One layer's cache: the library's ``LayerCache`` writes into buffers with spare room instead of
    ``torch.cat`` (same result, no copy of the whole cache at every step)."""

    def get_seq_length(self) -> int:
        return self.length


def cache_size_bytes(num_layers: int, batch: int, kv_heads: int, seq_len: int, head_dim: int,
                     dtype: torch.dtype = torch.float32) -> int:
    return expected_cache_nbytes(num_layers, batch, kv_heads, seq_len, head_dim, dtype)


def decode_step_inputs(attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    B, S = attention_mask.shape
    new_mask = torch.cat([attention_mask, attention_mask.new_ones(B, 1)], dim=1)  # (B, S + 1)
    positions = positions_from_attention_mask(new_mask, S + 1, attention_mask.device)  # (B, S + 1)
    return new_mask, positions[:, -1:]  # (B, S + 1), (B, 1)


@torch.no_grad()
def greedy_generate_with_cache(model, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    ids = input_ids
    out = model(input_ids, use_cache=True)  # prefill: the whole prompt, the cache now holds it
    for step in range(max_new_tokens):
        next_id = out.logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
        ids = torch.cat([ids, next_id], dim=1)  # (B, T + step + 1)
        if step + 1 < max_new_tokens:  # the last token is never fed back
            out = model(next_id, past_key_values=out.past_key_values, use_cache=True)  # T = 1
    return ids


def top_k_top_p_filter(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    return apply_top_p(apply_top_k(logits, top_k), top_p)  # transformers' order: top-k, then top-p


def apply_repetition_penalty(logits: torch.Tensor, previous_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    return _apply_repetition_penalty(logits, previous_ids, penalty)
