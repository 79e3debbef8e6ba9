"""Chapter 0 exercises: a PyTorch refresher.

Fill in each function (and the class), then grade yourself:

    minitransformer check 0          # or: pytest chapters/00_pytorch
    minitransformer.check("0")       # the same, from a notebook (it reads this file afresh)
    from exercises_00 import ...     # your functions, in this folder's notebook

Shapes: B batch, T sequence length, H heads, D head size, C model width.
Use torch and einops; no loops over tensor elements.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from minitransformer.exercises import todo


def outer_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exercise 0.1: out[i, j] = a[i] + b[j], by broadcasting.

    a (N,), b (M,) -> (N, M). No loops, no torch.meshgrid.
    """
    todo("0.1", "give a a trailing axis and b a leading one: a[:, None] + b[None, :] broadcasts to (N, M)")


def stable_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Exercise 0.2: softmax along ``dim`` that does not overflow for large inputs.

    softmax(x)_i = exp(x_i) / sum_j exp(x_j). exp(1000.0) is inf in float32, so subtract the
    maximum along ``dim`` first: softmax is unchanged by adding a constant to every input.
    Do not call torch.softmax.
    """
    todo("0.2", "m = x.amax(dim, keepdim=True); e = (x - m).exp(); return e / e.sum(dim, keepdim=True)")


def batched_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exercise 0.3: a batch of matrix products with torch.einsum.

    a (B, N, K), b (B, K, M) -> (B, N, M), out[b] = a[b] @ b[b]. Use einsum, not @ or bmm.
    """
    todo("0.3", "torch.einsum('bnk,bkm->bnm', a, b): the repeated letter k is summed over")


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Exercise 0.4: (B, T, H*D) -> (B, H, T, D) with einops.rearrange.

    The last dimension is H blocks of D numbers: head h owns columns h*D .. (h+1)*D - 1.
    """
    todo("0.4", "einops.rearrange(x, 'b t (h d) -> b h t d', h=num_heads)")


def gradient(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Exercise 0.5: the gradient of the scalar f(x) with respect to x, by autograd.

    Returns a tensor shaped like x. Do not modify the x you were given (work on a copy that
    requires grad).
    """
    todo("0.5", "x = x.detach().clone().requires_grad_(True); f(x).backward(); return x.grad "
                "(or torch.autograd.grad(f(x), x)[0])")


class Linear(nn.Module):
    """Exercise 0.6: y = x @ weight.T + bias, as a module.

    Register ``weight`` (out_features, in_features) and ``bias`` (out_features,) as nn.Parameter,
    with those names, so that ``load_state_dict(torch.nn.Linear(...).state_dict())`` works.
    With ``bias=False``, set ``self.bias = None``. Any initialisation is fine: the checks copy
    weights in.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        todo("0.6", "self.weight = nn.Parameter(torch.randn(out_features, in_features) / in_features ** 0.5); "
                    "self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        todo("0.6", "x @ self.weight.T, plus self.bias when it is not None; works for any leading dims")
