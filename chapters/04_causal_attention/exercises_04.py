"""Chapter 4 exercises: causal and padding masks, and attention that respects them.

Fill in each function, then grade yourself:

    minitransformer check 4          # or: pytest chapters/04_causal_attention
    minitransformer.check("4")       # the same, from a notebook (it reads this file afresh)
    from exercises_04 import ...     # your functions, in this folder's notebook

Convention (as in torch.nn.functional.scaled_dot_product_attention): a boolean mask is True where
attention is ALLOWED. Shapes: B batch, H heads, T queries, S keys, D head size.
Use only torch; not torch.nn.functional.scaled_dot_product_attention.
"""

from __future__ import annotations

import torch

from minitransformer.exercises import todo


def causal_mask(query_length: int, key_length: int | None = None) -> torch.Tensor:
    """Exercise 4.1: bool (T, S), True where query i may see key j.

    Query i may see key j iff j <= i + (S - T). With S == T (the default) that is the lower
    triangle. With S > T the keys include S - T earlier tokens from a KV cache, and the T queries
    are the LAST T positions: each sees everything cached plus itself and what precedes it.
    """
    todo("4.1", "torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T), or compare "
                "torch.arange(S)[None, :] <= torch.arange(T)[:, None] + (S - T)")


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Exercise 4.2: HF's attention_mask (B, S) of 1 (token) / 0 (padding) -> bool (B, 1, 1, S).

    The two middle axes of size 1 broadcast over heads and queries: every query of every head
    ignores the same padded keys.
    """
    todo("4.2", "attention_mask.bool()[:, None, None, :]  (bool, not int: masks are True/False)")


def decoder_mask(attention_mask: torch.Tensor, query_length: int) -> torch.Tensor:
    """Exercise 4.3: causal AND padding, bool (B, 1, T, S), with S = attention_mask.shape[1].

    Query i of sequence b may see key j iff j is not in the future (4.1) and key j of sequence b
    is a real token (4.2).
    """
    todo("4.3", "causal_mask(T, S)[None, None] & padding_mask(attention_mask): (1,1,T,S) & (B,1,1,S) -> (B,1,T,S)")


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Exercise 4.4: softmax over the last dim, restricted to the allowed keys.

    scores (..., T, S) float; mask bool broadcastable to it, True = allowed. Disallowed entries get
    probability 0. The rule for a row with NO allowed key (a padded query in a left-padded batch):
    all its probabilities are 0, and nothing is NaN, not in the output and not in the gradient.
    """
    todo("4.4", "fill disallowed scores with -inf, softmax (a fully masked row becomes NaN), then set the "
                "disallowed entries to 0.0 with masked_fill: that also clears those NaN rows")


def causal_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Exercise 4.5: scaled dot-product attention under the causal mask (and padding, if given).

    query (B, H, T, D); key, value (B, H, S, D) with S >= T; attention_mask None or HF 0/1 (B, S).
    Scale scores by 1/sqrt(D). Returns (B, H, T, D); a query that may see no key outputs zeros.
    """
    todo("4.5", "scores = query @ key.transpose(-2, -1) / D ** 0.5; mask = decoder_mask(...) or "
                "causal_mask(T, S); masked_softmax(scores, mask) @ value")
