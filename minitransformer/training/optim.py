"""The loss, the optimizer and the learning-rate schedule, each written out once.

    loss = cross_entropy(logits, targets)                       # equals F.cross_entropy
    adamw_update(p, p.grad, m, v, step, lr=3e-4, weight_decay=0.1)   # one AdamW step, by hand
    lr = lr_at(step, max_lr=6e-4, warmup_steps=100, max_steps=2000, min_lr=6e-5)
    optimizer = configure_optimizer(model, lr=6e-4, weight_decay=0.1)  # torch's AdamW, two groups

The Trainer uses torch's AdamW (``configure_optimizer``); ``adamw_update`` is the same
arithmetic on one tensor, and ``tests/unit/training/test_optim.py`` proves the two equal.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from minitransformer.layers.embeddings import LearnedPositionEmbedding, TokenEmbedding
from minitransformer.layers.norms import LayerNorm, RMSNorm

#: Modules whose parameters are never decayed, whatever their shape: decaying a norm's gain pulls it
#: to 0 (not to its neutral 1), and decaying an embedding row punishes rare tokens, whose rows get few
#: gradient updates to fight back.
NO_DECAY_MODULES = (nn.Embedding, TokenEmbedding, LearnedPositionEmbedding,
                    nn.LayerNorm, LayerNorm, RMSNorm, nn.RMSNorm)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean negative log-probability of the targets, the log-softmax written out; equals ``F.cross_entropy``.

    Args:
        logits: (N, V) or (B, T, V) scores.
        targets: (N,) or (B, T) class ids; positions equal to ``ignore_index`` count for nothing.
        ignore_index: the label of positions to skip (-100, as torch and transformers use).

    Returns:
        A scalar: the mean over the positions kept (NaN when every position is ignored, as torch).

    Example:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
        >>> round(cross_entropy(logits, torch.tensor([0, 0])).item(), 4)  # -(log p=0.88 + log p=0.12) / 2
        1.1269
    """
    V = logits.shape[-1]
    logits = logits.reshape(-1, V)  # (N, V)
    targets = targets.reshape(-1)  # (N,)
    # log softmax = x - log(sum(exp(x))); subtracting the row max first keeps exp from overflowing.
    shifted = logits - logits.max(dim=-1, keepdim=True).values  # (N, V)
    log_probs = shifted - shifted.exp().sum(dim=-1, keepdim=True).log()  # (N, V)
    keep = targets != ignore_index  # (N,)
    safe = torch.where(keep, targets, torch.zeros_like(targets))  # any valid id where ignored
    picked = log_probs.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (N,) log p(target)
    return -(picked * keep).sum() / keep.sum()


@torch.no_grad()
def adamw_update(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                 step: int, *, lr: float, betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
    """One AdamW step on one parameter, in place; equal to ``torch.optim.AdamW`` (Loshchilov & Hutter).

    Args:
        param: the weights, changed in place.
        grad: their gradient.
        exp_avg, exp_avg_sq: the running first and second moments (start at zeros), changed in place.
        step: this step's number, counting from 1 (the bias correction needs it).
        lr, betas, eps, weight_decay: as ``torch.optim.AdamW``.

    Decoupled weight decay: the weights shrink by ``lr * weight_decay`` directly, instead of the decay
    being added to the gradient (where Adam's per-coordinate scaling would distort it).
    """
    beta1, beta2 = betas
    param.mul_(1 - lr * weight_decay)
    exp_avg.lerp_(grad, 1 - beta1)  # m = beta1 m + (1 - beta1) g
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # v = beta2 v + (1 - beta2) g^2
    # Both moments start at zero, so early on they are too small: divide by 1 - beta^step.
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(eps)
    param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)


def lr_at(step: int, *, max_lr: float, warmup_steps: int, max_steps: int, min_lr: float) -> float:
    """The learning rate of step ``step`` (from 0): linear warmup, then cosine decay to ``min_lr`` (nanoGPT).

    Warmup climbs ``max_lr * (step + 1) / (warmup_steps + 1)``; then half a cosine falls from
    ``max_lr`` at ``warmup_steps`` to ``min_lr`` at ``max_steps``, and stays there after.

    Example:
        >>> [round(lr_at(s, max_lr=1.0, warmup_steps=2, max_steps=6, min_lr=0.0), 3) for s in range(7)]
        [0.333, 0.667, 1.0, 0.854, 0.5, 0.146, 0.0]
    """
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)  # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def decay_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decayed, not decayed) trainable parameters of ``model``, each listed once.

    The rule, by module type and then by shape: a parameter owned by an embedding or a norm
    (``NO_DECAY_MODULES``) is not decayed; of the rest, matrices (dim >= 2: Linear weights) are decayed
    and vectors (dim < 2: biases) are not. A parameter shared by two modules (GPT-2's head tied to its
    token embedding) is not decayed if any owner is an embedding.
    """
    no_decay_ids = set()
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if isinstance(module, NO_DECAY_MODULES) or param.dim() < 2:
                no_decay_ids.add(id(param))
    decay, no_decay, seen = [], [], set()
    for param in model.parameters():  # deduplicated: a tied matrix comes once
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (no_decay if id(param) in no_decay_ids else decay).append(param)
    return decay, no_decay


def configure_optimizer(model: nn.Module, *, lr: float, weight_decay: float,
                        betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` with two groups: ``weight_decay`` on matrices, none on norms, biases, embeddings.

    See :func:`decay_groups` for the rule. Group 0 is decayed, group 1 is not.

    Example:
        >>> from minitransformer.models import GPT2, GPT2Config
        >>> opt = configure_optimizer(GPT2(GPT2Config.from_name("gpt2-tiny")), lr=1e-3, weight_decay=0.1)
        >>> [g["weight_decay"] for g in opt.param_groups]
        [0.1, 0.0]
    """
    decay, no_decay = decay_groups(model)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
