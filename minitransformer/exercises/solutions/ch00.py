"""Reference solutions for chapter 0 (plain PyTorch: the library has no layer for these)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from einops import rearrange
from torch import nn


def outer_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[:, None] + b[None, :]  # (N, 1) + (1, M) -> (N, M)


def stable_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    e = (x - x.amax(dim=dim, keepdim=True)).exp()  # largest entry becomes exp(0) = 1: no overflow
    return e / e.sum(dim=dim, keepdim=True)


def batched_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.einsum("bnk,bkm->bnm", a, b)  # (B, N, M)


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    return rearrange(x, "b t (h d) -> b h t d", h=num_heads)  # (B, H, T, D)


def gradient(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(x), x)
    return grad


class Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / in_features**0.5)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.weight.T  # (..., in) @ (in, out) -> (..., out)
        return y + self.bias if self.bias is not None else y
