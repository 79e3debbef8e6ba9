"""Attention masks.

Convention used everywhere in the library: a **boolean mask is True where attention is allowed**
(as in ``torch.nn.functional.scaled_dot_product_attention``). A float mask is *additive*: 0 where
allowed, a large negative number where not. Masks broadcast to (B, H, T, S).

The rule for a query that may attend to no key at all (a fully masked row, e.g. a padded query in a
left-padded batch under a causal mask): its attention probabilities are all zero and its output is
zero. Softmax over nothing is undefined; we define it instead of letting NaN spread through the model.
"""

from __future__ import annotations

import torch


def causal_mask(query_length: int, key_length: int | None = None, device: torch.device | str | None = None,
                past_length: int | torch.Tensor | None = None) -> torch.Tensor:
    """Bool (T, S): query ``i``, at position ``past_length + i``, may see the keys at positions 0 .. past_length + i.

    ``past_length`` defaults to ``S - T``: with ``S > T`` (a KV cache holding ``S - T`` earlier tokens)
    the queries are the last T positions. A static cache returns all its max_cache_len slots, and the
    ones after the queries are not written yet: passing the queries' true first position hides them
    too. It may be a (1,) tensor, so that a compiled decode step stays one graph as the position moves.

    Example:
        >>> causal_mask(3).int()
        tensor([[1, 0, 0],
                [1, 1, 0],
                [1, 1, 1]], dtype=torch.int32)
        >>> causal_mask(1, 5, past_length=2).int()  # a static cache of 5 slots, the query in slot 2
        tensor([[1, 1, 1, 0, 0]], dtype=torch.int32)
    """
    key_length = query_length if key_length is None else key_length
    if past_length is None:
        if key_length < query_length:
            raise ValueError(f"key_length={key_length} must be >= query_length={query_length} for a causal mask")
        past_length = key_length - query_length
    q = torch.arange(query_length, device=device)[:, None] + past_length  # (T, 1) query positions
    k = torch.arange(key_length, device=device)[None, :]  # (1, S)
    return k <= q  # (T, S)


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """HF-style ``attention_mask`` (B, S) of 1 (real token) / 0 (padding) -> bool (B, 1, 1, S)."""
    if attention_mask.dim() != 2:
        raise ValueError(
            f"attention_mask must have shape (batch, seq_len) of 0/1, got shape {tuple(attention_mask.shape)}"
        )
    # The values are checked outside torch.compile only: reading one would split a compiled graph.
    if (attention_mask.dtype != torch.bool and not torch.compiler.is_compiling()
            and not bool(((attention_mask == 0) | (attention_mask == 1)).all())):
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (token)")
    return attention_mask.bool()[:, None, None, :]  # (B, S) -> (B, 1, 1, S)


def combine_masks(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """AND of boolean masks, broadcast together; ``None`` entries are skipped."""
    result = None
    for mask in masks:
        if mask is None:
            continue
        if mask.dtype != torch.bool:
            raise TypeError(f"combine_masks takes boolean masks, got dtype {mask.dtype}")
        result = mask if result is None else result & mask
    return result


def to_additive(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Bool mask -> additive float mask: 0 where allowed, the dtype's most negative value elsewhere.

    ``finfo.min`` rather than ``-inf`` keeps ``softmax`` finite on fully masked rows.
    """
    if mask.dtype != torch.bool:
        raise TypeError(f"to_additive takes a boolean mask, got dtype {mask.dtype}")
    zeros = torch.zeros((), dtype=dtype, device=mask.device)
    return torch.where(mask, zeros, torch.finfo(dtype).min)


def decoder_mask(attention_mask: torch.Tensor | None, query_length: int, key_length: int | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Causal AND padding, the mask of a decoder: bool (B or 1, 1, T, S)."""
    causal = causal_mask(query_length, key_length, device=device)[None, None]  # (1, 1, T, S)
    if attention_mask is None:
        return causal
    return combine_masks(causal, padding_mask(attention_mask.to(device) if device else attention_mask))


def check_mask(mask: torch.Tensor, batch: int, heads: int, query_length: int, key_length: int,
               name: str = "attn_mask") -> None:
    """Raise if ``mask`` is not bool/float or does not broadcast to (B, H, T, S) without stretching."""
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(
            f"{name} must be bool (True = attend) or float (additive), got dtype {mask.dtype}; "
            "for an HF 0/1 attention_mask use minitransformer.layers.padding_mask"
        )
    target = (batch, heads, query_length, key_length)
    if mask.dim() > 4:
        raise ValueError(f"{name} has {mask.dim()} dims, expected at most 4 broadcastable to (B, H, T, S)={target}")
    shape = (1,) * (4 - mask.dim()) + tuple(mask.shape)
    for size, want, axis in zip(shape, target, "BHTS"):
        if size not in (1, want):
            raise ValueError(
                f"{name} of shape {tuple(mask.shape)} does not broadcast to (B, H, T, S)={target}: "
                f"axis {axis} has size {size}, expected 1 or {want}"
            )
