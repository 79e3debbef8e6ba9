"""Chapter 6 exercises: BERT's embeddings, masks, masked-language modelling, pooling and fine-tuning.

Fill in each function, then grade yourself:

    minitransformer check 6          # or: pytest chapters/06_bert
    minitransformer.check("6")       # the same, from a notebook (it reads this file afresh)
    from exercises_06 import ...     # your functions, in this folder's notebook

Shapes: B batch, T sequence length, C hidden size, V vocabulary, P max positions, L labels.
Use only torch (torch.nn.functional is fine); not minitransformer.models nor transformers.
"""

from __future__ import annotations

import torch

from minitransformer.exercises import todo


def bert_embeddings(
    input_ids: torch.Tensor,
    token_type_ids: torch.Tensor | None,
    word_embeddings: torch.Tensor,
    position_embeddings: torch.Tensor,
    token_type_embeddings: torch.Tensor,
    norm_weight: torch.Tensor,
    norm_bias: torch.Tensor,
    eps: float = 1e-12,
) -> torch.Tensor:
    """Exercise 6.1: BERT's input vectors, (B, T) ids -> (B, T, C).

    Three tables, looked up and summed, then LayerNorm:
        word_embeddings (V, C)[input_ids] + position_embeddings (P, C)[0..T-1]
        + token_type_embeddings (2, C)[token_type_ids]
    token_type_ids (B, T) says which segment a token belongs to (0 = sentence A, 1 = sentence B);
    None means every token is in segment 0. LayerNorm over C with norm_weight, norm_bias, eps.
    """
    todo("6.1", "x = word_embeddings[input_ids] + position_embeddings[torch.arange(T)] + "
                "token_type_embeddings[token_type_ids]; then F.layer_norm(x, (C,), norm_weight, norm_bias, eps)")


def extended_attention_mask(attention_mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Exercise 6.2: HF's (B, S) mask of 1 (token) / 0 (padding) -> an ADDITIVE float mask (B, 1, 1, S).

    0.0 where the key is a token, torch.finfo(dtype).min where it is padding, in ``dtype``. Added to the
    scores (B, H, T, S) it broadcasts over heads and queries, and softmax gives padded keys weight 0.
    (Why finfo.min and not -inf: a row with no token left stays finite instead of turning into NaN.)
    """
    todo("6.2", "(1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min")


def mask_tokens(
    input_ids: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    generator: torch.Generator,
    mlm_probability: float = 0.15,
    special_tokens_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exercise 6.3: BERT's masking recipe for masked-language modelling. Returns (inputs, labels).

    1. Choose each position with probability ``mlm_probability``, never one where
       ``special_tokens_mask`` (B, T) is True ([CLS], [SEP], [PAD]).
    2. labels: the original id at chosen positions, -100 everywhere else (cross-entropy ignores -100).
    3. inputs, at the chosen positions only: 80% become ``mask_token_id``, 10% a random id in
       [0, vocab_size), 10% stay unchanged. Other positions are left as they were.
    Draw all randomness from ``generator`` (torch.bernoulli / torch.randint take ``generator=``), so the
    same seed gives the same masking. Do not modify ``input_ids`` in place: return new tensors.
    """
    todo("6.3", "chosen = torch.bernoulli(torch.full(shape, p), generator=generator).bool() (zero p at special "
                "tokens); labels = input_ids.clone(); labels[~chosen] = -100; then a bernoulli(0.8) for [MASK] "
                "and, among the rest, a bernoulli(0.5) for a torch.randint id")


def mean_pooling(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Exercise 6.4: a sentence embedding, the mean of the token vectors that are not padding.

    last_hidden_state (B, T, C), attention_mask (B, T) of 1/0 -> (B, C). Padded positions must not
    count, whatever numbers they hold (sentence-transformers' pooling for all-MiniLM-L6-v2).
    """
    todo("6.4", "m = attention_mask[..., None].float(); (x * m).sum(1) / m.sum(1).clamp_min(1e-9)")


def bert_pooler(hidden_states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Exercise 6.5: BERT's pooler, the input of a classifier head: tanh(dense(hidden state of [CLS])).

    hidden_states (B, T, C); weight (C, C) and bias (C,) as nn.Linear stores them -> (B, C).
    [CLS] is the first token of every sequence.
    """
    todo("6.5", "torch.tanh(hidden_states[:, 0] @ weight.T + bias)")


def classifier_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
) -> torch.Tensor:
    """Exercise 6.6: one fine-tuning step of a sequence classifier. Returns the loss (before the step).

    ``model(input_ids, attention_mask=attention_mask).logits`` is (B, L); labels (B,) are class ids.
    The loss is the mean cross-entropy. Then: clear old gradients, backpropagate, let the optimizer
    step. Return the loss as a 0-dim tensor, detached from the graph.
    """
    todo("6.6", "loss = F.cross_entropy(logits, labels); optimizer.zero_grad(); loss.backward(); "
                "optimizer.step(); return loss.detach()")
