"""Turning the next-token logits (B, V) into a choice: penalties, bans, temperature, top-k, top-p, min-p, sampling.

Applied in transformers' order (its ``_get_logits_processor``): repetition penalty, no-repeat n-grams,
bad words, minimum length (EOS banned), forced BOS / EOS, then, when sampling, temperature, top-k,
top-p, min-p. Filtered-out tokens get ``-inf``, so softmax gives them probability exactly 0.
The arguments are checked once, by :meth:`GenerationConfig.resolve`, not here.
"""

from __future__ import annotations

import torch


def apply_repetition_penalty(logits: torch.Tensor, previous_ids: torch.Tensor, penalty: float,
                             ignore: torch.Tensor | None = None) -> torch.Tensor:
    """Make every token already present less likely: positive logits divided, negative multiplied.

    logits (B, V); previous_ids (B, T): the prompt and everything generated so far (CTRL, 2019);
    ignore (B, T) bool: positions that do not count (left padding), as transformers' ``prompt_ignore_length``.
    """
    if penalty == 1.0:
        return logits
    B, V = logits.shape
    if ignore is not None:
        previous_ids = previous_ids.masked_fill(ignore, V)  # an extra column V collects the ignored ones
    seen = torch.zeros(B, V + 1, dtype=torch.bool, device=logits.device)
    seen = seen.scatter_(1, previous_ids, True)[:, :V]  # (B, V) True for tokens already present
    penalized = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalized, logits)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Below 1 sharpens the distribution, above 1 flattens it."""
    return logits if temperature == 1.0 else logits / temperature


def apply_top_k(logits: torch.Tensor, top_k: int | None, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep the k highest logits (ties with the k-th are kept too); the rest become -inf."""
    if top_k is None:
        return logits
    top_k = min(max(top_k, min_tokens_to_keep), logits.shape[-1])
    kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def apply_top_p(logits: torch.Tensor, top_p: float | None, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability reaches top_p.

    Sorted ascending, a token is dropped when the probability mass up to and including it is at
    most 1 - top_p; the ``min_tokens_to_keep`` most likely tokens are always kept.
    """
    if top_p is None or top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=False)  # (B, V) ascending
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = cumulative <= (1.0 - top_p)
    drop_sorted[..., -min_tokens_to_keep:] = False  # always keep the most likely tokens
    drop = drop_sorted.scatter(1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def apply_min_p(logits: torch.Tensor, min_p: float | None, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Drop the tokens less likely than ``min_p`` times the most likely one (Nguyen et al. 2024)."""
    if min_p is None:
        return logits
    probs = logits.softmax(dim=-1)  # (B, V)
    drop = probs < min_p * probs.amax(dim=-1, keepdim=True)
    keep = torch.topk(probs, min(min_tokens_to_keep, probs.shape[-1]), dim=-1).indices  # (B, k)
    drop = drop.scatter(-1, keep, False)
    return logits.masked_fill(drop, float("-inf"))


def ban_repeated_ngrams(logits: torch.Tensor, previous_ids: torch.Tensor, n: int) -> torch.Tensor:
    """Forbid every token that would complete an n-gram already present in previous_ids (B, T).

    Example: n = 2 and previous ids [5, 6, 7, 5]: the last token 5 was once followed by 6, so 6 is banned.
    """
    T = previous_ids.shape[1]
    if n <= 0 or T < n:
        return logits
    V = logits.shape[-1]
    prefix = previous_ids[:, T + 1 - n:]  # (B, n - 1) the tokens the next one would extend
    windows = previous_ids.unfold(1, n, 1)  # (B, T - n + 1, n) every n-gram so far
    matches = (windows[..., :-1] == prefix[:, None]).all(dim=-1)  # (B, T - n + 1) n-grams with that prefix
    banned = torch.zeros(logits.shape[0], V + 1, dtype=torch.bool, device=logits.device)
    banned.scatter_(1, torch.where(matches, windows[..., -1], V), True)  # column V collects the non-matches
    return logits.masked_fill(banned[:, :V], float("-inf"))


def ban_bad_words(logits: torch.Tensor, previous_ids: torch.Tensor, bad_words_ids: list[list[int]] | None,
                  eos_token_id: list[int] = ()) -> torch.Tensor:
    """Forbid each bad word's last token when the sequence ends with the rest of it (a one-token word: always).

    A one-token bad word that is an EOS id is left out, as transformers leaves it (it would stop nothing).
    """
    if not bad_words_ids:
        return logits
    T = previous_ids.shape[1]
    banned = torch.zeros_like(logits, dtype=torch.bool)  # (B, V)
    for word in bad_words_ids:
        if len(word) == 1 and word[0] in eos_token_id:
            continue
        *prefix, last = word
        if len(prefix) > T:
            continue
        if prefix:
            ends_with_prefix = (previous_ids[:, T - len(prefix):] == torch.tensor(prefix, device=logits.device)).all(-1)
        else:
            ends_with_prefix = torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)
        banned[:, last] |= ends_with_prefix
    return logits.masked_fill(banned, float("-inf"))


def force_token(logits: torch.Tensor, token_ids: int | list[int]) -> torch.Tensor:
    """Only ``token_ids`` stay possible (score 0), every other token -inf."""
    forced = torch.full_like(logits, float("-inf"))
    forced[:, token_ids] = 0
    return forced


def process_logits(logits: torch.Tensor, previous_ids: torch.Tensor, *, do_sample: bool, temperature: float = 1.0,
                   top_k: int | None = None, top_p: float | None = None, min_p: float | None = None,
                   repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0,
                   bad_words_ids: list[list[int]] | None = None, eos_token_id: list[int] = (), min_length: int = 0,
                   forced_bos_token_id: int | None = None, forced_eos_token_id: int | list[int] | None = None,
                   max_length: int | None = None, ignore: torch.Tensor | None = None,
                   min_tokens_to_keep: int = 1) -> torch.Tensor:
    """All of the above in transformers' order. Temperature/top-k/top-p/min-p only shape sampling.

    logits (B, V); previous_ids (B, T): the sequence so far (T5: the decoder tokens). min_length and
    max_length count previous_ids' columns, as transformers counts them: EOS is banned while
    T < min_length, ``forced_eos_token_id`` is the only choice at T = max_length - 1 and
    ``forced_bos_token_id`` at T = 1.
    """
    T = previous_ids.shape[1]
    logits = apply_repetition_penalty(logits, previous_ids, repetition_penalty, ignore)
    logits = ban_repeated_ngrams(logits, previous_ids, no_repeat_ngram_size)
    logits = ban_bad_words(logits, previous_ids, bad_words_ids, eos_token_id)
    if T < min_length and len(eos_token_id) > 0:
        logits = logits.index_fill(1, torch.tensor(list(eos_token_id), device=logits.device), float("-inf"))
    if forced_bos_token_id is not None and T == 1:
        logits = force_token(logits, forced_bos_token_id)
    if forced_eos_token_id is not None and max_length is not None and T == max_length - 1:
        logits = force_token(logits, forced_eos_token_id)
    if do_sample:
        logits = apply_temperature(logits, temperature)
        logits = apply_top_k(logits, top_k, min_tokens_to_keep)
        logits = apply_top_p(logits, top_p, min_tokens_to_keep)
        logits = apply_min_p(logits, min_p, min_tokens_to_keep)
    return logits


def choose_next_token(logits: torch.Tensor, do_sample: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, V) processed logits -> (B,) ids: argmax, or one draw from softmax."""
    if not do_sample:
        return logits.argmax(dim=-1)
    probs = logits.float().softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)
