"""Chapter 5 exercises: the transformer block (norms, feed-forward, residuals).

Fill in each function, then grade yourself:

    minitransformer check 5          # or: pytest chapters/05_block
    minitransformer.check("5")       # the same, from a notebook (it reads this file afresh)
    from exercises_05 import ...     # your functions, in this folder's notebook

Shapes: B batch, T sequence length, H heads, C model width, I feed-forward width.
Use only torch; not torch.nn.LayerNorm / RMSNorm / TransformerEncoderLayer / MultiheadAttention,
nor their torch.nn.functional versions (F.layer_norm, F.rms_norm, F.gelu).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from minitransformer.exercises import todo


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Exercise 5.1: LayerNorm over the last dim: (x - mean) / sqrt(var + eps) * weight + bias.

    x (..., C); weight, bias (C,). var is the biased variance: the mean of (x - mean)^2, dividing by C.
    """
    todo("5.1", "mean = x.mean(-1, keepdim=True); var = ((x - mean) ** 2).mean(-1, keepdim=True); "
                "(x - mean) / torch.sqrt(var + eps) * weight + bias")


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Exercise 5.2: RMSNorm (LLaMA, T5): x / sqrt(mean(x^2) + eps) * weight. No mean subtracted, no bias."""
    todo("5.2", "x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight")


def gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """Exercise 5.3: GELU, x * Phi(x) with Phi the standard normal CDF.

    approximate="none": exact, Phi(x) = (1 + erf(x / sqrt(2))) / 2      (BERT)
    approximate="tanh": 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (GPT-2's "gelu_new")
    """
    todo("5.3", "torch.erf for the exact one, torch.tanh and math.sqrt(2 / math.pi) for the approximation")


def swiglu(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    """Exercise 5.4: LLaMA's gated feed-forward: down(silu(gate(x)) * up(x)), no biases.

    Weights as nn.Linear stores them: w_gate, w_up (I, C); w_down (C, I). x (B, T, C) -> (B, T, C).
    silu(z) = z * sigmoid(z).
    """
    todo("5.4", "g = x @ w_gate.T; u = x @ w_up.T; (g * torch.sigmoid(g) * u) @ w_down.T")


def residual(
    x: torch.Tensor,
    sublayer: Callable[[torch.Tensor], torch.Tensor],
    norm: Callable[[torch.Tensor], torch.Tensor],
    norm_first: bool,
) -> torch.Tensor:
    """Exercise 5.5: one residual connection around ``sublayer``.

    norm_first=True  (pre-norm: GPT-2, LLaMA):       x + sublayer(norm(x))
    norm_first=False (post-norm: 2017 paper, BERT):   norm(x + sublayer(x))
    """
    todo("5.5", "two lines, one per branch: where does norm go, inside the sum or around it?")


def encoder_block(
    x: torch.Tensor,
    weights: dict[str, torch.Tensor],
    num_heads: int,
    norm_first: bool = False,
    activation: str = "relu",
    eps: float = 1e-5,
    attn_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exercise 5.6: the encoder block of "Attention Is All You Need" from a torch state dict.

    ``weights`` is ``torch.nn.TransformerEncoderLayer(...).state_dict()``:
        self_attn.in_proj_weight (3C, C), self_attn.in_proj_bias (3C,): q, k, v stacked in that order
        self_attn.out_proj.weight (C, C), self_attn.out_proj.bias (C,)
        linear1.weight (I, C), linear1.bias (I,), linear2.weight (C, I), linear2.bias (C,)
        norm1.weight/bias (C,): the attention sublayer's norm; norm2.weight/bias (C,): the feed-forward's
    Feed-forward: linear2(act(linear1(x))), act "relu" or "gelu" (exact).
    attn_mask: bool, True = attend, broadcastable to (B, H, T, T), or None.
    x (B, T, C) -> (B, T, C). Reuse your 5.1, 5.3 and 5.5 (and chapter 3's attention if you like).
    """
    todo("5.6", "q, k, v = (x @ W.T + b).chunk(3, -1); split into heads; softmax(q k^T / sqrt(D), masked) v; "
                "merge heads; out_proj; wrap attention and feed-forward each in residual(..., norm_first)")
