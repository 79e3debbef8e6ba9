"""``model.generate``: greedy decoding, sampling and beam search on top of prefill and decode steps.

    prompt ──prefill──> cache, logits of the last position ──process, choose──> token
    token ──decode step──> cache grows by one, next logits ──process, choose──> token ... until every
    row has produced EOS (or a stop string), or max_new_tokens

The loop writes into one preallocated token buffer (B, P + max_new_tokens) and returns the part
that was filled, exactly like transformers: prompt plus new tokens for GPT-2 and LLaMA, the decoder
tokens (starting with ``decoder_start_token_id``) for T5. A row that has finished gets
``pad_token_id`` for the rest of the batch's steps.

Shapes: B batch, P prompt length, L = P + max_new_tokens, V vocabulary.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

from minitransformer.generation.beam_search import beam_search
from minitransformer.generation.logits import check_sampling_args, choose_next_token, process_logits
from minitransformer.generation.sessions import DecoderOnlySession, EncoderDecoderSession
from minitransformer.generation.streaming import StopStrings


@dataclass
class GenerationConfig:
    """The settings of one ``generate`` call, checked and with the model's defaults filled in."""

    max_new_tokens: int
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    num_beams: int = 1
    num_return_sequences: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    eos_token_id: list[int] = field(default_factory=list)
    pad_token_id: int | None = None
    use_cache: bool = True
    cache_implementation: str = "dynamic"
    compile: bool | dict = False

    def processing(self) -> dict:
        """The keyword arguments of :func:`process_logits`."""
        return dict(do_sample=self.do_sample, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                    repetition_penalty=self.repetition_penalty)


class GenerationMixin:
    """Adds :meth:`generate` to GPT2, Llama and T5."""

    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        max_new_tokens: int,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        repetition_penalty: float = 1.0,
        num_beams: int = 1,
        num_return_sequences: int = 1,
        length_penalty: float = 1.0,
        eos_token_id: int | list[int] | None = None,
        pad_token_id: int | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        streamer=None,
        early_stopping: bool | str = False,
        stop_strings: str | list[str] | None = None,
        tokenizer=None,
        cache_implementation: str = "dynamic",
        compile: bool | dict = False,
    ) -> torch.Tensor:
        """Generate up to ``max_new_tokens`` tokens after ``input_ids``.

        Args:
            input_ids: (B, P) prompt ids (T5: the encoder input).
            attention_mask: (B, P) 1 for tokens, 0 for padding. Pad decoder-only prompts on the left:
                each row then equals that row generated alone (the positions count real tokens only,
                as in transformers' generate; a forward without ``position_ids`` would not). Without
                one, a decoder-only prompt's ``pad_token_id`` tokens are padding, unless that id is
                also an EOS id (see :func:`mask_from_padding`).
            max_new_tokens: how many tokens to add at most. Prompt + max_new_tokens must fit the model's
                context (``n_positions`` / ``max_position_embeddings``), or a ValueError says so.
            do_sample: sample from the processed distribution instead of taking the argmax.
            temperature, top_k, top_p: reshape the distribution when sampling (transformers' order:
                temperature, top-k, top-p). Unlike transformers, top_k defaults to None (no top-k), not 50.
            repetition_penalty: > 1 makes tokens already in the sequence less likely (prompt padding ignored).
            num_beams: > 1 for beam search; length_penalty divides a finished beam's log-probability by
                length ** length_penalty; early_stopping: True stops once num_beams hypotheses are
                finished, False (default) and "never" as in transformers.
            num_return_sequences: R sequences per input, rows grouped per input (input b is rows
                b * R to b * R + R - 1). With beam search, its R best hypotheses, best first (R <= num_beams);
                with do_sample, R independent samples. Greedy decoding has one answer only: R > 1 is an error.
            eos_token_id: int or list; default the model config's. A row stops when it produces one.
            pad_token_id: written after a row has finished; default the config's, else the first EOS id.
            use_cache: keep a KV cache (default) or recompute the whole sequence every step.
            generator: a ``torch.Generator`` for reproducible sampling (default: torch's global RNG).
            streamer: an object with ``put(ids)`` and ``end()`` (:class:`TextStreamer`,
                :class:`TextIteratorStreamer`, or transformers' own); batch size 1, no beams,
                num_return_sequences=1.
            stop_strings: str or list of str; a row stops once its generated text contains one
                (needs ``tokenizer``, anything with ``decode(list[int]) -> str``).
            cache_implementation: "dynamic" (grows as needed, doubling its buffers) or "static" (preallocated, fixed
                shapes). For T5 it is the decoder's self-attention cache; cross attention is projected once either way.
            compile: ``torch.compile`` the decode step (needs the static cache): True, or a dict of
                ``torch.compile`` keyword arguments.

        Returns:
            LongTensor: (B * R, P + n) for decoder-only models, (B * R, 1 + n) decoder tokens for T5,
            R = num_return_sequences, n <= max_new_tokens (shorter when every row stopped early; with
            beam search, the longest of the returned hypotheses, the others padded with pad_token_id).

        Example:
            >>> model = GPT2(GPT2Config(vocab_size=100, n_positions=32, n_embd=32, n_layer=2, n_head=4)).eval()
            >>> model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=5).shape
            torch.Size([1, 8])
        """
        encoder_decoder = getattr(self.config, "is_encoder_decoder", False)
        check_inputs(input_ids, attention_mask)
        B, P = input_ids.shape
        cfg = make_config(
            self.config, P if not encoder_decoder else 1, max_new_tokens=max_new_tokens, do_sample=do_sample,
            temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
            num_beams=num_beams, num_return_sequences=num_return_sequences, length_penalty=length_penalty,
            early_stopping=early_stopping, eos_token_id=eos_token_id, pad_token_id=pad_token_id, use_cache=use_cache,
            cache_implementation=cache_implementation, compile=compile,
        )
        if attention_mask is None and not encoder_decoder:
            attention_mask = mask_from_padding(input_ids, cfg.pad_token_id, cfg.eos_token_id)
        if not encoder_decoder and attention_mask is not None and not bool(attention_mask[:, -1].all()):
            # The new tokens follow the last slot, padding or not: a right-padded row continues from its
            # padding. transformers warns the same way and generates all the same.
            warnings.warn("a row of the prompt ends in padding (attention_mask[:, -1] has a 0): a decoder-only "
                          "model continues from the last slot, so pad on the left for generation "
                          "(tokenizer.padding_side = 'left')", UserWarning, stacklevel=2)
        if streamer is not None and (B > 1 or cfg.num_beams > 1 or cfg.num_return_sequences > 1):
            raise ValueError("streamer works with one sequence: batch size 1, num_beams=1 and num_return_sequences=1, "
                             f"got batch size {B}, num_beams={cfg.num_beams}, "
                             f"num_return_sequences={cfg.num_return_sequences}")
        stop = None
        if stop_strings:
            if tokenizer is None:
                raise ValueError("stop_strings needs tokenizer=... to turn the generated ids into text")
            stop = StopStrings(stop_strings, tokenizer)
            if cfg.pad_token_id is None:
                raise ValueError("stop_strings needs pad_token_id (or an eos_token_id) to fill stopped rows")

        # Rows per input, each starting as a copy of it: its K beams, or its R independent samples.
        copies = cfg.num_beams if cfg.num_beams > 1 else cfg.num_return_sequences
        rows = B * copies
        with torch.no_grad():
            if encoder_decoder:
                session = EncoderDecoderSession(self, input_ids, attention_mask, copies, cfg.use_cache,
                                                1 + cfg.max_new_tokens, cfg.cache_implementation, cfg.compile)
                prompt = torch.full((rows, 1), self.config.decoder_start_token_id, device=input_ids.device)
                prompt_mask = None
            else:
                prompt = input_ids.repeat_interleave(copies, dim=0)  # (B * copies, P)
                prompt_mask = None if attention_mask is None else attention_mask.repeat_interleave(copies, dim=0)
                session = DecoderOnlySession(self, prompt_mask, rows, P, P + cfg.max_new_tokens, input_ids.device,
                                             cfg.use_cache, cfg.cache_implementation, cfg.compile)
            prompt_length = prompt.shape[1]
            tokens = torch.full((rows, prompt_length + cfg.max_new_tokens), cfg.pad_token_id or 0,
                                dtype=torch.long, device=input_ids.device)  # (B * copies, L)
            tokens[:, :prompt_length] = prompt
            ignore = None  # prompt padding, which the repetition penalty skips
            if prompt_mask is not None and cfg.repetition_penalty != 1.0:
                ignore = torch.zeros_like(tokens, dtype=torch.bool)
                ignore[:, :prompt_length] = prompt_mask == 0
            if cfg.num_beams > 1:
                return beam_search(session, tokens, prompt_length, cfg, generator, ignore)
            return sample(session, tokens, prompt_length, cfg, generator, ignore, streamer, stop)


def sample(session, tokens: torch.Tensor, prompt_length: int, cfg: GenerationConfig,
           generator: torch.Generator | None = None, ignore: torch.Tensor | None = None,
           streamer=None, stop: StopStrings | None = None) -> torch.Tensor:
    """Greedy decoding (``do_sample=False``) or sampling, one token per step for every row.

    tokens (B, L) holds the prompt in its first ``prompt_length`` columns and is filled in place.
    Returns tokens[:, :n], n the last column written.
    """
    B, L = tokens.shape
    eos = torch.tensor(cfg.eos_token_id, dtype=torch.long, device=tokens.device)  # (n_eos,)
    can_stop = len(cfg.eos_token_id) > 0 or stop is not None
    unfinished = torch.ones(B, dtype=torch.bool, device=tokens.device)  # (B,)
    if streamer is not None:
        streamer.put(tokens[:, :prompt_length].cpu())

    logits = session.prefill(tokens)  # (B, V)
    for pos in range(prompt_length, L):
        if pos > prompt_length:
            logits = session.decode(tokens, pos)  # (B, V), the cache now holds tokens[:, :pos]
        scores = process_logits(logits.float(), tokens[:, :pos], **cfg.processing(),
                                ignore=None if ignore is None else ignore[:, :pos])
        next_token = choose_next_token(scores, cfg.do_sample, generator)  # (B,)
        if can_stop:
            next_token = torch.where(unfinished, next_token, cfg.pad_token_id)  # finished rows get padding
        tokens[:, pos] = next_token
        if streamer is not None:
            streamer.put(next_token.cpu())
        if can_stop:
            unfinished &= ~torch.isin(next_token, eos)
            if stop is not None:
                unfinished &= ~stop(tokens[:, prompt_length:pos + 1])
            if not unfinished.any():
                tokens = tokens[:, :pos + 1]
                break
    if streamer is not None:
        streamer.end()
    return tokens


def check_inputs(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> None:
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.dtype != torch.long:
        raise ValueError("input_ids must be a (batch, seq_len) LongTensor of token ids, got "
                         f"{type(input_ids).__name__} {tuple(getattr(input_ids, 'shape', ()))}")
    if input_ids.shape[0] == 0:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} holds no prompt (batch size 0): pass at least one row")
    if input_ids.shape[1] == 0:
        raise ValueError("input_ids is empty: pass at least one prompt token (e.g. the BOS token)")
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected the shape of "
                         f"input_ids {tuple(input_ids.shape)}")


def mask_from_padding(input_ids: torch.Tensor, pad_token_id: int | None,
                      eos_token_id: list[int]) -> torch.Tensor | None:
    """The prompt's (B, P) mask when none is given, as transformers' generate reads it; None: no padding.

    A token equal to ``pad_token_id`` is padding (0), unless that id is also an EOS id: then it may
    be a real end of text, and every token counts (transformers'
    ``_prepare_attention_mask_for_generation``). The mask then sets the positions too.

    Example:
        >>> mask_from_padding(torch.tensor([[0, 0, 5, 6], [3, 4, 5, 6]]), pad_token_id=0, eos_token_id=[2])
        tensor([[0, 0, 1, 1],
                [1, 1, 1, 1]])
    """
    if pad_token_id is None or pad_token_id in eos_token_id or not bool((input_ids == pad_token_id).any()):
        return None
    return (input_ids != pad_token_id).long()  # (B, P)


def context_length(config) -> int | None:
    """Positions the model can see (GPT-2's n_positions, LLaMA's max_position_embeddings); None for T5."""
    if getattr(config, "is_encoder_decoder", False):
        return None
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def make_config(model_config, prompt_length: int, *, max_new_tokens, do_sample, temperature, top_k, top_p,
                repetition_penalty, num_beams, num_return_sequences, length_penalty, early_stopping, eos_token_id,
                pad_token_id, use_cache, cache_implementation, compile) -> GenerationConfig:
    """Check every argument (errors name it) and fill in the model's EOS and padding ids."""
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got max_new_tokens={max_new_tokens!r}")
    limit = context_length(model_config)
    if limit is not None and prompt_length + max_new_tokens > limit:
        raise ValueError(
            f"max_new_tokens={max_new_tokens} after a prompt of {prompt_length} tokens needs "
            f"{prompt_length + max_new_tokens} positions, past the model's context of {limit}; "
            f"use max_new_tokens <= {max(limit - prompt_length, 0)}"
        )
    check_sampling_args(temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=repetition_penalty,
                        do_sample=do_sample)
    if not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"num_beams must be an int >= 1 (1 = no beam search), got num_beams={num_beams!r}")
    R = num_return_sequences
    if not isinstance(R, int) or R < 1:
        raise ValueError("num_return_sequences must be an int >= 1 (sequences per input), "
                         f"got num_return_sequences={R!r}")
    if R > 1 and num_beams == 1 and not do_sample:
        raise ValueError(f"num_return_sequences={R} needs do_sample=True (R independent samples) or num_beams >= {R} "
                         "(the R best beams): greedy decoding has a single answer")
    if num_beams > 1 and R > num_beams:
        raise ValueError(f"num_return_sequences={R} is more than num_beams={num_beams}: beam search keeps only "
                         f"num_beams finished hypotheses per input; use num_beams >= {R}")
    if early_stopping not in (True, False, "never"):
        raise ValueError(f"early_stopping must be True, False or 'never', got early_stopping={early_stopping!r}")
    V = model_config.vocab_size

    if eos_token_id is None:  # the config's ids; ids a tiny test vocabulary does not hold can never appear
        default = getattr(model_config, "eos_token_id", None)
        default = [] if default is None else [default] if isinstance(default, int) else list(default)
        eos = [i for i in default if 0 <= i < V]
    else:
        if isinstance(eos_token_id, torch.Tensor):  # transformers takes a tensor of ids too
            eos_token_id = eos_token_id.tolist()
        eos = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        for i in eos:
            if not isinstance(i, int) or not 0 <= i < V:
                raise ValueError(f"eos_token_id={eos_token_id!r} holds {i!r}, outside the vocabulary "
                                 f"[0, {V}) (vocab_size={V})")
    if pad_token_id is None:
        pad_token_id = getattr(model_config, "pad_token_id", None)
        if pad_token_id is None or not 0 <= pad_token_id < V:
            pad_token_id = eos[0] if eos else None
    elif not isinstance(pad_token_id, int) or not 0 <= pad_token_id < V:
        raise ValueError(f"pad_token_id={pad_token_id!r} is outside the vocabulary [0, {V})")

    if cache_implementation not in ("dynamic", "static"):
        raise ValueError(f"cache_implementation must be 'dynamic' or 'static', got {cache_implementation!r}")
    if compile and (cache_implementation != "static" or not use_cache):
        raise ValueError("compile=True needs cache_implementation='static' (fixed shapes) and use_cache=True")
    return GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
        repetition_penalty=repetition_penalty, num_beams=num_beams, num_return_sequences=R,
        length_penalty=length_penalty, early_stopping=early_stopping, eos_token_id=eos, pad_token_id=pad_token_id,
        use_cache=use_cache, cache_implementation=cache_implementation, compile=compile,
    )
