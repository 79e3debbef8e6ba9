"""Reference solutions for chapter 10, written out by hand: they are the teaching versions.

They deliberately do not call ``minitransformer.training`` (the library's ``cross_entropy``,
``adamw_update`` and ``lr_at`` do the same work), so that the chapter reads on its own.
"""

from __future__ import annotations

import math

import torch


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    # loss of one row = logsumexp(logits) - logits[target]; the max is taken out first, so exp never overflows
    m = logits.max(dim=-1, keepdim=True).values.detach()  # (N, 1); a constant shift: no gradient needed
    log_z = m.squeeze(-1) + (logits - m).exp().sum(dim=-1).log()  # (N,): log of sum_v exp(logits[v])
    keep = targets != ignore_index  # (N,)
    safe = torch.where(keep, targets, torch.zeros_like(targets))  # an ignored row still needs a valid index
    picked = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (N,): the target's logit
    losses = (log_z - picked) * keep  # (N,): -log softmax(logits)[target], 0 where ignored
    return losses.sum() / keep.sum()  # the mean over the kept rows (NaN if none, like F.cross_entropy)


@torch.no_grad()
def adamw_step(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
               step: int, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
               weight_decay: float = 0.01) -> None:
    beta1, beta2 = betas
    param.mul_(1 - lr * weight_decay)  # decoupled weight decay: shrink the weight, apart from the gradient
    exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)  # m = beta1 m + (1 - beta1) g
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # v = beta2 v + (1 - beta2) g^2
    m_hat = exp_avg / (1 - beta1**step)  # bias correction: m and v start at 0
    v_hat = exp_avg_sq / (1 - beta2**step)
    param.sub_(lr * m_hat / (v_hat.sqrt() + eps))


def lr_at(step: int, max_lr: float, warmup_steps: int, max_steps: int, min_lr: float) -> float:
    if step < warmup_steps:
        return max_lr * (step + 1) / (warmup_steps + 1)  # linear warmup, never exactly 0
    if step > max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)  # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)  # cosine from max_lr to min_lr


def overfit_one_batch(model: torch.nn.Module, batch: dict[str, torch.Tensor], steps: int,
                      lr: float = 1e-2) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss  # the model shifts: position t predicts labels[t + 1]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def accumulate_gradients(model: torch.nn.Module, batch: dict[str, torch.Tensor], micro_batches: int) -> None:
    rows = batch["input_ids"].shape[0]
    if rows % micro_batches:
        raise ValueError(f"{rows} rows do not split into {micro_batches} equal micro-batches")
    size = rows // micro_batches
    for i in range(micro_batches):
        micro = {k: v[i * size:(i + 1) * size] for k, v in batch.items()}  # (B / k, T) each
        loss = model(**micro).loss / micro_batches  # the mean of k equal means is the big batch's mean
        loss.backward()  # .grad adds up across the calls
