"""Data-parallel training on PyTorch's own engine: torchrun, DDP and FSDP2.

Every process (rank) holds a model, reads its own rows of the global batch and computes gradients;
the engine averages them across ranks so that every rank takes the step one process would take on
the whole batch. Two strategies:

- ``"ddp"`` (``torch.nn.parallel.DistributedDataParallel``): every rank keeps the full weights and
  optimizer state; after backward the gradients are all-reduced (averaged) in buckets.
- ``"fsdp2"`` (``torch.distributed.fsdp.fully_shard``): every rank keeps 1/W of each weight, of its
  gradient and of the optimizer state. A block's weights are all-gathered just before its forward
  (and again before its backward) and freed after; its gradients are reduce-scattered. Sharding each
  decoder block on its own is what keeps only one block's full weights alive at a time.

Launch: ``torchrun --nproc-per-node 2 -m minitransformer.cli train ...`` sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT; :func:`init_distributed` reads them. Without them (a plain
``python`` run) the world size is 1, no process group is made and every function here is a no-op.

The Trainer calls, in order::

    ctx = init_distributed(device)                        # every rank
    model = wrap_model(model.to(ctx.device), strategy, ctx)  # the same init on every rank first
    optimizer = ...(model.parameters())                   # after wrapping: FSDP2 replaces the parameters
    ...  norm = clip_grad_norm(model, max_norm)           # every rank (a collective under FSDP2)
    ...  logged = all_reduce_mean(loss.detach(), ctx)     # the mean over ranks
    state = gather_state_dict(model, ctx)                 # every rank; the dict on the main rank, else None
    optim_state = gather_optimizer_state(model, optimizer, ctx)
    load_full_state_dict(model, state, ctx)               # every rank, each with the full dict
    load_optimizer_state(model, optimizer, optim_state, ctx)
    shutdown(ctx)

Checkpoints hold full, unsharded tensors under the single-process names, so a checkpoint written
under FSDP2 resumes in one process and the other way round.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from minitransformer.loading.core import tied_aliases

STRATEGIES = (None, "ddp", "fsdp2")

#: Prefixes the wrappers add to parameter names: DDP's ``module.``, torch.compile's ``_orig_mod.``.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class DistContext:
    """Where this process stands: its rank among ``world_size`` processes and its device.

    ``local_rank`` is the rank on this machine (it picks the GPU); ``is_main`` is True on rank 0, the
    one that logs and writes files. ``backend`` is "gloo", "nccl" or None (no process group).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    is_main: bool = True
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group torchrun set up, or return a world of one when there is none.

    Args:
        device: "auto" (CUDA if there is a GPU), "cpu", "cuda" or "cuda:N". Under torchrun each rank
            takes GPU ``LOCAL_RANK`` and talks over nccl; on CPU the ranks talk over gloo.

    Returns:
        A :class:`DistContext`. Outside torchrun: rank 0 of 1, no process group.

    Raises:
        ValueError: an unknown device, or a GPU asked for on a machine without one.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kind = torch.device(device).type
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for but torch sees no GPU: pass --device cpu")

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1 and not dist.is_initialized():
        return DistContext(device=torch.device(device))

    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if kind == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs here: "
                             "pass --nproc-per-node at most the number of GPUs")
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    backend = "nccl" if kind == "cuda" else "gloo"
    if not dist.is_initialized():  # env:// reads MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE
        dist.init_process_group(backend, device_id=dev if kind == "cuda" else None)
    return DistContext(rank=rank, world_size=dist.get_world_size(), local_rank=local_rank,
                       device=dev, is_main=rank == 0, backend=dist.get_backend())


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model under DDP's and torch.compile's wrappers (FSDP2 wraps nothing: it changes the class)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def blocks_of(model: nn.Module) -> list[nn.Module]:
    """The decoder blocks FSDP2 shards one by one: ``model.layers`` (GPT2, Llama); none otherwise."""
    try:
        return list(unwrap_model(model).layers)
    except (AttributeError, NotImplementedError):
        return []


def wrap_model(model: nn.Module, strategy: str | None, ctx: DistContext) -> nn.Module:
    """Wrap ``model`` (already on ``ctx.device``) for data-parallel training.

    Args:
        model: the model; for "fsdp2" it is changed in place (its class becomes ``FSDP<Class>``, its
            parameters DTensors holding this rank's shard) and returned.
        strategy: None, "ddp" or "fsdp2".
        ctx: from :func:`init_distributed`.

    Returns:
        The model to train: unchanged in a world of one; a ``DistributedDataParallel`` for "ddp"
        (reach the model as ``.module``, or with :func:`unwrap_model`); the sharded model for "fsdp2".

    Raises:
        ValueError: an unknown strategy, or several processes with none (they would each train alone).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: pass one of None, 'ddp', 'fsdp2'")
    if not ctx.distributed:
        return model
    if strategy is None:
        raise ValueError(f"launched with {ctx.world_size} processes but no strategy: pass 'ddp' or 'fsdp2' "
                         "(e.g. --distributed ddp), or launch one process")
    if strategy == "ddp":
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(ctx.device.type, (ctx.world_size,))
    for block in blocks_of(model):
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)  # the rest: embeddings, final norm, head (tied to the embedding)
    return model


def strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``module.transformer.h.0...`` or ``_orig_mod.transformer...`` -> ``transformer.h.0...``."""
    clean = {}
    for key, value in state_dict.items():
        while key.startswith(WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        clean[key] = value
    return clean


def is_sharded(model: nn.Module) -> bool:
    """True for a model :func:`wrap_model` sharded with FSDP2 (its parameters are DTensors)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def _options(**kwargs):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


def gather_state_dict(model: nn.Module, ctx: DistContext) -> dict[str, torch.Tensor] | None:
    """The full, unsharded state dict under the single-process names, on the main rank.

    Every rank must call it (under FSDP2 it all-gathers the shards). Returns the dict on the main rank
    and None on the others; its tensors are CPU copies, one per name (a tied head gets its own).
    """
    if ctx.distributed and is_sharded(model):
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        state = get_model_state_dict(model, options=_options(cpu_offload=True))  # {} off rank 0
    else:
        state = unwrap_model(model).state_dict()  # DDP: every rank holds the same full weights
    if not ctx.is_main:
        return None
    # Own CPU copies: training goes on changing the weights, and safetensors refuses tensors that
    # share memory (a tied head and its embedding).
    return {name: t.detach().cpu().clone() for name, t in strip_prefixes(state).items()}


def load_full_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], ctx: DistContext) -> None:
    """Load a full state dict (single-process names, as :func:`gather_state_dict` returns) into ``model``.

    Every rank calls it with the full dict (each reads the checkpoint); under FSDP2 each keeps its
    shard. Strict: a missing or unexpected key raises, except a tied head left out of the dict
    (``save_pretrained`` writes the shared matrix once), which takes its embedding's tensor.
    """
    state_dict = strip_prefixes(state_dict)
    for alias, name in tied_aliases(unwrap_model(model)).items():  # the loader's own finder of ties
        if alias not in state_dict and name in state_dict:
            state_dict[alias] = state_dict[name]
    if ctx.distributed and is_sharded(model):
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        set_model_state_dict(model, state_dict, options=_options(strict=True))
    else:
        unwrap_model(model).load_state_dict(state_dict, strict=True)


def gather_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, ctx: DistContext) -> dict | None:
    """The optimizer's full state keyed by parameter name (not by position), on the main rank.

    ``{"state": {name: {"step", "exp_avg", "exp_avg_sq"}}, "param_groups": [{..., "params": [names]}]}``,
    the same whatever the strategy, so that Adam's moments resume under another world size. Every rank
    must call it; None off the main rank.
    """
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    options = _options(cpu_offload=True) if ctx.distributed else _options()
    state = get_optimizer_state_dict(model, optimizer, options=options)
    return state if ctx.is_main else None


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, ctx: DistContext) -> None:
    """Load what :func:`gather_optimizer_state` returned into ``optimizer`` (every rank, the full dict)."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=_options())


def rows_of_rank(batch: dict[str, torch.Tensor], ctx: DistContext) -> dict[str, torch.Tensor]:
    """This rank's rows ``[rank*b : (rank+1)*b]`` of a global batch, ``b = rows // world_size``.

    Raises:
        ValueError: rows that do not split evenly (the mean over ranks would not be the batch's mean).
    """
    if not ctx.distributed:
        return batch
    rows = next(iter(batch.values())).shape[0]
    if rows % ctx.world_size:
        raise ValueError(f"a global batch of {rows} rows does not split over {ctx.world_size} processes: "
                         f"pass a --batch-size that is a multiple of {ctx.world_size}")
    b = rows // ctx.world_size
    return {name: t[ctx.rank * b:(ctx.rank + 1) * b] for name, t in batch.items()}


def clip_grad_norm(model: nn.Module, max_norm: float) -> float:
    """Clip the gradients to a total norm of ``max_norm``; return the norm before clipping.

    Under FSDP2 each rank holds a shard of every gradient: torch computes the norm over all of them
    (a collective, so every rank calls this) and returns it as a DTensor, made a number here.
    """
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    if hasattr(norm, "full_tensor"):  # a DTensor
        norm = norm.full_tensor()
    return norm.item()


def all_reduce_mean(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The mean of ``t`` over ranks (a new tensor, detached; ``t`` itself with a world of one).

    The loss each rank computes is the mean over its rows; with equal rows and tokens per rank the
    mean over ranks is the loss of the global batch, the number one process would log.
    """
    if not ctx.distributed:
        return t
    out = t.detach().to(ctx.device, copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return (out / ctx.world_size).to(t.device)


def barrier(ctx: DistContext) -> None:
    """Wait until every rank gets here (e.g. before the others read what the main rank wrote)."""
    if ctx.distributed:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (the end of a torchrun run)."""
    if ctx.distributed and dist.is_initialized():
        # FSDP2's hooks keep a wrapped model alive in reference cycles; free it while the group still
        # exists, then wait for every rank. Tearing the gloo group down under a live FSDP2 model, or
        # while another rank is still busy, aborted a rank about one run in two ("terminate called").
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
