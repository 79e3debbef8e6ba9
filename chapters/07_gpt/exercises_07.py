"""Chapter 7 exercises: GPT-2's weight layouts, its embeddings and head, greedy generation, its loss.

Fill in each function, then grade yourself:

    minitransformer check 7          # or: pytest chapters/07_gpt
    minitransformer.check("7")       # the same, from a notebook (it reads this file afresh)
    from exercises_07 import ...     # your functions, in this folder's notebook

Shapes: B batch, T sequence length, C model width (n_embd), V vocabulary, P positions (n_positions).
Use only torch (F.cross_entropy is fine for 7.6); not transformers.
"""

from __future__ import annotations

import torch

from minitransformer.exercises import todo


def conv1d_to_linear(weight: torch.Tensor, in_features: int, out_features: int) -> torch.Tensor:
    """Exercise 7.1: a GPT-2 ``Conv1D`` weight, (in, out), as an ``nn.Linear`` weight, (out, in).

    Conv1D computes ``x @ W + b``; nn.Linear computes ``x @ W.T + b``. Same numbers, transposed.
    Check the shape before you transpose: raise ValueError naming the expected (in_features,
    out_features) and the shape you got, so a swapped or wrong tensor fails loudly, not silently.
    """
    todo("7.1", "if tuple(weight.shape) != (in_features, out_features): raise ValueError(...); "
                "then return weight.t() (or weight.T)")


def split_c_attn(weight: torch.Tensor, bias: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """Exercise 7.2: GPT-2's fused ``c_attn`` into three nn.Linear projections q, k, v.

    weight (C, 3C) in Conv1D layout: the 3C output columns are q's, then k's, then v's.
    bias (3C,), in the same order.
    Returns ((q_w, k_w, v_w), (q_b, k_b, v_b)) with each weight (C, C) in nn.Linear layout (out, in),
    so that F.linear(x, q_w, q_b) is the query part of c_attn(x).
    """
    todo("7.2", "transpose first ((C, 3C) -> (3C, C)), then .chunk(3, dim=0); the bias is .chunk(3) as is")


def gpt2_embeddings(input_ids: torch.Tensor, wte: torch.Tensor, wpe: torch.Tensor, past_length: int = 0) -> torch.Tensor:
    """Exercise 7.3: GPT-2's input vectors: token embedding + learned position embedding.

    input_ids (B, T); wte (V, C); wpe (P, C). The token at index t of input_ids sits at position
    past_length + t (past_length > 0 when earlier tokens were already processed).
    Returns (B, T, C). A position >= P must raise ValueError naming n_positions, not an IndexError.
    """
    todo("7.3", "positions = torch.arange(past_length, past_length + T); check positions < wpe.shape[0]; "
                "wte[input_ids] + wpe[positions]")


def lm_head_logits(hidden: torch.Tensor, wte: torch.Tensor) -> torch.Tensor:
    """Exercise 7.4: the language-model head with tied weights.

    hidden (B, T, C): the output of the final LayerNorm ln_f; wte (V, C): the token embedding.
    GPT-2 has no separate output matrix: the logit of token v is the dot product of the hidden
    vector with token v's embedding. Returns (B, T, V).
    """
    todo("7.4", "hidden @ wte.T")


def greedy_generate(model, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Exercise 7.5: greedy decoding, without a KV cache.

    ``model(ids)`` returns an object with ``.logits`` (B, T, V) (ours and transformers' both do).
    Repeat max_new_tokens times: run the model on everything so far, take the logits of the LAST
    position, pick the arg max, append it. No sampling, no stopping early.
    input_ids (B, T) -> (B, T + max_new_tokens), starting with input_ids. Run under torch.no_grad().
    """
    todo("7.5", "ids = input_ids; loop: next_id = model(ids).logits[:, -1].argmax(-1, keepdim=True); "
                "ids = torch.cat([ids, next_id], dim=1)")


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Exercise 7.6: the causal language-modelling loss.

    logits (B, T, V); labels (B, T), usually the input ids, with ignore_index where there is nothing
    to learn (padding). Position t predicts token t + 1: compare logits[:, t] with labels[:, t + 1].
    Returns a scalar: the mean cross-entropy over every non-ignored target.
    """
    todo("7.6", "F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=...)")
