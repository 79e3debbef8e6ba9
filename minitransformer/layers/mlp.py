"""Position-wise feed-forward networks and their activations.

MLP:        down(act(up(x)))                      (BERT, GPT-2, T5 v1.0)
Gated MLP:  down(act(gate(x)) * up(x))            (SwiGLU with SiLU in LLaMA, GEGLU with GELU in T5 v1.1)
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from minitransformer.layers.linear import Linear


def gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact GELU: x * Phi(x), Phi the standard normal CDF."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU's tanh approximation (GPT-2's "gelu_new"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def relu(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp_min(x, 0.0)


def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU, also called swish: x * sigmoid(x)."""
    return x * torch.sigmoid(x)


#: Activation names as HF configs spell them (``hidden_act``, ``activation_function``, ``dense_act_fn``).
ACTIVATIONS = {
    "gelu": gelu,
    "gelu_tanh": gelu_tanh,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "relu": relu,
    "silu": silu,
    "swish": silu,
}


#: The same functions as single fused torch kernels: one pass over the tensor instead of up to eight
#: (the written-out tanh GELU is pow, mul, add, mul, tanh, add, mul, mul), which matters when decoding
#: one token at a time, where the tensors are small and every kernel launch counts.
FUSED_ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_tanh": partial(F.gelu, approximate="tanh"),
    "gelu_new": partial(F.gelu, approximate="tanh"),
    "gelu_pytorch_tanh": partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}


def get_activation(name: str, fused: bool = False):
    """The activation called ``name``: written out, or (``fused=True``) torch's kernel for it."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; supported: {sorted(ACTIVATIONS)}")
    return FUSED_ACTIVATIONS[name] if fused else ACTIVATIONS[name]


class MLP(nn.Module):
    """Two linear layers with an activation between: (B, T, C) -> (B, T, I) -> (B, T, C).

    ``fused=True`` computes the activation with torch's kernel (see :data:`FUSED_ACTIVATIONS`).
    """

    def __init__(self, hidden_size: int, intermediate_size: int, activation: str = "gelu", bias: bool = True,
                 dropout: float = 0.0, fused: bool = False):
        super().__init__()
        self.activation = activation
        self.act = get_activation(activation, fused)
        self.up_proj = Linear(hidden_size, intermediate_size, bias=bias)
        self.down_proj = Linear(intermediate_size, hidden_size, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.dropout(self.act(self.up_proj(x))))


class GatedMLP(nn.Module):
    """A gated feed-forward: down(act(gate(x)) * up(x)). Names follow HF's LLaMA."""

    def __init__(self, hidden_size: int, intermediate_size: int, activation: str = "silu", bias: bool = False,
                 dropout: float = 0.0, fused: bool = False):
        super().__init__()
        self.activation = activation
        self.act = get_activation(activation, fused)
        self.gate_proj = Linear(hidden_size, intermediate_size, bias=bias)
        self.up_proj = Linear(hidden_size, intermediate_size, bias=bias)
        self.down_proj = Linear(intermediate_size, hidden_size, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.dropout(self.act(self.gate_proj(x)) * self.up_proj(x)))


class SwiGLU(GatedMLP):
    """Gated MLP with SiLU (LLaMA)."""

    def __init__(self, hidden_size: int, intermediate_size: int, bias: bool = False, dropout: float = 0.0):
        super().__init__(hidden_size, intermediate_size, "silu", bias, dropout)


class GEGLU(GatedMLP):
    """Gated MLP with GELU (T5 v1.1 uses the tanh approximation, "gated-gelu")."""

    def __init__(self, hidden_size: int, intermediate_size: int, bias: bool = False, dropout: float = 0.0,
                 approximate: bool = True):
        super().__init__(hidden_size, intermediate_size, "gelu_tanh" if approximate else "gelu", bias, dropout)
