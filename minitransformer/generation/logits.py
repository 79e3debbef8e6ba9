"""Turning the next-token logits (B, V) into a choice: penalties, temperature, top-k, top-p, sampling.

Applied in transformers' order: repetition penalty, then (when sampling) temperature, top-k, top-p.
Filtered-out tokens get ``-inf``, so softmax gives them probability exactly 0.
"""

from __future__ import annotations

import torch


def check_sampling_args(*, temperature: float, top_k: int | None, top_p: float | None, repetition_penalty: float,
                        do_sample: bool) -> None:
    """Clear errors for arguments that would silently give nonsense."""
    if do_sample and not temperature > 0:
        raise ValueError(f"temperature must be > 0 when do_sample=True, got temperature={temperature}; "
                         "use do_sample=False for greedy decoding")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive int or None, got top_k={top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got top_p={top_p}")
    if not repetition_penalty > 0:
        raise ValueError(f"repetition_penalty must be > 0 (1.0 means none), got repetition_penalty={repetition_penalty}")


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


def process_logits(logits: torch.Tensor, previous_ids: torch.Tensor, *, do_sample: bool, temperature: float = 1.0,
                   top_k: int | None = None, top_p: float | None = None, repetition_penalty: float = 1.0,
                   ignore: torch.Tensor | None = None, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """All of the above in transformers' order. Temperature/top-k/top-p only shape sampling."""
    logits = apply_repetition_penalty(logits, previous_ids, repetition_penalty, ignore)
    if do_sample:
        logits = apply_temperature(logits, temperature)
        logits = apply_top_k(logits, top_k, min_tokens_to_keep)
        logits = apply_top_p(logits, top_p, min_tokens_to_keep)
    return logits


def choose_next_token(logits: torch.Tensor, do_sample: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, V) processed logits -> (B,) ids: argmax, or one draw from softmax."""
    if not do_sample:
        return logits.argmax(dim=-1)
    probs = logits.float().softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)
