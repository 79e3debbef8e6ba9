"""Prefill and decode: running a model over a growing token buffer, one step at a time.

A generation keeps every token in one buffer ``tokens`` (B, L): the prompt, then the tokens chosen
so far; L = prompt length + max_new_tokens. A session owns what the steps share:

    prefill(tokens)       the whole prompt in one forward; fills the cache; logits of its last token
    decode(tokens, pos)   with a cache: only token pos - 1, one forward of T = 1; without: all of
                          tokens[:, :pos] again (the O(T^2) way); logits of the next token (B, V)

Everything that does not change during a generation is built once, before the first step, and
each step takes a slice of it: the (B, 1, L, L) attention mask, the (B, L) positions (counting real
tokens only, as transformers' ``generate`` passes them: see :func:`generation_positions`), the cache.

A session knows a model only through its interface (``models/base.py``): ``build_mask``,
``new_cache``, ``dtype``, and for T5 ``encode``/``decode``; a new family needs no edit here. Every
cache is driven alike: ``cache.prepare(T)`` before a forward, ``cache.advance(T)`` after (a dynamic
cache counts by itself and ignores both; a static one needs them to know its slots).

Shapes: B batch (times the beams in beam search), L buffer length, V vocabulary.
"""

from __future__ import annotations

import torch

from minitransformer.generation.compiled import compiled_step
from minitransformer.layers.masks import to_additive
from minitransformer.models.base import positions_from_attention_mask


def prefill(model, input_ids: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor, cache) -> torch.Tensor:
    """Run the prompt (B, T) through the model, writing its keys and values into ``cache``.

    ``mask`` is the prepared (B, 1, T, S) mask over the keys the cache returns. Returns the logits of
    the last position (B, V): the prediction of the first new token.
    """
    out = model(input_ids, prepared_mask=mask, position_ids=position_ids, past_key_values=cache, logits_to_keep=1)
    return out.logits[:, -1]  # (B, V)


def decode_step(model, token: torch.Tensor, mask: torch.Tensor, position_ids: torch.Tensor, cache) -> torch.Tensor:
    """One new token (B, 1) against the cache: T = 1 query, S = cached tokens + 1 keys. Returns (B, V)."""
    out = model(token, prepared_mask=mask, position_ids=position_ids, past_key_values=cache, logits_to_keep=1)
    return out.logits[:, -1]  # (B, V)


class DecoderOnlySession:
    """Prefill and decode steps of a decoder-only model (GPT-2, LLaMA).

    Args:
        model: a :class:`~minitransformer.models.base.DecoderOnlyModel`; called as
            ``model(ids, prepared_mask=4-D mask, position_ids=..., past_key_values=...)``.
        prompt_mask: (B, P) 0/1 mask of the prompt (left padding), or None.
        prompt_length: P.
        total_length: L = P + max_new_tokens.
        use_cache: keep a KV cache (True) or recompute every step (False).
        cache_implementation: "dynamic" (grows) or "static" (preallocated, L slots).
        compile: run the decode step through ``torch.compile`` (static cache only; see
            ``generation/compiled.py`` for the kernels it picks); True, or a dict of ``torch.compile``
            keyword arguments (e.g. ``{"backend": "eager", "fullgraph": True}``).
    """

    def __init__(self, model, prompt_mask: torch.Tensor | None, batch_size: int, prompt_length: int,
                 total_length: int, device: torch.device, use_cache: bool = True,
                 cache_implementation: str = "dynamic", compile: bool | dict = False):
        self.model = model
        self.prompt_length = prompt_length
        B, L = batch_size, total_length
        # Which keys are real: the prompt's mask, then 1 for every generated token (finished rows too).
        key_mask = torch.ones(B, L, dtype=torch.long, device=device)  # (B, L)
        if prompt_mask is not None:
            key_mask[:, :prompt_length] = prompt_mask
        self.positions = generation_positions(prompt_mask, B, prompt_length, L, device)  # (B, L)
        allowed = model.build_mask(key_mask, L, device=device)  # (B, 1, L, L) bool (+ Mistral's window)
        # Additive (0 / most negative), made once: attention adds a float mask as it is, while a bool one
        # is converted and checked for fully masked rows at every layer of every step. Only padding
        # queries have no key at all, and no real token reads their outputs.
        self.mask = to_additive(allowed, model.dtype)  # (B, 1, L, L)
        self.static = use_cache and cache_implementation == "static"
        self.cache = model.new_cache(B, L, static=self.static, device=device) if use_cache else None
        self.step_model = compiled_step(model, model, device, compile, rows=B) if compile else model

    def prefill(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, L): run the prompt tokens[:, :P]; return the next-token logits (B, V)."""
        P = self.prompt_length
        if self.cache is None:
            return prefill(self.model, tokens[:, :P], self.mask[:, :, :P, :P], self.positions[:, :P], None)
        self.cache.prepare(P)
        logits = prefill(self.model, tokens[:, :P], self.mask[:, :, :P, :self.key_length(P)],
                         self.positions[:, :P], self.cache)
        self.cache.advance(P)
        return logits

    def decode(self, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        """Logits (B, V) of the token at ``pos``, given tokens[:, :pos]."""
        if self.cache is None:  # no cache: the whole sequence again, O(pos) work per layer for every token
            return prefill(self.model, tokens[:, :pos], self.mask[:, :, :pos, :pos], self.positions[:, :pos], None)
        self.cache.prepare(1)
        logits = decode_step(self.step_model, tokens[:, pos - 1:pos], self.mask[:, :, pos - 1:pos, :self.key_length(pos)],
                             self.positions[:, pos - 1:pos], self.cache)
        self.cache.advance(1)
        return logits

    def key_length(self, end: int) -> int:
        """Keys attention sees after writing tokens up to ``end``: all of a static cache's slots."""
        return self.mask.shape[-1] if self.static else end

    def reorder(self, index: torch.Tensor) -> None:
        """Beam search: row i of the batch continues row index[i]."""
        if self.cache is not None:
            self.cache.reorder(index)


class EncoderDecoderSession:
    """Prefill and decode steps of T5: encode once, then decode with self- and cross-attention caches.

    The encoder output (B, S, C) and its mask are computed here, once; the cross-attention keys and
    values are projected by the first decoder step and kept in the cache after that. The decoder's
    prompt is the start token alone, so prefill is a step of T = 1 like the others.

    Args:
        model: an :class:`~minitransformer.models.base.EncoderDecoderModel` (T5); called as
            ``model.encode(ids, mask)`` once and ``model.decode(ids, encoder_hidden_states, mask, past_key_values=...)``.
        input_ids: (B, S) the encoder input. attention_mask: its (B, S) 0/1 mask, or None.
        num_beams: K; every input's encoder output is repeated for its K rows (B * K rows): its K beams,
            or its K sampled sequences (``num_return_sequences``).
        use_cache: keep the caches (True) or run the decoder over all its tokens every step (False).
        total_length: L = 1 + max_new_tokens decoder tokens: the static cache's slots, and the room
            the dynamic one reserves at once; needed for the static cache only.
        cache_implementation: "dynamic" (grows) or "static" (the self attention preallocated, L slots).
            The cross attention is the same either way: its S keys are projected once.
        compile: run the decode step through ``torch.compile`` (static cache only), as in
            :class:`DecoderOnlySession`. The prefill step is not compiled: it is the one that
            projects the cross-attention keys and values, a different graph from every later step.
    """

    def __init__(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                 num_beams: int = 1, use_cache: bool = True, total_length: int | None = None,
                 cache_implementation: str = "dynamic", compile: bool | dict = False):
        self.model = model
        self.encoder_hidden_states = model.encode(input_ids, attention_mask).last_hidden_state  # (B, S, C)
        self.encoder_mask = attention_mask  # (B, S) 0/1 or None
        if num_beams > 1:  # every beam reads the same encoder output
            self.encoder_hidden_states = self.encoder_hidden_states.repeat_interleave(num_beams, dim=0)
            if self.encoder_mask is not None:
                self.encoder_mask = self.encoder_mask.repeat_interleave(num_beams, dim=0)  # (B * K, S)
        rows = self.encoder_hidden_states.shape[0]
        self.static = use_cache and cache_implementation == "static"
        if self.static and total_length is None:
            raise ValueError("cache_implementation='static' needs total_length=1 + max_new_tokens: "
                             "the decoder tokens to preallocate slots for")
        self.cache = None
        if use_cache:
            self.cache = model.new_cache(rows, total_length or 0, static=self.static, device=input_ids.device)
        self.step_decode = (compiled_step(model, model.decode, input_ids.device, compile, rows=rows) if compile
                            else model.decode)

    def run(self, decode, decoder_input_ids: torch.Tensor) -> torch.Tensor:
        out = decode(decoder_input_ids, self.encoder_hidden_states, self.encoder_mask, past_key_values=self.cache)
        return out.logits[:, -1]  # (B, V)

    def prefill(self, tokens: torch.Tensor) -> torch.Tensor:
        """The decoder's prompt is the start token alone: (B, 1). Returns the next-token logits (B, V)."""
        if self.cache is None:
            return self.run(self.model.decode, tokens[:, :1])
        return self.step(self.model.decode, tokens, 1)

    def decode(self, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        """Logits (B, V) of the token at ``pos``, given tokens[:, :pos]."""
        if self.cache is None:  # no cache: the whole decoder sequence again
            return self.run(self.model.decode, tokens[:, :pos])
        return self.step(self.step_decode, tokens, pos)

    def step(self, decode, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        """Token pos - 1 (B, 1) against the caches; in a static cache it fills slot pos - 1."""
        self.cache.prepare(1)
        logits = self.run(decode, tokens[:, pos - 1:pos])
        self.cache.advance(1)
        return logits

    def reorder(self, index: torch.Tensor) -> None:
        """Beam search: row i of the batch continues row index[i]."""
        if self.cache is not None:
            self.cache.self_attention.reorder(index)
            # The cross-attention keys and values are the same for every beam of an input: no move needed.


def generation_positions(prompt_mask: torch.Tensor | None, batch_size: int, prompt_length: int,
                         total_length: int, device: torch.device) -> torch.Tensor:
    """The position of every buffer slot (B, L), as transformers' ``generate`` passes them.

    A model's forward counts positions from the cache length whatever the mask says; ``generate``
    knows the prompt is left-padded and passes positions that count real tokens only, so that each row
    equals that row generated alone. transformers computes them once from the prompt's mask
    (``_prepare_position_ids_for_generation``: ``cumsum - 1``, padding set to 0), then gives each new
    token the last position plus one (``_update_model_kwargs_for_generation``). With left padding that
    is the count of real tokens before each slot; with padding elsewhere in a prompt (on the right, or
    holes), the new tokens continue from the last prompt slot's position, 0 if that slot is padding.

    Example:
        >>> generation_positions(torch.tensor([[0, 1, 1], [1, 1, 0]]), 2, 3, 5, "cpu")
        tensor([[0, 0, 1, 2, 3],
                [0, 1, 0, 1, 2]])
    """
    prompt = positions_from_attention_mask(prompt_mask, prompt_length, device).expand(batch_size, -1)  # (B, P)
    steps = torch.arange(1, total_length - prompt_length + 1, device=device)  # (L - P,)
    return torch.cat([prompt, prompt[:, -1:] + steps], dim=1)  # (B, L)
