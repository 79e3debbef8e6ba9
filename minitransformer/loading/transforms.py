"""The named layout transforms that checkpoints need, each with the reason it exists.

Every transform returns views where it can (a transpose, a split), so loading a checkpoint copies
nothing: our parameters then point straight into the memory-mapped file.
"""

from __future__ import annotations

import torch

from minitransformer.loading.weight_map import LayoutTransform


def conv1d_to_linear(weight: torch.Tensor) -> torch.Tensor:
    """GPT-2's ``Conv1D`` stores (in, out) and computes ``x @ W``; ``nn.Linear`` stores (out, in)
    and computes ``x @ W.T``. The same numbers, transposed (a view: no copy)."""
    if weight.dim() != 2:
        raise ValueError(f"a Conv1D weight is 2-D (in, out), got shape {tuple(weight.shape)}")
    return weight.t()  # (in, out) -> (out, in)


def linear_to_conv1d(weight: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`conv1d_to_linear`: (out, in) -> (in, out)."""
    return weight.t()


def split_fused(tensor: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
    """Split a fused projection along its output dimension (dim 0) into ``parts`` equal pieces.

    GPT-2 computes q, k and v with one matmul (``c_attn``, 3C outputs); we keep three projections so
    that every family shares one attention module. ``(3C, C) -> 3 x (C, C)``, bias ``(3C,) -> 3 x (C,)``.
    """
    if tensor.shape[0] % parts:
        raise ValueError(f"cannot split dim 0 of shape {tuple(tensor.shape)} into {parts} equal parts: a "
                         f"fused projection holds {parts} equal blocks end to end (GPT-2's c_attn: q, k, v)")
    return tuple(tensor.chunk(parts, dim=0))


def fuse(*tensors: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`split_fused`: concatenate along the output dimension."""
    return torch.cat(tensors, dim=0)


CONV1D_TRANSPOSE = LayoutTransform(
    name="conv1d_transpose",
    why=conv1d_to_linear.__doc__,
    to_ours=lambda w: (conv1d_to_linear(w),),
    to_hf=lambda w: (linear_to_conv1d(w).contiguous(),),
)

FUSED_QKV_CONV1D = LayoutTransform(
    name="fused_qkv_conv1d",
    why="GPT-2's c_attn is one Conv1D (C, 3C) producing q, k and v side by side. Transpose it to "
        "nn.Linear's (3C, C) (Conv1D transpose), then split the 3C output rows into q, k, v (C, C) each.",
    to_ours=lambda w: split_fused(conv1d_to_linear(w), 3),
    to_hf=lambda q, k, v: (linear_to_conv1d(fuse(q, k, v)).contiguous(),),
)

FUSED_QKV_BIAS = LayoutTransform(
    name="fused_qkv_bias",
    why="The bias of a fused q/k/v projection (3C,) holds q's, k's and v's biases end to end.",
    to_ours=lambda b: split_fused(b, 3),
    to_hf=lambda q, k, v: (fuse(q, k, v),),
)
