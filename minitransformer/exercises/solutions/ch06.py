"""Reference solutions for chapter 6 (BERT), built on minitransformer.models.bert and layers.masks.

MLM masking (6.3) and the training step (6.6) are not library code: they live here, written out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from minitransformer.layers.masks import padding_mask, to_additive
from minitransformer.models.bert import BertConfig, BertEmbeddings, BertPooler


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
    (V, C), P, types = word_embeddings.shape, position_embeddings.shape[0], token_type_embeddings.shape[0]
    config = BertConfig(vocab_size=V, hidden_size=C, max_position_embeddings=P, type_vocab_size=types,
                        layer_norm_eps=eps, hidden_dropout_prob=0.0, pad_token_id=None)
    module = BertEmbeddings(config)
    module.load_state_dict({
        "word_embeddings.weight": word_embeddings, "position_embeddings.weight": position_embeddings,
        "token_type_embeddings.weight": token_type_embeddings, "norm.weight": norm_weight, "norm.bias": norm_bias,
    })
    return module.eval()(input_ids, token_type_ids)  # (B, T, C)


def extended_attention_mask(attention_mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return to_additive(padding_mask(attention_mask), dtype)  # (B, 1, 1, S)


def mask_tokens(
    input_ids: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    generator: torch.Generator,
    mlm_probability: float = 0.15,
    special_tokens_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's recipe, as transformers' ``DataCollatorForLanguageModeling`` draws it."""
    labels = input_ids.clone()
    chance = torch.full(input_ids.shape, mlm_probability)
    if special_tokens_mask is not None:
        chance = chance.masked_fill(special_tokens_mask.bool(), 0.0)  # [CLS], [SEP], [PAD] are never chosen
    chosen = torch.bernoulli(chance, generator=generator).bool()  # (B, T)
    labels[~chosen] = -100  # the loss only looks at the chosen positions

    inputs = input_ids.clone()
    to_mask = torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool() & chosen
    inputs[to_mask] = mask_token_id  # 80%: [MASK]
    # half of the remaining 20%: a random token; the other half stays as it was
    to_random = torch.bernoulli(torch.full(input_ids.shape, 0.5), generator=generator).bool() & chosen & ~to_mask
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, dtype=input_ids.dtype)
    inputs[to_random] = random_ids[to_random]
    return inputs, labels


def mean_pooling(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    weights = attention_mask.to(last_hidden_state.dtype).unsqueeze(-1)  # (B, T, 1)
    summed = (last_hidden_state * weights).sum(dim=1)  # (B, C)
    counts = weights.sum(dim=1).clamp_min(1e-9)  # (B, 1): a fully padded row gives 0, not NaN
    return summed / counts


def bert_pooler(hidden_states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    pooler = BertPooler(hidden_states.shape[-1])
    pooler.load_state_dict({"dense.weight": weight, "dense.bias": bias})
    return pooler(hidden_states)  # (B, C)


def classifier_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
) -> torch.Tensor:
    logits = model(input_ids, attention_mask=attention_mask).logits  # (B, num_labels)
    loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()
