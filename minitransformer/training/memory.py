"""Memory arithmetic: what training a model keeps in memory, predicted from its config, then measured.

Training in fp32 with AdamW holds four things:

    weights            4 bytes per parameter
    gradients          4 bytes per trainable parameter
    AdamW state        8 bytes per trainable parameter (exp_avg and exp_avg_sq) + a 4-byte step per tensor
    activations        what autograd saves in the forward pass for the backward: it grows with B x T

The first three depend on the model alone: 16 bytes a parameter, so GPT-2 124M needs 2 GB before it
sees a token. The activations are counted op by op below, in units of B x T numbers (one number per
token of the batch), from what each op of *our* layers hands to autograd. For a GPT-2 block with
``attn_implementation="sdpa"`` (C the width, A = H x D the attention width, I the MLP width):

    LayerNorm (fused)      its input x and, per token, the mean and 1 / std        C + 2
    q, k, v projections    their one shared input, the normed x                     C
    attention (sdpa)       q, k, v (k and v at H heads), the output, and the
                           log-sum-exp of each query row                            4A + H
    output projection      its input: the heads put back side by side               A
    LayerNorm, up proj     as above                                                 (C + 2) + C
    GELU, down projection  the MLP's hidden state before and after the GELU         2I

plus, per layer, the (1, 1, T, T) additive float mask and a (1, 1, T, 1) boolean row mask. The math
path (every operation written out) keeps more: the (B, H, T, T) scores and probabilities, and each
step of the LayerNorm and of the tanh GELU. Above the blocks: the token ids, the final norm, the
head's input and, the largest item of a small model, the (B x T, V) log-probabilities the loss keeps.

With activation checkpointing, a block keeps only its input (C a token); its activations are
recomputed in the backward pass one block at a time, so the peak adds one block's worth.

:func:`measure_training_memory` measures the same four numbers on a real model: the bytes of the
parameters, of their ``.grad`` after a backward pass, of AdamW's state after one step, and of every
tensor autograd saves during the forward pass (a ``saved_tensors_hooks`` pack hook sees each one;
tensors sharing storage are counted once, parameters not at all). ``tests/unit/training/test_memory.py``
asserts prediction == measurement, byte for byte, for GPT-2 and LLaMA, both attention paths, with
and without checkpointing.

Scope: fp32 training without dropout (with dropout every mask is kept too, and sdpa falls back to a
path that keeps the (B, H, T, T) probabilities), GPT-2 and LLaMA configs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from minitransformer.models.gpt2 import GPT2, GPT2Config
from minitransformer.models.llama import Llama, LlamaConfig
from minitransformer.training.optim import configure_optimizer

FP32 = 4  # bytes per number
INT64 = 8
MiB = 2**20


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes held while training: the model's state and what one forward pass keeps for the backward.

    ``recompute`` is zero without activation checkpointing; with it, the activations of the one block
    recomputed at a time in the backward pass, which the peak adds to ``activations``.
    """

    weights: int
    gradients: int
    optimizer_state: int
    activations: int
    recompute: int = 0

    @property
    def total(self) -> int:
        """The peak: everything at once, with a block recomputed when checkpointing."""
        return self.weights + self.gradients + self.optimizer_state + self.activations + self.recompute

    def format(self) -> str:
        """A small table in MiB."""
        rows = [("weights", self.weights), ("gradients", self.gradients), ("AdamW state", self.optimizer_state),
                ("activations", self.activations)]
        if self.recompute:
            rows.append(("one block recomputed", self.recompute))
        rows.append(("total", self.total))
        return "\n".join(f"{name:22s} {n / MiB:10.2f} MiB" for name, n in rows)


def count_parameters(config: GPT2Config | LlamaConfig) -> tuple[int, int]:
    """(parameter numbers, parameter tensors) of the model ``config`` builds: built on the meta device
    (shapes only, no memory), each tied tensor once."""
    with torch.device("meta"):
        model = build(config)
    params = list(dict.fromkeys(model.parameters()))  # tied tensors come once
    return sum(p.numel() for p in params), len(params)


def build(config: GPT2Config | LlamaConfig, attn_implementation: str = "sdpa") -> nn.Module:
    if isinstance(config, GPT2Config):
        return GPT2(config, attn_implementation=attn_implementation)
    return Llama(config, attn_implementation=attn_implementation)


def check_config(config: object) -> None:
    if not isinstance(config, GPT2Config | LlamaConfig):
        raise ValueError(f"training_memory knows GPT2Config and LlamaConfig, got {type(config).__name__}: "
                         f"for another model, measure it with measure_training_memory(model, ...)")
    if isinstance(config, GPT2Config):
        dropout = {"resid_pdrop": config.resid_pdrop, "embd_pdrop": config.embd_pdrop, "attn_pdrop": config.attn_pdrop}
    else:
        dropout = {"attention_dropout": config.attention_dropout}
    on = {name: p for name, p in dropout.items() if p}
    if on:
        raise ValueError(f"the formula counts training without dropout, and the config has {on}: set them to 0.0 "
                         f"(as nanoGPT's recipe does), or measure the model with measure_training_memory")


def block_activations(config: GPT2Config | LlamaConfig, batch_size: int, block_size: int,
                      attn_implementation: str) -> int:
    """Bytes one decoder block saves for its backward pass (see the module docstring, op by op)."""
    BT, T = batch_size * block_size, block_size
    if isinstance(config, GPT2Config):
        C, H = config.n_embd, config.n_head
        A, I = C, config.n_inner or 4 * C  # noqa: E741 (I: the MLP width, as in the docstring)
        fused = attn_implementation == "sdpa"  # GPT-2's sdpa path also fuses its LayerNorm and GELU
        norm = C + 2 if fused else 3 * C + 1  # fused: x, mean, rstd; written out: x, x - mean, x_hat, rstd
        mlp = 2 * I if fused else 5 * I  # GELU's input and output; the tanh GELU written out keeps 3 more
        rope = 0
    else:
        C, H = config.hidden_size, config.num_attention_heads
        D = config.head_dim or C // H
        A, I = H * D, config.intermediate_size  # noqa: E741
        norm = 2 * C + 1  # RMSNorm: x, x_hat and 1 / rms (the same on both paths)
        mlp = 3 * I + I  # SiLU's input, its output and up's output; down's input (the product)
        mlp += 0 if attn_implementation == "sdpa" else I  # the SiLU written out keeps its sigmoid too
        rope = 4 * T * D  # cos and sin, (1, 1, T, D), each kept twice: for q and for k
    if attn_implementation == "sdpa":
        attention = BT * (4 * A + H) * FP32 + T * T * FP32 + T  # q, k, v, out, lse; the float mask; the row mask
    else:
        # q^T and k, v, the (B, H, T, T) scores and probabilities, and the boolean causal mask twice
        attention = BT * (3 * A + 2 * H * T) * FP32 + 2 * T * T
    # norm and the q/k/v input; the o_proj input; norm and the up (LLaMA: gate and up) input; the MLP
    per_token = (norm + C) + A + (norm + C) + mlp
    return BT * per_token * FP32 + attention + rope * FP32


def training_memory(config: GPT2Config | LlamaConfig, batch_size: int, block_size: int, *,
                    attn_implementation: str = "sdpa", activation_checkpointing: bool = False) -> TrainingMemory:
    """Predict the bytes of training ``config``'s model in fp32 with AdamW on (batch_size, block_size) batches.

    Args:
        config: a :class:`GPT2Config` or :class:`LlamaConfig`, with dropout 0.
        batch_size, block_size: B and T of each micro-batch.
        attn_implementation: ``"sdpa"`` (fused, the Trainer's choice for speed) or ``"math"``.
        activation_checkpointing: as ``TrainingConfig(activation_checkpointing=True)``.

    Example:
        >>> from minitransformer.models import GPT2Config
        >>> m = training_memory(GPT2Config.from_name("gpt2", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0), 4, 64)
        >>> round(m.weights / 1e6), round(m.optimizer_state / m.weights)
        (498, 2)
    """
    check_config(config)
    if attn_implementation not in ("sdpa", "math"):
        raise ValueError(f"attn_implementation must be 'sdpa' or 'math', got {attn_implementation!r}")
    if batch_size < 1 or block_size < 1:
        raise ValueError(f"batch_size and block_size must be at least 1, got {batch_size} and {block_size}")
    n_params, n_tensors = count_parameters(config)
    B, T, BT = batch_size, block_size, batch_size * block_size
    gpt2 = isinstance(config, GPT2Config)
    C, V = (config.n_embd, config.vocab_size) if gpt2 else (config.hidden_size, config.vocab_size)
    L = config.n_layer if gpt2 else config.num_hidden_layers

    # Above the blocks: the ids (a view of the (B, T + 1) window TokenBlocks cuts, so the whole window;
    # GPT-2 also its (1, T) position ids), the final norm, the head's input, and the loss's (B x T, V)
    # log-probabilities, its targets (flattened: a copy, but for one row, where the flat view is free)
    # and the scalar.
    ids = B * (T + 1) * INT64 + (T * INT64 if gpt2 else 0)
    if gpt2:
        final_norm = BT * ((C + 2) if attn_implementation == "sdpa" else (3 * C + 1)) * FP32
    else:
        final_norm = BT * (2 * C + 1) * FP32
    targets = BT * INT64 if B > 1 else 0
    head_and_loss = BT * C * FP32 + BT * V * FP32 + targets + FP32
    top = ids + final_norm + head_and_loss

    block = block_activations(config, B, T, attn_implementation)
    if activation_checkpointing:
        activations, recompute = top + L * BT * C * FP32, block  # each block keeps its input only
    else:
        activations, recompute = top + L * block, 0
    return TrainingMemory(
        weights=n_params * FP32,
        gradients=n_params * FP32,
        optimizer_state=2 * n_params * FP32 + n_tensors * FP32,  # exp_avg, exp_avg_sq; a step per tensor
        activations=activations,
        recompute=recompute,
    )


def tensor_bytes(tensors) -> int:
    """Bytes of distinct storages among ``tensors``."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def saved_for_backward(fn: Callable[[], Any], exclude: Iterable[torch.Tensor] = ()) -> tuple[Any, int]:
    """(``fn()``, bytes of what autograd keeps from it for the backward pass).

    Every tensor autograd saves passes through a ``torch.autograd.graph.saved_tensors_hooks`` pack
    hook; its storage is counted once (views share it), and the storages of ``exclude`` (the
    parameters, or the inputs) not at all. An exact count, not a reading of the process's memory.

    Example:
        >>> x = torch.randn(1000, requires_grad=True)
        >>> saved_for_backward(lambda: (x.exp() * 2).sum(), exclude=[x])[1]  # exp keeps its output
        4000
    """
    excluded = {t.untyped_storage().data_ptr() for t in exclude}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in excluded:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn()
    return result, sum(saved.values())


def measure_training_memory(model: nn.Module, batch_size: int, block_size: int, *, seed: int = 0) -> TrainingMemory:
    """Measure what :func:`training_memory` predicts, on a real model: one training step on random ids.

    The activations are every tensor autograd saves in the forward pass (seen by a
    ``torch.autograd.graph.saved_tensors_hooks`` pack hook), each storage once, parameters excluded.
    The gradients are the ``.grad`` tensors after the backward pass, the optimizer state is AdamW's
    (``configure_optimizer``) after one step. ``recompute`` is not measured (0): a pack hook does not
    see inside a checkpointed block. The model is left in train mode with its gradients cleared.
    """
    params = list(dict.fromkeys(model.parameters()))
    vocab = model.config.vocab_size
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, vocab, (batch_size, block_size + 1), generator=gen)  # (B, T + 1), as TokenBlocks
    model.train()
    optimizer = configure_optimizer(model, lr=1e-4, weight_decay=0.1)
    loss, activations = saved_for_backward(lambda: model(rows[:, :-1], shift_labels=rows[:, 1:]).loss,
                                           exclude=params)
    loss.backward()
    gradients = tensor_bytes(p.grad for p in params if p.grad is not None)
    optimizer.step()
    state = [t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    optimizer.zero_grad(set_to_none=True)
    return TrainingMemory(weights=tensor_bytes(params), gradients=gradients,
                          optimizer_state=tensor_bytes(state), activations=activations)


__all__ = ["TrainingMemory", "count_parameters", "measure_training_memory", "saved_for_backward",
           "training_memory"]
