"""Chapter 8 exercises: T5's relative positions, its norm, and the encoder-decoder.

Fill in each function, then grade yourself:

    minitransformer check 8          # or: pytest chapters/08_t5
    minitransformer.check("8")       # the same, from a notebook (it reads this file afresh)
    from exercises_08 import ...     # your functions, in this folder's notebook

Shapes: B batch, T decoder (query) length, S encoder (key) length, H heads, D head size (d_kv),
C model width (d_model), V vocabulary.
Use only torch (torch.nn.functional is fine); not minitransformer.layers / models nor transformers.
"""

from __future__ import annotations

import torch

from minitransformer.exercises import todo


def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool = True, num_buckets: int = 32,
                             max_distance: int = 128) -> torch.Tensor:
    """Exercise 8.1: map ``relative_position = key_position - query_position`` to a bucket id (long).

    bidirectional (encoder): half of the buckets, n = num_buckets // 2, for keys at or before the query,
    the other half (ids offset by n) for keys after it; distance = |relative_position|.
    causal (decoder): all n = num_buckets buckets look back; distance = max(-relative_position, 0)
    (keys after the query fall in bucket 0, the causal mask hides them anyway).
    Within the n buckets: distances below max_exact = n // 2 get their own bucket (bucket = distance);
    larger ones a log-spaced bucket
        max_exact + int(log(distance / max_exact) / log(max_distance / max_exact) * (n - max_exact))
    capped at n - 1, so every distance from max_distance on shares the last bucket.
    """
    todo("8.1", "offset = (relative_position > 0).long() * n when bidirectional; torch.where(distance < max_exact, "
                "distance, large) with large from torch.log(distance.float() / max_exact) ... .long().clamp_max(n - 1); "
                "beware log(0): clamp the distance to >= 1 inside the log")


def relative_position_bias(weight: torch.Tensor, query_length: int, key_length: int, bidirectional: bool,
                           max_distance: int = 128) -> torch.Tensor:
    """Exercise 8.2: T5's position bias, a float (1, H, T, S) to add to the attention scores.

    weight (num_buckets, H) is the learned table (HF's ``relative_attention_bias``): one number per
    bucket and head. Query i (0..T-1) and key j (0..S-1) get weight[bucket(j - i), h] in head h.
    """
    todo("8.2", "rel = torch.arange(S)[None, :] - torch.arange(T)[:, None]; buckets = your 8.1 (T, S); "
                "weight[buckets] is (T, S, H); permute to (H, T, S) and add a leading 1")


def t5_layer_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Exercise 8.3: HF's ``T5LayerNorm``, an RMS norm: weight * x / sqrt(mean(x^2) + eps). No mean, no bias.

    Compute the mean square in float32 even for bf16/fp16 inputs; cast the normalised x back to the
    weight's dtype (when it is half precision) before multiplying by the weight.
    """
    todo("8.3", "variance = x.float().pow(2).mean(-1, keepdim=True); y = x * torch.rsqrt(variance + eps); "
                "weight * y.to(weight.dtype)")


def shift_right(labels: torch.Tensor, decoder_start_token_id: int, pad_token_id: int) -> torch.Tensor:
    """Exercise 8.4: teacher forcing's decoder input: the labels (B, T) shifted one step right.

    Position 0 holds decoder_start_token_id; position t holds labels[:, t - 1]. Labels may contain -100
    (positions the loss ignores); in the decoder input those become pad_token_id. Do not modify labels.
    """
    todo("8.4", "out = torch.full_like(labels, start); out[:, 1:] = labels[:, :-1]; "
                "out.masked_fill(out == -100, pad_token_id)")


def cross_attention(
    x: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    w_q: torch.Tensor,
    w_k: torch.Tensor,
    w_v: torch.Tensor,
    w_o: torch.Tensor,
    num_heads: int,
    encoder_attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exercise 8.5: T5's cross attention: the decoder asks, the encoder answers.

    x (B, T, C) from the decoder gives the queries; encoder_hidden_states (B, S, C) the keys and values.
    Weights as nn.Linear stores them, no biases: w_q, w_k, w_v (H * D, C); w_o (C, H * D). D = rows / H
    (in T5, D = d_kv need not be C / H). The scores are NOT divided by sqrt(D): T5 folded that factor
    into its query weights. encoder_attention_mask (B, S) of 1/0: padded encoder tokens get weight 0.
    No causal mask: every decoder position may read the whole input. Returns (B, T, C).
    """
    todo("8.5", "q = (x @ w_q.T) split into (B, H, T, D), k and v from encoder_hidden_states (B, H, S, D); "
                "softmax(q @ k^T + mask) @ v (no 1/sqrt(D)); merge heads; @ w_o.T")


def seq2seq_loss(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor,
    decoder_start_token_id: int,
    pad_token_id: int,
) -> torch.Tensor:
    """Exercise 8.6: the teacher-forced training loss of an encoder-decoder.

    Feed the decoder your 8.4 ``shift_right(labels)`` and call
    ``model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=...)``: its ``.logits``
    (B, T, V) at position t predict labels[:, t]. Return the mean cross-entropy over the positions whose
    label is not -100 (a 0-dim tensor).
    """
    todo("8.6", "logits = model(...).logits; F.cross_entropy(logits.flatten(0, 1), labels.flatten(), "
                "ignore_index=-100)")
