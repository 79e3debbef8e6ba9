"""What every model family shares: a config base class and ``save_pretrained``/``from_pretrained``.

The work itself lives in :mod:`minitransformer.loading`; these are the doors to it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from minitransformer.models.config_checks import check_config

C = TypeVar("C", bound="Config")
M = TypeVar("M", bound="PreTrainedModel")


@dataclass
class Config:
    """Base of the dataclass configs: field names are those of the family's HF ``config.json``.

    ``from_dict`` takes the fields it knows and keeps the rest in ``extra``, so that ``to_dict``
    gives back everything (token ids, task parameters...) for a faithful round trip.
    """

    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_config(self)  # sizes positive ints, heads dividing the width... (models/config_checks.py)

    @classmethod
    def from_dict(cls: type[C], config: dict[str, Any]) -> C:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in config.items() if k in names}
        extra = {k: v for k, v in config.items() if k not in names}
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.extra)
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        return out


class PreTrainedModel(nn.Module):
    """An ``nn.Module`` with ``config``, ``save_pretrained`` and ``from_pretrained``."""

    config: Config

    def save_pretrained(self, directory: str | os.PathLike, max_shard_size: int | str | None = None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` (or shards of at most ``max_shard_size``, like
        ``"2GB"``, plus their index) that transformers loads (see ``loading.save_pretrained``)."""
        from minitransformer.loading import save_pretrained

        return save_pretrained(self, directory, max_shard_size=max_shard_size)

    @classmethod
    def from_pretrained(cls: type[M], path_or_repo_id: str | os.PathLike, **kwargs) -> M:
        """Load a checkpoint into this class (see ``minitransformer.loading.from_pretrained``)."""
        from minitransformer.loading import from_pretrained

        return from_pretrained(path_or_repo_id, model_class=cls, **kwargs)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def positions_from_attention_mask(attention_mask: torch.Tensor | None, seq_len: int,
                                  device: torch.device) -> torch.Tensor:
    """Position of each token, counting real tokens only: (B, T), or (1, T) without a mask.

    With left padding ``[pad, pad, a, b]`` the positions are ``[0, 0, 0, 1]``: ``a`` is at position
    0 as it would be alone, which is what makes a padded batch equal its sequences run one by one.
    Padding gets position 0, as in transformers' ``generate`` (``_prepare_position_ids_for_generation``:
    ``cumsum(-1) - 1``, then ``masked_fill(attention_mask == 0, 0)``).

    This is what ``generate`` passes, not what a forward infers: a forward without ``position_ids``
    counts from the cache length (:func:`default_position_ids`), as transformers' forward does.
    """
    if attention_mask is None:
        return torch.arange(seq_len, device=device)[None]  # (1, T)
    positions = attention_mask.long().cumsum(-1) - 1  # (B, T), -1 before a row's first real token
    return positions.masked_fill(attention_mask == 0, 0)


def default_position_ids(past_length: int, seq_len: int, device: torch.device) -> torch.Tensor:
    """The positions a forward uses when it is given none: (1, T), ``past_length .. past_length + T - 1``.

    This ignores the attention mask, as transformers' forward does (GPT-2, LLaMA, BERT): a left-padded
    row's first real token is then at position ``number of pads``, not 0, and its logits differ from the
    row run alone (GPT-2's learned positions show it at once; LLaMA's RoPE only looks at differences of
    positions, so its real tokens hide it). Inferring positions from the mask is left to ``generate``,
    which knows that the padding is on the left and passes :func:`positions_from_attention_mask`; a forward
    cannot tell left padding from a mask with another meaning. To run a left-padded batch as its rows
    alone, pass ``position_ids=positions_from_attention_mask(attention_mask, T, device)``.
    """
    return torch.arange(past_length, past_length + seq_len, device=device)[None]  # (1, T)


def packed_sequence_mask(position_ids: torch.Tensor) -> torch.Tensor | None:
    """Bool (B, 1, T, T), True where query and key belong to the same packed sequence; None if none is.

    Several sequences packed into one row, without padding between them, are told apart by their
    positions alone: a new sequence starts wherever a position is not the previous one plus 1
    (``[0, 1, 2, 0, 1]`` holds two). transformers' ``find_packed_sequence_indices`` reads them so when a
    forward has position_ids, no attention mask and no cache; this is the same rule.
    """
    previous = torch.cat([position_ids[:, :1] - 1, position_ids[:, :-1]], dim=-1)  # (B, T)
    sequence = (position_ids - previous != 1).cumsum(-1)  # (B, T): 0 for the first sequence, 1 for the next...
    if not torch.compiler.is_compiling() and not bool((sequence[:, -1] != 0).any()):
        return None  # one sequence per row (reading a value would split a compiled graph: skip it there)
    return sequence[:, None, :, None] == sequence[:, None, None, :]  # (B, 1, T, T)


def check_inputs(input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, past_length: int = 0,
                 ids_name: str = "input_ids", mask_name: str = "attention_mask") -> None:
    """The checks every forward makes on its ids and 2-D mask before anything is computed.

    ``input_ids`` must be a (B, T) tensor (the per-token dtype and range are checked by the embedding,
    ``layers.embeddings.check_token_ids``); a 2-D ``attention_mask`` must be (B, past_length + T): one
    entry per key, the cached ones included. A 4-D mask is the caller's own and is not checked here.
    Without these checks a mask of another batch size broadcasts silently into a wrong-sized output.
    """
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"{ids_name} must be a torch.Tensor of token ids (B, T), got {type(input_ids).__name__}; "
                        "a tokenizer called with return_tensors='pt' gives one")
    if input_ids.dim() != 2:
        hint = f"; add the batch dimension: {ids_name}[None]" if input_ids.dim() == 1 else ""
        raise ValueError(f"{ids_name} must be (batch, seq_len), got shape {tuple(input_ids.shape)}{hint}")
    if attention_mask is None or attention_mask.dim() == 4:
        return
    B, T = input_ids.shape
    expected = (B, past_length + T)
    if attention_mask.dim() != 2 or tuple(attention_mask.shape) != expected:
        cached = f" ({past_length} cached + {T} new)" if past_length else ""
        raise ValueError(
            f"{mask_name} must be (batch, keys) = {expected}{cached} to go with {ids_name} of shape {(B, T)}, "
            f"got {tuple(attention_mask.shape)}; pass the mask the tokenizer returned with these ids"
        )


def prepare_causal_inputs(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    past_key_values,
    use_cache: bool | None,
    num_layers: int,
    build_mask: Callable[[torch.Tensor | None, int, int, torch.device], torch.Tensor],
):
    """What every decoder-only forward does before its blocks: the cache, the mask, the positions.

    Args:
        input_ids: (B, T), the tokens the cache does not hold yet.
        attention_mask: HF's 0/1 (B, S_past + T), or a ready bool mask (B|1, 1, T, S) (``generate``
            builds one per generation and slices it; ``position_ids`` must then be given).
        position_ids: (B|1, T); None: ``S_past .. S_past + T - 1`` whatever the mask says, as in
            transformers (see :func:`default_position_ids`).
        past_key_values: a KV cache or None; with ``use_cache=True`` and None, a new :class:`DynamicCache`.
        use_cache: True starts a cache. False: no cache, and ``position_ids`` given with no mask are read
            as packed sequences (see :func:`packed_sequence_mask`), as transformers reads them when it
            runs without a cache. None (the forwards' default): no cache either, but no packing, as
            transformers' default, which keeps a cache (``config.use_cache=True``) and with it never
            reads packing.
        build_mask: the family's mask, ``(attention_mask, T, S, device) -> (B|1, 1, T, S)`` bool.

    Returns:
        (past_key_values, mask (B|1, 1, T, S), position_ids (B|1, T))
    """
    from minitransformer.generation.cache import DynamicCache, mask_for_cache

    past = 0 if past_key_values is None else past_key_values.get_seq_length()
    check_inputs(input_ids, attention_mask, past)
    T = input_ids.shape[1]
    if use_cache and past_key_values is None:
        past_key_values = DynamicCache(num_layers)
    if attention_mask is not None and attention_mask.dim() == 4:
        if position_ids is None:
            raise ValueError("a 4-D attention_mask needs position_ids (B, T) too")
        return past_key_values, attention_mask, position_ids
    mask = build_mask(attention_mask, T, past + T, input_ids.device)  # (B|1, 1, T, S_past + T)
    if position_ids is None:
        position_ids = default_position_ids(past, T, input_ids.device)  # (1, T)
    elif attention_mask is None and past_key_values is None and use_cache is False:
        packed = packed_sequence_mask(position_ids)  # (B|1, 1, T, T) or None
        if packed is not None:
            mask = mask & packed  # (B|1, 1, T, T)
    return past_key_values, mask_for_cache(mask, past_key_values), position_ids


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor | None:
    """Cross-entropy of position t's logits against labels[t + 1] (-100 ignored), or None without labels."""
    if labels is None:
        return None
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
