"""``generate``: greedy decoding, sampling and beam search on top of prefill and decode steps.

    prompt ──prefill──> cache, logits of the last position ──process, choose──> token
    token ──decode step──> cache grows by one, next logits ──process, choose──> token ... until every
    row has produced EOS (or a stop string), or max_new_tokens

The options are the fields of :class:`~minitransformer.generation.config.GenerationConfig`, one list
with transformers' names; ``generate`` merges them (kwargs > ``generation_config=`` >
``model.generation_config`` > defaults) and lets the config check them before any work.

The loop writes into one preallocated token buffer (B, P + max_new_tokens) and returns the part
that was filled, exactly like transformers: prompt plus new tokens for GPT-2 and LLaMA, the decoder
tokens (starting with ``decoder_start_token_id``) for T5. A row that has finished gets
``pad_token_id`` for the rest of the batch's steps.

Shapes: B batch, P prompt length, L = P + max_new_tokens, V vocabulary.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from minitransformer.generation.beam_search import beam_search
from minitransformer.generation.config import GenerationConfig
from minitransformer.generation.logits import choose_next_token, process_logits
from minitransformer.generation.sessions import DecoderOnlySession, EncoderDecoderSession
from minitransformer.generation.streaming import StopStrings


@dataclass
class GenerateOutput:
    """What ``generate(..., return_dict_in_generate=True)`` returns (transformers' ``GenerateDecoderOnlyOutput``).

    sequences: (B * R, n) as ``generate`` returns them otherwise.
    scores: with ``output_scores=True``, one (B * R, V) tensor per generated token: the processed
        logits the token was chosen from (penalties, bans, temperature, top-k/p with -inf), as transformers.
    logits: with ``output_logits=True``, the raw logits of every step, (B * R, V) each.
    """

    sequences: torch.Tensor
    scores: tuple[torch.Tensor, ...] | None = None
    logits: tuple[torch.Tensor, ...] | None = None


def generate(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
             generation_config: GenerationConfig | dict | None = None, generator: torch.Generator | None = None,
             streamer=None, tokenizer=None, **kwargs) -> torch.Tensor | GenerateOutput:
    """Generate new tokens after ``input_ids`` with ``model`` (GPT-2, LLaMA, T5).

    Args:
        model: the model; its ``config`` gives the EOS / padding ids, its ``max_positions`` the
            context (None: no limit), its optional ``generation_config`` the checkpoint's defaults.
        input_ids: (B, P) prompt ids (T5: the encoder input).
        attention_mask: (B, P) 1 for tokens, 0 for padding. Pad decoder-only prompts on the left:
            each row then equals that row generated alone (the positions count real tokens only,
            as in transformers' generate). Without one, a decoder-only prompt's ``pad_token_id`` tokens
            are padding, unless that id is also an EOS id (see :func:`mask_from_padding`).
        generation_config: a :class:`GenerationConfig` (or a dict, or transformers' one): the options it
            sets override ``model.generation_config``'s.
        generator: a ``torch.Generator`` for reproducible sampling (default: torch's global RNG).
        streamer: an object with ``put(ids)`` and ``end()`` (:class:`TextStreamer`,
            :class:`TextIteratorStreamer`, or transformers' own); batch size 1, no beams, one sequence.
        tokenizer: anything with ``decode(list[int]) -> str``; needed by ``stop_strings``.
        **kwargs: any field of :class:`GenerationConfig` (``max_new_tokens=20``, ``do_sample=True``,
            ``top_p=0.9``...), overriding both configs. An unknown name raises
            :class:`~minitransformer.generation.config.UnknownGenerationOption` naming the closest option,
            or our equivalent of a transformers option we do not implement.

    Returns:
        LongTensor: (B * R, P + n) for decoder-only models, (B * R, 1 + n) decoder tokens for T5,
        R = num_return_sequences, n <= max_new_tokens (shorter when every row stopped early; with
        beam search, the longest of the returned hypotheses, the others padded with pad_token_id).
        With ``return_dict_in_generate=True``, a :class:`GenerateOutput` holding them (and the scores).

    Example:
        >>> from minitransformer.models import GPT2, GPT2Config
        >>> model = GPT2(GPT2Config.from_name("gpt2-tiny")).eval()
        >>> generate(model, torch.tensor([[1, 2, 3]]), max_new_tokens=5).shape
        torch.Size([1, 8])
    """
    encoder_decoder = model.is_encoder_decoder  # the model interface (models/base.py)
    check_inputs(input_ids, attention_mask)
    B, P = input_ids.shape
    cfg = GenerationConfig.merge(GenerationConfig.from_any(getattr(model, "generation_config", None)),
                                 GenerationConfig.from_any(generation_config), **kwargs)
    cfg = cfg.resolve(model.config, 1 if encoder_decoder else P, model.max_positions)

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
    if cfg.stop_strings:
        if tokenizer is None:
            raise ValueError("stop_strings needs tokenizer=... to turn the generated ids into text")
        stop = StopStrings(cfg.stop_strings, tokenizer)
        if cfg.pad_token_id is None:
            raise ValueError("stop_strings needs pad_token_id (or an eos_token_id) to fill stopped rows")

    # Rows per input, each starting as a copy of it: its K beams, or its R independent samples.
    copies = cfg.num_beams if cfg.num_beams > 1 else cfg.num_return_sequences
    rows = B * copies
    with torch.no_grad():
        if encoder_decoder:
            session = EncoderDecoderSession(model, input_ids, attention_mask, copies, cfg.use_cache,
                                            1 + cfg.max_new_tokens, cfg.cache_implementation, cfg.compile)
            prompt = torch.full((rows, 1), cfg.decoder_start_token_id, device=input_ids.device)
            prompt_mask = None
        else:
            prompt = input_ids.repeat_interleave(copies, dim=0)  # (B * copies, P)
            prompt_mask = None if attention_mask is None else attention_mask.repeat_interleave(copies, dim=0)
            session = DecoderOnlySession(model, prompt_mask, rows, P, P + cfg.max_new_tokens, input_ids.device,
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
            sequences = beam_search(session, tokens, prompt_length, cfg, generator, ignore)
            return GenerateOutput(sequences) if cfg.return_dict_in_generate else sequences
        out = sample(session, tokens, prompt_length, cfg, generator, ignore, streamer, stop)
        return out if cfg.return_dict_in_generate else out.sequences


def sample(session, tokens: torch.Tensor, prompt_length: int, cfg: GenerationConfig,
           generator: torch.Generator | None = None, ignore: torch.Tensor | None = None,
           streamer=None, stop: StopStrings | None = None) -> GenerateOutput:
    """Greedy decoding (``do_sample=False``) or sampling, one token per step for every row.

    tokens (B, L) holds the prompt in its first ``prompt_length`` columns and is filled in place.
    Returns tokens[:, :n], n the last column written, with the per-step scores / logits if asked.
    """
    B, L = tokens.shape
    eos = torch.tensor(cfg.eos_token_id, dtype=torch.long, device=tokens.device)  # (n_eos,)
    can_stop = len(cfg.eos_token_id) > 0 or stop is not None
    unfinished = torch.ones(B, dtype=torch.bool, device=tokens.device)  # (B,)
    keep_scores = cfg.return_dict_in_generate and cfg.output_scores
    keep_logits = cfg.return_dict_in_generate and cfg.output_logits
    all_scores, all_logits = [], []
    if streamer is not None:
        streamer.put(tokens[:, :prompt_length].cpu())

    logits = session.prefill(tokens)  # (B, V)
    for pos in range(prompt_length, L):
        if pos > prompt_length:
            logits = session.decode(tokens, pos)  # (B, V), the cache now holds tokens[:, :pos]
        scores = process_logits(logits.float(), tokens[:, :pos], **cfg.processing(),
                                ignore=None if ignore is None else ignore[:, :pos])
        if keep_scores:
            all_scores.append(scores)
        if keep_logits:
            all_logits.append(logits.float())
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
    return GenerateOutput(tokens, tuple(all_scores) if keep_scores else None,
                          tuple(all_logits) if keep_logits else None)


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
