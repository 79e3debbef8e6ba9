"""A few AdamW steps (gradients clipped) of gpt2-tiny, run by test_distributed.py in one process and under torchrun.

    torchrun --standalone --nproc-per-node 2 dist_worker.py OUT --strategies ddp fsdp2 --resume-from CKPT

Each rank trains on its rows ``[rank*b : (rank+1)*b]`` of the same global batch, so the mean loss
over ranks must equal the loss of one process on the whole batch. For each strategy it writes to OUT:

- ``{strategy}.json``: ``trace`` (the mean loss of each of STEPS steps) and ``resumed_trace`` (steps
  RESUME_STEP.. after loading the single-process checkpoint in CKPT, if given);
- ``{strategy}/``: a checkpoint after RESUME_STEP steps (``model.safetensors``, ``optimizer.pt``) and
  the logits the wrapped model gave on PROBE then (``logits.safetensors``);
- ``{strategy}-resumed-logits.safetensors``: the logits on PROBE right after loading CKPT.

Run without torchrun (``python dist_worker.py OUT``) it is the single-process reference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from minitransformer.models.gpt2 import GPT2, GPT2Config
from minitransformer.training.distributed import (
    DistContext,
    all_reduce_mean,
    barrier,
    clip_grad_norm,
    gather_optimizer_state,
    gather_state_dict,
    init_distributed,
    load_full_state_dict,
    load_optimizer_state,
    rows_of_rank,
    shutdown,
    wrap_model,
)

STEPS = 5
RESUME_STEP = 3  # the checkpoint is taken after this many steps
BATCH, SEQ = 4, 16  # the global batch: B rows of T tokens, split evenly over the ranks
PROBE = torch.arange(2 * SEQ).reshape(2, SEQ) % 256  # (2, T) ids whose logits are compared


def tiny_model() -> GPT2:
    """gpt2-tiny with the same random init in every process, and no dropout (it differs per rank)."""
    torch.manual_seed(0)
    config = GPT2Config.from_name("gpt2-tiny", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2(config)


def global_batch(step: int) -> torch.Tensor:
    """(B, T) token ids of step ``step``: the same in every process."""
    generator = torch.Generator().manual_seed(1000 + step)
    return torch.randint(0, 256, (BATCH, SEQ), generator=generator)


def probe_logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=PROBE).logits.detach().cpu().contiguous()  # (2, T, V)


def save_checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ctx: DistContext,
                    directory: Path) -> None:
    """Every rank calls (the gathers are collective); the main rank writes."""
    state = gather_state_dict(model, ctx)
    optim_state = gather_optimizer_state(model, optimizer, ctx)
    logits = probe_logits(model)
    if ctx.is_main:
        directory.mkdir(parents=True, exist_ok=True)
        save_file(state, str(directory / "model.safetensors"))
        torch.save(optim_state, directory / "optimizer.pt")
        save_file({"logits": logits}, str(directory / "logits.safetensors"))
    barrier(ctx)


def load_checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ctx: DistContext,
                    directory: Path) -> None:
    """Every rank reads the full checkpoint and keeps what it needs."""
    load_full_state_dict(model, load_file(str(directory / "model.safetensors")), ctx)
    load_optimizer_state(model, optimizer, torch.load(directory / "optimizer.pt", weights_only=True), ctx)


def train(strategy: str | None, ctx: DistContext, out: Path, resume_from: Path | None = None,
          wrapped_as: list[str] | None = None) -> list[float]:
    """Mean loss over ranks of each step; a checkpoint after RESUME_STEP steps (none when resuming).

    ``wrapped_as`` gets the wrapped model's class name appended (``DistributedDataParallel``, ``FSDPGPT2``).
    """
    model = wrap_model(tiny_model().to(ctx.device), strategy, ctx)
    if wrapped_as is not None:
        wrapped_as.append(type(model).__name__)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
    start = 0
    if resume_from is not None:
        load_checkpoint(model, optimizer, ctx, resume_from)
        logits = probe_logits(model)
        if ctx.is_main:
            save_file({"logits": logits}, str(out / f"{strategy or 'none'}-resumed-logits.safetensors"))
        start = RESUME_STEP

    trace = []
    for step in range(start, STEPS):
        ids = rows_of_rank({"ids": global_batch(step)}, ctx)["ids"].to(ctx.device)  # (B / W, T)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        clip_grad_norm(model, 1.0)  # the norm over every rank's shard of every gradient
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        trace.append(all_reduce_mean(loss.detach(), ctx).item())
        if resume_from is None and step + 1 == RESUME_STEP:
            save_checkpoint(model, optimizer, ctx, out / (strategy or "none"))
    return trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--strategies", nargs="+", default=["none"], choices=["none", "ddp", "fsdp2"])
    parser.add_argument("--resume-from", type=Path)
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    ctx = init_distributed("cpu")
    for name in args.strategies:
        strategy = None if name == "none" else name
        wrapped_as: list[str] = []
        result = {"trace": train(strategy, ctx, args.out, wrapped_as=wrapped_as)}
        result.update(world_size=ctx.world_size, wrapped_as=wrapped_as[0])
        if args.resume_from is not None:
            result["resumed_trace"] = train(strategy, ctx, args.out, resume_from=args.resume_from)
        if ctx.is_main:
            (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    shutdown(ctx)


if __name__ == "__main__":
    main()
