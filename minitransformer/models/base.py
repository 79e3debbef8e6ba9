"""What every model family shares: a config base class, the model base classes, the input checks.

``PreTrainedModel`` is what every model is: ``config``, ``device``, ``dtype``, ``num_parameters()``,
and three doors to the packages above the models, ``save_pretrained``/``from_pretrained``
(:mod:`minitransformer.loading`) and ``generate`` (:mod:`minitransformer.generation`). A door
imports its package when it is called, so that nothing here imports anything above the models.

``DecoderOnlyModel`` is the one interface generation (and training) uses for GPT-2, LLaMA and any
decoder-only family to come: ``layers``, ``max_positions``, ``build_mask(...)``,
``new_cache(...)``, and ``prepare_inputs(...)``, what every forward does before its blocks. A new
family subclasses it and writes its own ``__init__`` and ``forward``; generation needs no edit.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from minitransformer.layers.kv_cache import DynamicCache, EncoderDecoderCache, StaticCache
from minitransformer.layers.masks import decoder_mask
from minitransformer.models.config_checks import check_config

C = TypeVar("C", bound="Config")
M = TypeVar("M", bound="PreTrainedModel")


@dataclass
class Config:
    """Base of the dataclass configs: field names are those of the family's HF ``config.json``.

    ``from_dict`` takes the fields it knows and keeps the rest in ``extra``, so that ``to_dict``
    gives back everything (token ids, task parameters...) for a faithful round trip.

    ``from_name`` builds a named preset (the real sizes of published checkpoints, and tiny ones for
    tests and lessons): ``GPT2Config.from_name("gpt2")``; ``Config.presets`` lists a family's names.
    """

    #: name -> the fields that differ from the class defaults (each family fills its own).
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

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

    @classmethod
    def from_name(cls: type[C], name: str, **overrides: Any) -> C:
        """The preset called ``name`` (see ``cls.presets``), with ``overrides`` on top.

        Example:
            >>> from minitransformer.models.gpt2 import GPT2Config
            >>> GPT2Config.from_name("gpt2").n_layer, GPT2Config.from_name("gpt2-tiny", n_layer=1).n_layer
            (12, 1)
        """
        if name not in cls.presets:
            close = difflib.get_close_matches(name, cls.presets, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{cls.__name__} has no preset {name!r}{hint} Presets: {', '.join(cls.presets)}")
        return cls(**{**cls.presets[name], **overrides})


class PreTrainedModel(nn.Module):
    """An ``nn.Module`` with ``config``, ``device``, ``dtype``, ``save_pretrained``, ``from_pretrained``, ``generate``."""

    config: Config
    #: True for T5: generation encodes once, then decodes (``encode``/``decode``).
    is_encoder_decoder: ClassVar[bool] = False

    @property
    def device(self) -> torch.device:
        """Where the weights are (the first parameter's device, as in transformers)."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' floating-point dtype (the first parameter's)."""
        return next(self.parameters()).dtype

    @property
    def max_positions(self) -> int | None:
        """The longest sequence the model can take (its position table or RoPE range); None: no limit."""
        return None

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        """Generate after ``input_ids``: see ``minitransformer.generation.generate`` for every option."""
        from minitransformer.generation.generate import generate

        return generate(self, input_ids, attention_mask, **kwargs)

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

    def num_parameters(self, only_trainable: bool = False) -> int:
        """Parameters, counted once even when shared (a tied head); ``only_trainable``: those with ``requires_grad``."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not only_trainable)


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


def default_position_ids(past_length: int | torch.Tensor, seq_len: int, device: torch.device) -> torch.Tensor:
    """The positions a forward uses when it is given none: (1, T), ``past_length .. past_length + T - 1``.

    This ignores the attention mask, as transformers' forward does (GPT-2, LLaMA, BERT): a left-padded
    row's first real token is then at position ``number of pads``, not 0, and its logits differ from the
    row run alone (GPT-2's learned positions show it at once; LLaMA's RoPE only looks at differences of
    positions, so its real tokens hide it). Inferring positions from the mask is left to ``generate``,
    which knows that the padding is on the left and passes :func:`positions_from_attention_mask`; a forward
    cannot tell left padding from a mask with another meaning. To run a left-padded batch as its rows
    alone, pass ``position_ids=positions_from_attention_mask(attention_mask, T, device)``.

    ``past_length`` may be a (1,) tensor: a static cache's first slot, as a compiled step passes it.
    """
    return (torch.arange(seq_len, device=device) + past_length)[None]  # (1, T)


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
    ``layers.embeddings.check_token_ids``); ``attention_mask`` is HF's 0/1 mask, (B, past_length + T):
    one entry per key, the cached ones included. A ready 4-D mask has its own argument
    (``prepared_mask``) in the forwards that take one. Without these checks a mask of another batch
    size broadcasts silently into a wrong-sized output.
    """
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"{ids_name} must be a torch.Tensor of token ids (B, T), got {type(input_ids).__name__}; "
                        "a tokenizer called with return_tensors='pt' gives one")
    if input_ids.dim() != 2:
        hint = f"; add the batch dimension: {ids_name}[None]" if input_ids.dim() == 1 else ""
        raise ValueError(f"{ids_name} must be (batch, seq_len), got shape {tuple(input_ids.shape)}{hint}")
    if attention_mask is None:
        return
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"{mask_name} must be a torch.Tensor of 0/1 (B, keys), got {type(attention_mask).__name__}")
    if attention_mask.dim() == 4:
        raise ValueError(f"{mask_name} is HF's 2-D 0/1 mask (batch, keys); got a 4-D {tuple(attention_mask.shape)} "
                         "mask: pass a ready (B|1, 1, T, S) mask as prepared_mask= (decoder-only models), "
                         "with position_ids")
    B, T = input_ids.shape
    expected = (B, past_length + T)
    if attention_mask.dim() != 2 or tuple(attention_mask.shape) != expected:
        cached = f" ({past_length} cached + {T} new)" if past_length else ""
        raise ValueError(
            f"{mask_name} must be (batch, keys) = {expected}{cached} to go with {ids_name} of shape {(B, T)}, "
            f"got {tuple(attention_mask.shape)}; pass the mask the tokenizer returned with these ids"
        )


class CausalInputs(NamedTuple):
    """What a decoder-only forward hands its blocks (see :meth:`DecoderOnlyModel.prepare_inputs`)."""

    past_key_values: DynamicCache | StaticCache | None
    mask: torch.Tensor  # (B|1, 1, T, S) bool (True = attend) or additive float, S = the keys the cache returns
    position_ids: torch.Tensor  # (B|1, T)


class DecoderOnlyModel(PreTrainedModel):
    """The interface of a decoder-only family (GPT-2, LLaMA), which generation and training use and nothing else.

    A subclass sets ``config`` and its modules, and gives:

    - ``layers``: its decoder blocks, in order (a property over its own module names);
    - ``max_positions``: the longest sequence it takes;
    - ``build_mask``: only if its mask is not causal-and-padding (Mistral adds a sliding window).

    and gets ``new_cache`` and ``prepare_inputs`` from here.
    """

    @property
    def layers(self) -> nn.ModuleList:
        raise NotImplementedError(f"{type(self).__name__} must say where its decoder blocks are (a layers property)")

    def build_mask(self, attention_mask: torch.Tensor | None, T: int, S: int | None = None,
                   device: torch.device | None = None) -> torch.Tensor:
        """Causal AND padding: bool (B|1, 1, T, S), True = attend; the T queries are the last T of S keys.

        ``attention_mask`` is HF's 0/1 (B, S), or None (no padding).
        """
        return decoder_mask(attention_mask, T, S, device=device)

    def new_cache(self, batch_size: int = 1, max_cache_len: int = 0, static: bool = False,
                  dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> DynamicCache | StaticCache:
        """An empty KV cache for this model: one layer cache per block, Hkv heads of size D each.

        Args:
            batch_size: B (a static cache preallocates its rows).
            max_cache_len: tokens to make room for: a static cache's fixed slots; a dynamic cache
                reserves them at once (0: it doubles as it grows).
            static: a :class:`StaticCache` (fixed shapes, for ``torch.compile``) instead of a :class:`DynamicCache`.
            dtype, device: of a static cache's buffers; default the model's.
        """
        if not static:
            return DynamicCache(len(self.layers), capacity=max_cache_len)
        if max_cache_len < 1:
            raise ValueError(f"a static cache needs max_cache_len >= 1 (its fixed slots), got {max_cache_len}")
        attn = self.layers[0].self_attn
        return StaticCache(len(self.layers), batch_size, attn.num_kv_heads, attn.head_dim, max_cache_len,
                           dtype=dtype or self.dtype, device=device or self.device)

    def prepare_inputs(self, input_ids: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
                       prepared_mask: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                       past_key_values: DynamicCache | StaticCache | None = None,
                       use_cache: bool | None = None) -> CausalInputs:
        """What every decoder-only forward does before its blocks: the cache, the mask, the positions.

        Args:
            input_ids: (B, T), the tokens the cache does not hold yet.
            attention_mask: HF's 0/1 (B, S_past + T), or None (no padding).
            prepared_mask: a ready (B|1, 1, T, S) mask over the keys attention will see, bool or
                additive float, used as it is (``generate`` builds one per generation and slices it);
                ``position_ids`` must then be given too. Not with ``attention_mask``.
            position_ids: (B|1, T); None: ``S_past .. S_past + T - 1`` whatever the mask says, as in
                transformers (see :func:`default_position_ids`).
            past_key_values: a KV cache or None; with ``use_cache=True`` and None, a new :class:`DynamicCache`.
            use_cache: True starts a cache. False: no cache, and ``position_ids`` given with no mask are read
                as packed sequences (see :func:`packed_sequence_mask`), as transformers reads them when it
                runs without a cache. None (the forwards' default): no cache either, but no packing, as
                transformers' default, which keeps a cache (``config.use_cache=True``) and with it never
                reads packing.
        """
        if use_cache and past_key_values is None:
            past_key_values = self.new_cache()
        if prepared_mask is not None:
            check_inputs(input_ids)
            if attention_mask is not None or position_ids is None:
                raise ValueError("prepared_mask replaces attention_mask, and needs position_ids (B|1, T): "
                                 "pass prepared_mask= and position_ids=, or a 2-D attention_mask= alone")
            if prepared_mask.dim() != 4:
                raise ValueError(f"prepared_mask must be 4-D (B|1, 1, T, S), got {tuple(prepared_mask.shape)}; "
                                 "HF's 2-D 0/1 mask goes to attention_mask=")
            mask = prepared_mask
        else:
            past = 0 if past_key_values is None else past_key_values.get_seq_length()
            check_inputs(input_ids, attention_mask, past)
            T = input_ids.shape[1]
            mask = self.build_mask(attention_mask, T, past + T, input_ids.device)  # (B|1, 1, T, S_past + T)
            if position_ids is None:
                position_ids = default_position_ids(past, T, input_ids.device)  # (1, T)
            elif attention_mask is None and past_key_values is None and use_cache is False:
                packed = packed_sequence_mask(position_ids)  # (B|1, 1, T, T) or None
                if packed is not None:
                    mask = mask & packed  # (B|1, 1, T, T)
        widen = getattr(past_key_values, "widen_mask", None)  # a cache that returns only the keys written
        if widen is not None:  # (any object with update and get_seq_length, as chapter 9's) needs none
            mask = widen(mask)  # (B|1, 1, T, keys the cache returns)
        return CausalInputs(past_key_values, mask, position_ids)


class EncoderDecoderModel(PreTrainedModel):
    """The interface of an encoder-decoder family (T5) for generation: ``encode``, ``decode``, ``new_cache``."""

    is_encoder_decoder: ClassVar[bool] = True

    def new_cache(self, batch_size: int = 1, max_cache_len: int = 0, static: bool = False,
                  dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> EncoderDecoderCache:
        """An empty :class:`EncoderDecoderCache`: the decoder's self attention (static: ``max_cache_len``
        preallocated slots) and the cross attention, written once by the first step."""
        layers = self.decoder.layers
        if not static:
            return EncoderDecoderCache(len(layers), capacity=max_cache_len)
        if max_cache_len < 1:
            raise ValueError(f"a static cache needs max_cache_len >= 1 (its fixed slots), got {max_cache_len}")
        attn = layers[0].self_attn
        self_attention = StaticCache(len(layers), batch_size, attn.num_kv_heads, attn.head_dim, max_cache_len,
                                     dtype=dtype or self.dtype, device=device or self.device)
        return EncoderDecoderCache(len(layers), self_attention=self_attention)


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor | None,
                    shift_labels: torch.Tensor | None = None) -> torch.Tensor | None:
    """Cross-entropy of position t's logits against labels[t + 1] (-100 ignored), or None without labels.

    The labels move left, not the logits: ``logits[:, :-1]`` would copy the largest tensor of the step
    (B x T x vocabulary) and its gradient; the last position, with no next token, gets the label -100.
    ``shift_labels`` (B, T), transformers' name, are targets already shifted: position t is scored
    against ``shift_labels[t]``, so the last position has a target too (the Trainer's batches, cut
    from T + 1 tokens as nanoGPT's are). Given, it replaces ``labels``.
    """
    if shift_labels is not None:
        targets = shift_labels  # (B, T): already position t's next token
    elif labels is None:
        return None
    else:
        targets = F.pad(labels[:, 1:], (0, 1), value=-100)  # (B, T): position t predicts labels[t + 1]
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
