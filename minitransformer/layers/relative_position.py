"""Relative position bias (T5): a learned number per head for each bucket of key-minus-query distance.

Instead of adding a position vector to the tokens, T5 adds a scalar to every attention score:

    scores[b, h, i, j] = q_i . k_j + bias[h, bucket(j - i)]

Nearby distances get one bucket each; farther ones share logarithmically wider buckets, and every
distance past ``max_distance`` shares the last one. An encoder looks both ways (half of the buckets for
keys after the query), a decoder only back (all buckets for keys at or before the query).

Shapes: T query length, S key length, H heads.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool = True, num_buckets: int = 32,
                             max_distance: int = 128) -> torch.Tensor:
    """Map ``relative_position = key_position - query_position`` to a bucket in ``[0, num_buckets)``.

    Bidirectional: buckets ``[0, n/2)`` hold keys at or before the query, ``[n/2, n)`` keys after it.
    Within each half (of size ``n``), distances ``0 .. n/2 - 1`` get their own bucket and larger ones a
    log-spaced bucket up to ``max_distance``, all farther distances the last bucket.
    Unidirectional (a causal decoder): keys after the query cannot be seen, so they share bucket 0.

    Example:
        >>> relative_position_bucket(torch.tensor([-3, -1, 0, 1, 3]), num_buckets=8, max_distance=16)
        tensor([2, 1, 0, 5, 6])
    """
    buckets = torch.zeros_like(relative_position, dtype=torch.long)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp_min(0)
    # distance is now >= 0: how far the key is from the query (looking back, or forward in the other half).
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    # Log-spaced buckets for max_exact <= distance < max_distance; the .clamp avoids log(0) on the small ones,
    # which torch.where discards anyway.
    log_ratio = torch.log(distance.float().clamp_min(1.0) / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (num_buckets - max_exact)).long()
    large = large.clamp_max(num_buckets - 1)
    return buckets + torch.where(is_small, distance, large)


class RelativePositionBias(nn.Module):
    """T5's learned relative position bias, returned as an additive attention mask (1, H, T, S).

    Args:
        num_buckets: rows of the table (``relative_attention_num_buckets``).
        max_distance: distances from here on share the last bucket (``relative_attention_max_distance``).
        num_heads: H, one bias per head and bucket.
        bidirectional: True in an encoder, False in a causal decoder.

    ``weight`` is (num_buckets, H), the layout of HF's ``relative_attention_bias`` embedding.
    """

    def __init__(self, num_buckets: int, max_distance: int, num_heads: int, bidirectional: bool):
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.num_heads = num_heads
        self.bidirectional = bidirectional
        self.weight = nn.Parameter(torch.empty(num_buckets, num_heads))
        nn.init.normal_(self.weight, std=1.0)

    def forward(self, query_length: int, key_length: int, past_length: int | torch.Tensor = 0) -> torch.Tensor:
        """Bias (1, H, T, S) for queries at positions ``past_length ..`` and keys at ``0 .. S-1``.

        ``past_length`` may be a (1,) tensor (a static cache's first slot), which keeps a compiled step one graph.
        """
        device = self.weight.device
        query_position = torch.arange(query_length, device=device)[:, None] + past_length  # (T, 1)
        key_position = torch.arange(key_length, device=device)[None, :]  # (1, S)
        bucket = relative_position_bucket(key_position - query_position, self.bidirectional,
                                          self.num_buckets, self.max_distance)  # (T, S)
        bias = self.weight[bucket]  # (T, S, H)
        return bias.permute(2, 0, 1)[None]  # (1, H, T, S)

    def extra_repr(self) -> str:
        return (f"num_buckets={self.num_buckets}, max_distance={self.max_distance}, num_heads={self.num_heads}, "
                f"bidirectional={self.bidirectional}")
