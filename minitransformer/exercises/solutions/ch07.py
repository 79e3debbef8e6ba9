"""Reference solutions for chapter 7, built on minitransformer.loading.transforms and the layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from minitransformer.layers.embeddings import check_positions
from minitransformer.loading.transforms import conv1d_to_linear as _conv1d_to_linear
from minitransformer.loading.transforms import split_fused


def conv1d_to_linear(weight: torch.Tensor, in_features: int, out_features: int) -> torch.Tensor:
    if tuple(weight.shape) != (in_features, out_features):
        raise ValueError(f"a Conv1D weight with {in_features} inputs and {out_features} outputs has shape "
                         f"{(in_features, out_features)} (in, out); got {tuple(weight.shape)}")
    return _conv1d_to_linear(weight)  # (in, out) -> (out, in)


def split_c_attn(weight: torch.Tensor, bias: torch.Tensor):
    C = weight.shape[0]
    linear = conv1d_to_linear(weight, C, 3 * C)  # (C, 3C) -> (3C, C)
    return split_fused(linear, 3), split_fused(bias, 3)  # 3 x (C, C), 3 x (C,)


def gpt2_embeddings(input_ids: torch.Tensor, wte: torch.Tensor, wpe: torch.Tensor, past_length: int = 0) -> torch.Tensor:
    T = input_ids.shape[-1]
    positions = torch.arange(past_length, past_length + T, device=input_ids.device)  # (T,)
    try:
        check_positions(positions, wpe.shape[0])
    except ValueError as err:
        raise ValueError(f"{err} (GPT-2's config calls it n_positions)") from None
    return F.embedding(input_ids, wte) + F.embedding(positions, wpe)  # (B, T, C) + (T, C)


def lm_head_logits(hidden: torch.Tensor, wte: torch.Tensor) -> torch.Tensor:
    return F.linear(hidden, wte)  # (B, T, C) @ (C, V) -> (B, T, V)


@torch.no_grad()
def greedy_generate(model, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    ids = input_ids
    for _ in range(max_new_tokens):
        logits = model(ids).logits[:, -1]  # (B, V): only the last position predicts a new token
        next_id = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
        ids = torch.cat([ids, next_id], dim=1)  # (B, T + 1)
    return ids


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    V = logits.shape[-1]
    # the same line as GPT2.forward's loss
    return F.cross_entropy(logits[:, :-1].reshape(-1, V).float(), labels[:, 1:].reshape(-1),
                           ignore_index=ignore_index)
