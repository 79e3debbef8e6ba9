"""Chapter 3 exercises: scaled dot-product and multi-head attention.

Fill in each function, then grade yourself:

    minitransformer check 3          # or: pytest chapters/03_attention
    minitransformer.check("3")       # the same, from a notebook (it reads this file afresh)
    from exercises_03 import ...     # your functions, in this folder's notebook

Shapes: B batch, H heads, Hkv key/value heads, T queries, S keys, D head size, C model width.
Use only torch (and einops if you like); not torch.nn.functional.scaled_dot_product_attention.
"""

from __future__ import annotations

import torch

from minitransformer.exercises import todo


def attention_scores(query: torch.Tensor, key: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Exercise 3.1: scores = query @ key^T * scale, with scale = 1/sqrt(D) by default.

    query (B, H, T, D), key (B, H, S, D) -> (B, H, T, S).
    """
    todo("3.1", "transpose the last two dims of key, matmul, multiply by scale (default D ** -0.5)")


def scaled_dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Exercise 3.2: softmax(scores, masked) @ value.

    ``mask`` is boolean, True where attention is allowed, broadcastable to (B, H, T, S).
    Returns (B, H, T, D).
    """
    todo("3.2", "use attention_scores, fill disallowed scores with -inf, softmax over the last dim, @ value")


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Exercise 3.3: (B, T, H*D) -> (B, H, T, D). The head index is the *outer* part of the last dim."""
    todo("3.3", "x.view(B, T, H, D).transpose(1, 2), or einops.rearrange(x, 'b t (h d) -> b h t d', h=...)")


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """Exercise 3.4: (B, H, T, D) -> (B, T, H*D), the inverse of split_heads."""
    todo("3.4", "transpose(1, 2) then reshape; or rearrange(x, 'b h t d -> b t (h d)')")


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """Exercise 3.5: grouped-query attention shares each key/value head among n_rep query heads.

    (B, Hkv, S, D) -> (B, Hkv * n_rep, S, D), where output head h uses input head h // n_rep.
    """
    todo("3.5", "torch.repeat_interleave along dim 1")


def multi_head_attention(
    x: torch.Tensor,
    w_q: torch.Tensor,
    w_k: torch.Tensor,
    w_v: torch.Tensor,
    w_o: torch.Tensor,
    num_heads: int,
    num_kv_heads: int | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exercise 3.6: multi-head (and grouped-query) self attention without biases.

    Weights are stored like ``nn.Linear.weight`` (out_features, in_features):
    w_q (H*D, C), w_k and w_v (Hkv*D, C), w_o (C, H*D). x (B, T, C) -> (B, T, C).
    """
    todo("3.6", "project with x @ w.T, split heads, repeat_kv, scaled_dot_product_attention, merge, @ w_o.T")
