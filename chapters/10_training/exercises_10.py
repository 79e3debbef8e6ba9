"""Chapter 10 exercises: the loss, the optimiser, the schedule, a training loop, gradient accumulation.

Fill in each function, then grade yourself:

    minitransformer check 10          # or: pytest chapters/10_training
    minitransformer.check("10")       # the same, from a notebook (it reads this file afresh)
    from exercises_10 import ...      # your functions, in this folder's notebook

Shapes: N rows (B x T positions, flattened), V vocabulary, B batch, T sequence length.
Use only torch. Not F.cross_entropy in 10.1, not torch.optim in 10.2 and not torch's schedulers in
10.3: the checks compare you with them. 10.4 and 10.5 may use torch.optim.AdamW.
"""

from __future__ import annotations

import torch

from minitransformer.exercises import todo


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Exercise 10.1: the mean cross-entropy of next-token predictions, written out.

    logits (N, V): one row of scores per position; targets (N,): the token each row should predict,
    or ``ignore_index`` where there is nothing to learn (padding). For one row,

        loss = -log softmax(logits)[target] = logsumexp(logits) - logits[target]

    Compute logsumexp stably: subtract the row's max before exp (exp(100.0) is already inf in
    float32), add it back after the log. Returns a scalar: the mean over the rows that are not
    ignored. It must be differentiable (the checks compare your gradient with torch's).
    """
    todo("10.1", "m = logits.max(-1, keepdim=True).values; log_z = m.squeeze(-1) + (logits - m).exp().sum(-1).log(); "
                 "keep = targets != ignore_index; safe = torch.where(keep, targets, 0); "
                 "picked = logits.gather(-1, safe[:, None])[:, 0]; "
                 "((log_z - picked) * keep).sum() / keep.sum()")


def adamw_step(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
               step: int, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
               weight_decay: float = 0.01) -> None:
    """Exercise 10.2: one AdamW update of one parameter, in place (Loshchilov and Hutter, 2019).

    ``exp_avg`` (m) and ``exp_avg_sq`` (v) are the running averages of the gradient and of its
    square, zeros before the first step; ``step`` counts from 1. Update param, exp_avg and
    exp_avg_sq in place (``mul_``, ``add_``, ``addcmul_``...), as torch.optim.AdamW does:

        param = param * (1 - lr * weight_decay)            # decoupled: not added to the gradient
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad ** 2
        param = param - lr * (m / (1 - beta1 ** step)) / (sqrt(v / (1 - beta2 ** step)) + eps)

    The defaults are torch.optim.AdamW's. Returns None.
    """
    todo("10.2", "param.mul_(1 - lr * weight_decay); exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1); "
                 "exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2); then the bias-corrected "
                 "m_hat, v_hat and param.sub_(lr * m_hat / (v_hat.sqrt() + eps))")


def lr_at(step: int, max_lr: float, warmup_steps: int, max_steps: int, min_lr: float) -> float:
    """Exercise 10.3: the learning rate at ``step`` (from 0): linear warmup, then cosine decay.

    nanoGPT's ``get_lr``:
    - step < warmup_steps: ``max_lr * (step + 1) / (warmup_steps + 1)``, rising linearly (never 0);
    - warmup_steps <= step <= max_steps: cosine from max_lr (at warmup_steps) down to min_lr (at
      max_steps): ``min_lr + 0.5 * (1 + cos(pi * progress)) * (max_lr - min_lr)``, with
      ``progress = (step - warmup_steps) / (max_steps - warmup_steps)`` going from 0 to 1;
    - step > max_steps: min_lr.
    Returns a Python float.
    """
    todo("10.3", "three cases: if step < warmup_steps: ...; if step > max_steps: return min_lr; "
                 "else progress = ...; return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr) "
                 "(import math at the top)")


def overfit_one_batch(model: torch.nn.Module, batch: dict[str, torch.Tensor], steps: int,
                      lr: float = 1e-2) -> list[float]:
    """Exercise 10.4: the training loop, on one batch, until the model has memorised it.

    ``model(**batch)`` returns an output whose ``.loss`` is the next-token cross-entropy (the
    model shifts the labels itself). Repeat ``steps`` times: forward, zero the gradients, backward,
    optimiser step (``torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)`` is fine).
    Returns the ``steps`` losses as Python floats, the first one before any update.

    A model that cannot drive the loss on a single batch to nearly zero has a bug; this is the
    first test to run on any new model or training loop.
    """
    todo("10.4", "optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0); model.train(); "
                 "loop: loss = model(**batch).loss; optimizer.zero_grad(); loss.backward(); optimizer.step(); "
                 "losses.append(loss.item())")


def accumulate_gradients(model: torch.nn.Module, batch: dict[str, torch.Tensor], micro_batches: int) -> None:
    """Exercise 10.5 (optional): gradient accumulation.

    Split ``batch`` (every tensor (B, T)) into ``micro_batches`` equal slices of rows, and run a
    forward and a backward on each, so that afterwards every ``p.grad`` equals the gradient of the
    whole batch's loss (the checks compare them). Do not zero or step anything: ``backward`` adds
    into ``.grad``. The loss is a mean over tokens; every slice here has the same number of tokens.
    Raise ValueError if the rows do not split evenly. Returns None.
    """
    todo("10.5", "size = B // micro_batches; for i in range(micro_batches): micro = {k: v[i*size:(i+1)*size]}; "
                 "(model(**micro).loss / micro_batches).backward()")
