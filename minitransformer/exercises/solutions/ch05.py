"""Reference solutions for chapter 5, built on minitransformer.layers (norms, mlp, blocks)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from minitransformer.layers import mlp as _mlp
from minitransformer.layers.blocks import EncoderBlock
from minitransformer.layers.blocks import residual as _residual
from minitransformer.layers.mlp import SwiGLU
from minitransformer.layers.norms import LayerNorm, RMSNorm


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    norm = LayerNorm(x.shape[-1], eps=eps)
    norm.load_state_dict({"weight": weight, "bias": bias})
    return norm(x)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    norm = RMSNorm(x.shape[-1], eps=eps)
    norm.load_state_dict({"weight": weight})
    return norm(x)


def gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return _mlp.gelu(x) if approximate == "none" else _mlp.gelu_tanh(x)


def swiglu(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    intermediate, hidden = w_gate.shape
    ffn = SwiGLU(hidden, intermediate)
    ffn.load_state_dict({"gate_proj.weight": w_gate, "up_proj.weight": w_up, "down_proj.weight": w_down})
    return ffn(x)


def residual(x: torch.Tensor, sublayer: Callable, norm: Callable, norm_first: bool) -> torch.Tensor:
    return _residual(x, sublayer, norm, norm_first, nn.Identity())


def torch_encoder_layer_to_ours(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``torch.nn.TransformerEncoderLayer`` weights to :class:`EncoderBlock`'s.

    torch fuses the q, k and v projections into one ``in_proj`` of 3C rows, stacked q then k then v;
    we keep three ``nn.Linear``s, so the fused matrix and bias are split in three along dim 0.
    """
    q_w, k_w, v_w = weights["self_attn.in_proj_weight"].chunk(3, dim=0)  # 3 x (C, C)
    q_b, k_b, v_b = weights["self_attn.in_proj_bias"].chunk(3, dim=0)  # 3 x (C,)
    renamed = {
        "self_attn.q_proj.weight": q_w, "self_attn.q_proj.bias": q_b,
        "self_attn.k_proj.weight": k_w, "self_attn.k_proj.bias": k_b,
        "self_attn.v_proj.weight": v_w, "self_attn.v_proj.bias": v_b,
        "self_attn.o_proj.weight": weights["self_attn.out_proj.weight"],
        "self_attn.o_proj.bias": weights["self_attn.out_proj.bias"],
        "mlp.up_proj.weight": weights["linear1.weight"], "mlp.up_proj.bias": weights["linear1.bias"],
        "mlp.down_proj.weight": weights["linear2.weight"], "mlp.down_proj.bias": weights["linear2.bias"],
    }
    for torch_name, ours in (("norm1", "attn_norm"), ("norm2", "mlp_norm")):
        renamed[f"{ours}.weight"] = weights[f"{torch_name}.weight"]
        renamed[f"{ours}.bias"] = weights[f"{torch_name}.bias"]
    return renamed


def encoder_block(x, weights, num_heads, norm_first=False, activation="relu", eps=1e-5, attn_mask=None):
    hidden, intermediate = x.shape[-1], weights["linear1.weight"].shape[0]
    block = EncoderBlock.standard(hidden, num_heads, intermediate, norm_first=norm_first,
                                  activation=activation, layer_norm_eps=eps)
    block.load_state_dict(torch_encoder_layer_to_ours(weights))  # strict: every weight accounted for
    out, _ = block.eval()(x, attn_mask=attn_mask)
    return out  # (B, T, C)
