"""The KV cache: keys and values of tokens already seen, kept so each new token costs O(T), not O(T^2).

Without a cache, generating token t re-runs attention's projections over all t-1 earlier tokens.
Their keys and values never change (a causal model's earlier positions do not see later ones), so
we compute them once and append.

Every layer's attention calls ``cache.update(key, value)`` with this step's (B, Hkv, T, D) keys and
values and gets back everything so far. The cache lives with attention, in ``layers/``: the models
use it, and generation only asks a model for a new one (``model.new_cache(...)``). Grouped-query attention stores Hkv heads, not H, and LLaMA's
keys are stored after RoPE (rotated once, at their own position).

Three kinds:

- :class:`DynamicCache` grows (writing each step's keys after the others): shapes change every step.
- :class:`StaticCache` preallocates (B, Hkv, max_cache_len, D) per layer and writes in place, so
  every decode step has the same shapes and ``torch.compile`` can compile it once.
- :class:`EncoderDecoderCache` (T5): the decoder's self-attention cache, and the cross-attention
  keys and values of the encoder output, projected once per generation. The self-attention part is
  a :class:`DynamicCache` by default; pass ``self_attention=StaticCache(...)`` for fixed shapes. The
  cross-attention part needs no such choice: it is written once, by the first step, and its length
  (the encoder's S) never changes, so it is "static" already.

Every cache answers the same two questions for a forward of T new tokens, through :meth:`step`:
where the new tokens start (``past_length``) and how many keys attention will see (``key_length``);
and :meth:`widen_mask` fits a mask over the tokens written so far to the keys the cache returns.
A static cache also needs to be told, around each forward, which slots the tokens fill:
``cache.prepare(T)`` before, ``cache.advance(T)`` after (a dynamic cache counts by itself; its
``prepare`` and ``advance`` do nothing, so a caller can treat every cache alike).

Shapes: B batch, Hkv key/value heads, S cached tokens, T new tokens, D head size.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class CacheStep(NamedTuple):
    """What a forward of T new tokens needs to know from its cache.

    past_length: the position of the first new token: an int, or for a static cache a (1,) tensor
        (its first slot to write), so that a compiled step does not change with it.
    key_length: the keys attention sees: ``past_length + T``, or a static cache's max_cache_len slots.
    """

    past_length: int | torch.Tensor
    key_length: int


class LayerCache:
    """One layer's keys and values, (B, Hkv, S, D) each, growing along the sequence axis.

    Appending by ``torch.cat`` would copy the whole cache at every step (O(S) per token, O(S^2)
    per generation). Instead the buffers have room to spare (``capacity`` slots, doubled when
    full) and each step writes only its own T slots; ``key``/``value`` are views of the S written.
    """

    def __init__(self, capacity: int = 0) -> None:
        self.capacity = capacity  # slots to reserve at the first update (more if it brings more)
        self.length = 0  # S: tokens cached
        self.key_buffer: torch.Tensor | None = None  # (B, Hkv, capacity, D)
        self.value_buffer: torch.Tensor | None = None

    @property
    def key(self) -> torch.Tensor | None:
        return None if self.key_buffer is None else self.key_buffer[:, :, :self.length]  # (B, Hkv, S, D)

    @property
    def value(self) -> torch.Tensor | None:
        return None if self.value_buffer is None else self.value_buffer[:, :, :self.length]  # (B, Hkv, S, D)

    def update(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's (B, Hkv, T, D) keys and values; return all of them (B, Hkv, S + T, D)."""
        end = self.length + key.shape[2]
        if self.key_buffer is None or end > self.key_buffer.shape[2]:
            self.grow(key, max(end, self.capacity, 2 * self.length))
        self.key_buffer[:, :, self.length:end] = key
        self.value_buffer[:, :, self.length:end] = value
        self.length = end
        return self.key, self.value

    def grow(self, like: torch.Tensor, capacity: int) -> None:
        """Move the cache into buffers of ``capacity`` slots: one copy, rare thanks to the doubling."""
        B, Hkv, _, D = like.shape
        key_buffer = like.new_empty(B, Hkv, capacity, D)
        value_buffer = like.new_empty(B, Hkv, capacity, D)
        if self.length:
            key_buffer[:, :, :self.length] = self.key
            value_buffer[:, :, :self.length] = self.value
        self.key_buffer, self.value_buffer = key_buffer, value_buffer

    def reorder(self, index: torch.Tensor) -> None:
        if self.key_buffer is not None:
            self.key_buffer, self.value_buffer = self.key_buffer[index], self.value_buffer[index]

    def crop(self, length: int) -> None:
        self.length = min(self.length, length)


class DynamicCache:
    """A cache that grows with every step, one :class:`LayerCache` per layer.

    Example:
        >>> cache = DynamicCache(num_layers=2)
        >>> k = v = torch.zeros(1, 2, 3, 4)  # (B, Hkv, T, D)
        >>> _ = cache[0].update(k, v); _ = cache[1].update(k, v)
        >>> cache.get_seq_length(), cache_nbytes(cache)
        (3, 384)
    """

    def __init__(self, num_layers: int, capacity: int = 0) -> None:
        """``capacity``: tokens to make room for at once (generate knows its final length); 0 to double as needed."""
        self.layers = [LayerCache(capacity) for _ in range(num_layers)]

    def __getitem__(self, layer: int) -> LayerCache:
        return self.layers[layer]

    def __len__(self) -> int:
        return len(self.layers)

    def get_seq_length(self) -> int:
        """Tokens cached so far (S)."""
        return self.layers[0].length

    def step(self, num_new_tokens: int) -> CacheStep:
        """The new tokens follow the S cached ones; attention sees S + T keys."""
        past = self.get_seq_length()
        return CacheStep(past, past + num_new_tokens)

    def widen_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """A dynamic cache returns exactly the keys written so far: the mask fits as it is."""
        return mask

    def prepare(self, num_new_tokens: int) -> None:
        """Nothing to do: the layers' ``update`` counts the tokens as they are written."""

    def advance(self, num_new_tokens: int) -> None:
        """Nothing to do (see :meth:`prepare`)."""

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (beam search moves beams between hypotheses)."""
        for layer in self.layers:
            layer.reorder(index)

    def crop(self, length: int) -> None:
        """Forget every token from ``length`` on (speculative decoding drops rejected drafts)."""
        for layer in self.layers:
            layer.crop(length)

    def tensors(self) -> list[torch.Tensor]:
        return [t for layer in self.layers for t in (layer.key, layer.value) if t is not None]


class StaticLayerCache:
    """A preallocated (B, Hkv, max_cache_len, D) buffer written in place at the cache's position."""

    def __init__(self, owner: StaticCache, key: torch.Tensor, value: torch.Tensor) -> None:
        self.owner = owner
        self.key, self.value = key, value

    def update(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this step's keys and values at ``owner.cache_position``; return the whole buffers.

        The buffers always have max_cache_len slots; the attention mask hides those not written yet.
        """
        positions = self.owner.cache_position  # (T,) the slots this step's tokens fill
        self.key.index_copy_(2, positions, key.to(self.key.dtype))
        self.value.index_copy_(2, positions, value.to(self.value.dtype))
        return self.key, self.value  # (B, Hkv, max_cache_len, D)

    @property
    def length(self) -> int:
        return self.owner.seen

    def reorder(self, index: torch.Tensor) -> None:
        self.key.copy_(self.key[index])
        self.value.copy_(self.value[index])


class StaticCache:
    """Fixed-size buffers for every layer; attention always sees S = max_cache_len keys.

    The cache owns its bookkeeping. Before each forward, :meth:`prepare` sets ``cache_position``,
    the slots the next tokens fill, as a tensor (a slice of one made once), so that a compiled step
    never depends on a Python int that changes; after it, :meth:`advance` records how many slots are
    written. :meth:`step` gives the forward its first position and key count from that tensor, and
    :meth:`widen_mask` hides the slots not written yet.

    Example:
        >>> cache = StaticCache(1, batch_size=1, num_key_value_heads=2, head_dim=4, max_cache_len=8)
        >>> cache.prepare(3)
        >>> cache.step(3)
        CacheStep(past_length=tensor([0]), key_length=8)
        >>> cache.advance(3); cache.prepare(1); cache.cache_position
        tensor([3])
    """

    def __init__(self, num_layers: int, batch_size: int, num_key_value_heads: int, head_dim: int,
                 max_cache_len: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> None:
        shape = (batch_size, num_key_value_heads, max_cache_len, head_dim)
        self.max_cache_len = max_cache_len
        self.seen = 0  # slots written
        self.slots = torch.arange(max_cache_len, device=device)  # (max_cache_len,) made once
        self.cache_position = self.slots[:0]  # (T,) the slots the next forward fills
        self.layers = [
            StaticLayerCache(self, torch.zeros(shape, dtype=dtype, device=device),
                             torch.zeros(shape, dtype=dtype, device=device))
            for _ in range(num_layers)
        ]

    def __getitem__(self, layer: int) -> StaticLayerCache:
        return self.layers[layer]

    def __len__(self) -> int:
        return len(self.layers)

    def get_seq_length(self) -> int:
        return self.seen

    def prepare(self, num_new_tokens: int) -> None:
        """Point ``cache_position`` at the slots of the next ``num_new_tokens`` tokens."""
        if self.seen + num_new_tokens > self.max_cache_len:
            raise ValueError(
                f"StaticCache holds max_cache_len={self.max_cache_len} tokens; {self.seen} are cached and "
                f"{num_new_tokens} more do not fit. Build the cache with a larger max_cache_len."
            )
        self.cache_position = self.slots[self.seen:self.seen + num_new_tokens]  # (T,)

    def advance(self, num_new_tokens: int) -> None:
        """Record that the forward wrote ``num_new_tokens`` slots."""
        self.seen += num_new_tokens

    def step(self, num_new_tokens: int) -> CacheStep:
        """First position: the first slot to write, as a (1,) tensor; keys: all max_cache_len slots."""
        if tuple(self.cache_position.shape) != (num_new_tokens,):
            raise ValueError(
                f"the static cache's cache_position has {self.cache_position.numel()} slots for {num_new_tokens} "
                f"new tokens; call cache.prepare({num_new_tokens}) before the forward and "
                f"cache.advance({num_new_tokens}) after it"
            )
        return CacheStep(self.cache_position[:1], self.max_cache_len)

    def widen_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """(B|1, 1, T, S) over the S slots written so far -> (B|1, 1, T, max_cache_len): the rest hidden."""
        if mask.shape[-1] == self.max_cache_len:
            return mask
        unwritten = mask.new_zeros(*mask.shape[:-1], self.max_cache_len - mask.shape[-1])  # (B|1, 1, T, free)
        return torch.cat([mask, unwritten], dim=-1)  # (B|1, 1, T, max_cache_len)

    def reorder(self, index: torch.Tensor) -> None:
        for layer in self.layers:
            layer.reorder(index)

    def crop(self, length: int) -> None:
        """Forget tokens from ``length`` on: later writes overwrite them, the mask hides them meanwhile."""
        self.seen = min(self.seen, length)

    def tensors(self) -> list[torch.Tensor]:
        return [t for layer in self.layers for t in (layer.key, layer.value)]


class EncoderDecoderCache:
    """T5's two caches: the decoder's self attention (one slot per decoder token) and cross attention (set once).

    The cross-attention keys and values depend only on the encoder output, which does not change
    while decoding; each layer's attention projects them at the first step and reuses them after.

    Args:
        num_layers: decoder layers.
        capacity: tokens the default dynamic self-attention cache reserves at once (0: double as needed).
        self_attention: a cache to use for the self attention instead of a new :class:`DynamicCache`;
            a :class:`StaticCache` gives every decode step the same shapes. As with any static cache,
            the caller calls ``cache.prepare(T)`` before each forward and ``cache.advance(T)`` after
            (they pass to the self-attention cache; the cross attention needs neither).

    Example:
        >>> static = StaticCache(2, batch_size=1, num_key_value_heads=4, head_dim=8, max_cache_len=16)
        >>> cache = EncoderDecoderCache(2, self_attention=static)
        >>> cache_nbytes(cache)  # 2 x 2 layers x 1 x 4 heads x 16 slots x 8 x 4 bytes; no cross K/V yet
        8192
    """

    def __init__(self, num_layers: int, capacity: int = 0,
                 self_attention: DynamicCache | StaticCache | None = None) -> None:
        if self_attention is not None and len(self_attention) != num_layers:
            raise ValueError(f"self_attention has {len(self_attention)} layers but the decoder has num_layers="
                             f"{num_layers}; build it with one layer per decoder block")
        self.self_attention = DynamicCache(num_layers, capacity) if self_attention is None else self_attention
        self.cross_attention = DynamicCache(num_layers)  # written once by the first step, then read

    @property
    def is_static(self) -> bool:
        """Whether the self attention is a preallocated :class:`StaticCache`."""
        return isinstance(self.self_attention, StaticCache)

    def get_seq_length(self) -> int:
        return self.self_attention.get_seq_length()

    def prepare(self, num_new_tokens: int) -> None:
        self.self_attention.prepare(num_new_tokens)

    def advance(self, num_new_tokens: int) -> None:
        self.self_attention.advance(num_new_tokens)

    def reorder(self, index: torch.Tensor) -> None:
        self.self_attention.reorder(index)
        self.cross_attention.reorder(index)

    def crop(self, length: int) -> None:
        self.self_attention.crop(length)

    def tensors(self) -> list[torch.Tensor]:
        return self.self_attention.tensors() + self.cross_attention.tensors()


def cache_nbytes(cache: DynamicCache | StaticCache | EncoderDecoderCache) -> int:
    """Bytes of the cached keys and values: 2 x layers x B x Hkv x S x D x bytes per element.

    S is the tokens cached (a dynamic cache may have reserved more room) or, for a static cache,
    its max_cache_len slots, all allocated up front. An :class:`EncoderDecoderCache` adds both parts:
    its self attention (decoder tokens, or max_cache_len slots) and its cross attention (S = the
    encoder's length, once the first step has written it).
    """
    return sum(t.numel() * t.element_size() for t in cache.tensors())


def expected_cache_nbytes(num_layers: int, batch_size: int, num_key_value_heads: int, seq_len: int, head_dim: int,
                          dtype: torch.dtype = torch.float32) -> int:
    """The formula of chapter 9, written out: keys and values (2) for every layer, row, head, token and dim."""
    bytes_per_element = torch.empty((), dtype=dtype).element_size()
    return 2 * num_layers * batch_size * num_key_value_heads * seq_len * head_dim * bytes_per_element
