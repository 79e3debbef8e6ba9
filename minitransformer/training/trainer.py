"""The training loop: AdamW on a schedule, evaluation, samples, checkpoints, and an exact resume.

    from minitransformer.training import Trainer, TrainingConfig
    config = TrainingConfig(max_steps=200, batch_size=16, block_size=64, eval_every=50)
    result = Trainer(model, config, data, tokenizer=tok, out_dir="runs/tiny").train()
    result = Trainer(model, config, data, tokenizer=tok, out_dir="runs/tiny").train(resume=True)  # later

One step (``Trainer.step``): ``grad_accum`` micro-batches, each ``data.get_batch("train", i, B)``, forward
under autocast, backward of loss / grad_accum; then clip the gradient norm, set the learning rate of
``lr_at``, and step AdamW (through a GradScaler in fp16). Every ``eval_every`` steps: the mean loss on
``eval_batches`` validation batches, a sample from the model, a checkpoint, ``loss.png``, and the
early-stopping count.

Resuming is exact: a checkpoint holds the weights, the optimizer, every RNG state and the step, and
the batches follow from the step alone (see ``data.py``), so ``2N`` steps in one run and ``N + N``
with a resume between log the same losses, bit for bit on CPU.

Distributed training (torchrun) goes through the hooks of ``distributed.py``: each rank keeps its rows
of the global batch, losses are averaged over ranks, and only the main rank writes files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from minitransformer.models.base import DecoderOnlyModel
from minitransformer.models.bert import BertForSequenceClassification
from minitransformer.training import distributed as hooks
from minitransformer.training.checkpoint import (
    CheckpointError,
    check_compatible,
    latest_checkpoint,
    list_checkpoints,
    remove_unfinished,
    save_checkpoint,
    set_rng_state,
)
from minitransformer.training.data import tokenizer_fingerprint
from minitransformer.training.optim import configure_optimizer, lr_at

PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
METRIC_FIELDS = ("step", "train_loss", "val_loss", "lr", "tokens_per_s")


@dataclass
class TrainingConfig:
    """Everything the loop needs besides the model and the data. ``min_lr`` None means ``lr / 10``.

    ``betas``, ``distributed`` (None, "ddp", "fsdp2"), ``checkpoint_every`` (None: at each eval) and
    ``progress`` (the tqdm bar) add to the fields the training contract names.
    """

    max_steps: int = 1000
    batch_size: int = 16
    block_size: int = 64
    lr: float = 1e-3
    min_lr: float | None = None
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_accum: int = 1
    grad_clip: float | None = 1.0
    precision: str = "fp32"
    eval_every: int = 100
    eval_batches: int = 10
    patience: int | None = None
    seed: int = 0
    device: str = "auto"
    compile: bool = False
    activation_checkpointing: bool = False
    keep_checkpoints: int = 3
    sample_every_eval: bool = True
    sample_tokens: int = 64
    betas: tuple[float, float] = (0.9, 0.95)
    distributed: str | None = None
    checkpoint_every: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "block_size", "grad_accum", "eval_every", "eval_batches",
                     "keep_checkpoints"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.warmup_steps < 0 or self.sample_tokens < 0:
            raise ValueError("warmup_steps and sample_tokens must be 0 or more")
        if not (self.lr > 0):
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be at least 1 (evaluations without improvement), got {self.patience}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be positive or None, got {self.checkpoint_every}")

    @property
    def final_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else self.min_lr


@dataclass
class TrainResult:
    """What :meth:`Trainer.train` returns. ``best_val_loss`` is None when no evaluation ran."""

    steps: int
    train_loss: float
    best_val_loss: float | None
    stopped_early: bool
    tokens_per_s: float
    out_dir: Path | None
    samples: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)


def is_degenerate(ids: list[int]) -> bool:
    """True when one token is at least half of a sample (4 tokens or more): the model repeats itself."""
    if len(ids) < 4:
        return False
    return Counter(ids).most_common(1)[0][1] * 2 >= len(ids)


def enable_activation_checkpointing(model: nn.Module) -> None:
    """Recompute each decoder block's activations in the backward instead of keeping them.

    Each block's forward is replaced by ``torch.utils.checkpoint.checkpoint`` of it while training
    with gradients: memory per block drops to its input, for about one more forward of compute. The
    RNG state is saved and replayed, so dropout draws the same masks and the gradients are unchanged.
    """
    try:
        blocks = list(model.layers)
    except (AttributeError, NotImplementedError) as err:
        raise ValueError(f"activation checkpointing needs the decoder blocks in model.layers; "
                         f"{type(model).__name__} has none") from err
    for block in blocks:
        def checkpointed(*args, _forward=block.forward, _block=block, **kwargs):
            if _block.training and torch.is_grad_enabled():
                return torch.utils.checkpoint.checkpoint(_forward, *args, use_reentrant=False, **kwargs)
            return _forward(*args, **kwargs)

        block.forward = checkpointed


def plot_losses(history: list[dict[str, Any]], path: Path) -> None:
    """Train and validation loss against step into ``path`` (PNG), replaced atomically.

    A file only: the figure is matplotlib's ``Figure`` without pyplot, so it opens no window and
    leaves pyplot's backend alone (a notebook that trains keeps showing its own plots inline).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    ax.plot([r["step"] for r in history], [r["train_loss"] for r in history], label="train", lw=1)
    evals = [r for r in history if r.get("val_loss") is not None]
    if evals:
        ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label="val")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (cross-entropy, nats)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)


def read_metrics(path: Path, up_to_step: int) -> list[dict[str, Any]]:
    """The complete lines of ``metrics.jsonl`` with step <= ``up_to_step`` (a killed run may have left more)."""
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:  # half a line: the run was killed while writing it
                continue
            if isinstance(row, dict) and row.get("step", math.inf) <= up_to_step:
                rows.append(row)
    return rows


def _write_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)


class Trainer:
    """Train ``model`` on ``data`` (anything with ``get_batch(split, index, batch_size)``, see ``data.py``).

    Args:
        model: a model whose ``model(**batch)`` returns ``.loss``; moved to the config's device.
        config: a :class:`TrainingConfig`.
        data: the batches; ``data.tokens_in(batch)`` (optional) counts tokens for tokens/s.
        tokenizer: decodes the samples, and is saved as ``out_dir/tokenizer.json``; its fingerprint
            goes into every checkpoint, and resuming with another tokenizer is refused.
        out_dir: where ``metrics.jsonl``, ``samples.jsonl``, ``loss.png``, ``checkpoints/`` and, at the
            end, ``config.json`` + ``model.safetensors`` go. None: nothing is written (and no resume).

    Raises:
        ValueError: fp16 without a GPU, a GPU asked for without one, activation checkpointing on a
            model without ``layers``.
    """

    def __init__(self, model: nn.Module, config: TrainingConfig, data: Any, *, tokenizer: Any = None,
                 out_dir: str | os.PathLike | None = None) -> None:
        self.config = config
        self.data = data
        self.tokenizer = tokenizer
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.ctx = hooks.init_distributed(config.device)
        self.device = self.ctx.device
        if config.precision == "fp16" and self.device.type != "cuda":
            raise ValueError("precision fp16 needs a GPU (its GradScaler is CUDA-only); on CPU use --precision bf16 "
                             "or fp32")
        self.model = model.to(self.device)
        if config.activation_checkpointing:
            enable_activation_checkpointing(self.model)
        self.wrapped = hooks.wrap_model(self.model, config.distributed, self.ctx)
        self.forward = torch.compile(self.wrapped) if config.compile else self.wrapped
        # After wrapping: FSDP2 replaces the parameters by their shards, and the optimizer must hold those.
        self.optimizer = configure_optimizer(self.model, lr=config.lr, weight_decay=config.weight_decay,
                                             betas=tuple(config.betas))
        self.scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" else None
        self.fingerprint = None if tokenizer is None else tokenizer_fingerprint(tokenizer)

    # ------------------------------------------------------------------ pieces of a step

    def autocast(self):
        """bf16 (CPU or CUDA) or fp16 (CUDA) autocast; nothing for fp32."""
        if self.config.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def batch(self, split: str, index: int) -> tuple[dict[str, torch.Tensor], int]:
        """This rank's rows of global batch ``index`` of ``split``, on the device, and the global batch's tokens."""
        batch = self.data.get_batch(split, index, self.config.batch_size)
        tokens = self.data.tokens_in(batch) if hasattr(self.data, "tokens_in") else batch["input_ids"].numel()
        batch = hooks.rows_of_rank(batch, self.ctx)
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}, tokens

    def step(self, step: int) -> tuple[float, float, int]:
        """One optimizer step (from 0): (mean train loss over ranks and micro-batches, lr, tokens)."""
        cfg = self.config
        lr = lr_at(step, max_lr=cfg.lr, warmup_steps=cfg.warmup_steps, max_steps=cfg.max_steps, min_lr=cfg.final_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss_sum, tokens = torch.zeros((), device=self.device), 0
        for micro in range(cfg.grad_accum):
            batch, n = self.batch("train", step * cfg.grad_accum + micro)
            tokens += n
            with self.autocast():
                loss = self.forward(**batch).loss
            loss_sum += loss.detach().float()
            scaled = loss / cfg.grad_accum  # the mean over the micro-batches, as one big batch
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        if cfg.grad_clip:
            hooks.clip_grad_norm(self.wrapped, cfg.grad_clip)
        if self.scaler:
            self.scaler.step(self.optimizer)  # skipped when the gradients overflowed
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return hooks.all_reduce_mean(loss_sum / cfg.grad_accum, self.ctx).item(), lr, tokens

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss over ``eval_batches`` validation batches (the same ones every time), dropout off."""
        self.wrapped.eval()
        total = torch.zeros((), device=self.device)
        for i in range(self.config.eval_batches):
            batch, _ = self.batch("val", i)
            with self.autocast():
                total += self.forward(**batch).loss.float()
        self.wrapped.train()
        return hooks.all_reduce_mean(total / self.config.eval_batches, self.ctx).item()

    @torch.no_grad()
    def sample(self, step: int) -> dict[str, Any] | None:
        """``sample_tokens`` tokens sampled (top-k 50) after the first validation token, seeded by the step."""
        cfg = self.config
        if not (cfg.sample_every_eval and cfg.sample_tokens and isinstance(self.model, DecoderOnlyModel)):
            return None
        if self.ctx.world_size > 1 and cfg.distributed == "fsdp2":
            return None  # a sharded model generates only with every rank in step; not worth it here
        prompt = self.data.get_batch("val", 0, 1)["input_ids"][:, :1].to(self.device)  # (1, 1)
        generator = torch.Generator(device=self.device).manual_seed(cfg.seed * 1_000_003 + step)
        self.model.eval()
        limit = self.model.max_positions
        new_tokens = cfg.sample_tokens if limit is None else min(cfg.sample_tokens, limit - 1)  # within the context
        out = self.model.generate(prompt, max_new_tokens=new_tokens, do_sample=True, top_k=50,
                                  eos_token_id=[], generator=generator)
        self.model.train()
        new = out[0, 1:].tolist()
        text = self.tokenizer.decode(out[0].tolist()) if self.tokenizer is not None else None
        return {"step": step, "ids": new, "text": text, "degenerate": is_degenerate(new)}

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self, step: int, extra: dict[str, Any]) -> None:
        """Every rank gathers (collectives), the main rank writes ``checkpoints/step-XXXXXXX``."""
        model_state = hooks.gather_state_dict(self.wrapped, self.ctx)
        optim_state = hooks.gather_optimizer_state(self.wrapped, self.optimizer, self.ctx)
        if self.ctx.is_main and self.out_dir is not None:
            state = {"data_index": step * self.config.grad_accum, "scheduler_step": step,
                     "model_config": self.model.config.to_dict() if hasattr(self.model, "config") else {},
                     "tokenizer": self.fingerprint, "training_config": dataclasses.asdict(self.config),
                     "grad_scaler": self.scaler.state_dict() if self.scaler else None, **extra}
            save_checkpoint(self.out_dir / "checkpoints", step, model=model_state, optimizer=optim_state,
                            state=state, keep=self.config.keep_checkpoints)
        hooks.barrier(self.ctx)

    def restore(self) -> dict[str, Any] | None:
        """Load the newest complete checkpoint of ``out_dir`` (every rank reads it); None if there is none."""
        if self.out_dir is None:
            raise ValueError("resume needs an out_dir holding checkpoints")
        checkpoint = latest_checkpoint(self.out_dir / "checkpoints")
        if checkpoint is None:
            return None
        check_compatible(checkpoint, self.model.config.to_dict() if hasattr(self.model, "config") else {},
                         self.fingerprint)
        hooks.load_full_state_dict(self.wrapped, checkpoint.model, self.ctx)
        hooks.load_optimizer_state(self.wrapped, self.optimizer, checkpoint.optimizer, self.ctx)
        if self.scaler and checkpoint.state.get("grad_scaler"):
            self.scaler.load_state_dict(checkpoint.state["grad_scaler"])
        set_rng_state(checkpoint.rng)
        return checkpoint.state

    def _seed(self) -> None:
        seed = self.config.seed + self.ctx.rank  # dropout differs per rank, as it would on one big batch
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)

    # ------------------------------------------------------------------ the loop

    def train(self, resume: bool = False) -> TrainResult:
        """Train to ``max_steps`` (or until early stopping); with ``resume``, from the newest checkpoint.

        Raises:
            ValueError: ``out_dir`` already holds a run and ``resume`` is False (nothing is overwritten).
            CheckpointError: the checkpoint is of another model or tokenizer, or none is readable.
        """
        cfg, main, out = self.config, self.ctx.is_main, self.out_dir
        metrics_path = samples_path = None
        if out is not None:
            metrics_path, samples_path = out / "metrics.jsonl", out / "samples.jsonl"
            if not resume and (list_checkpoints(out / "checkpoints") or metrics_path.exists()):
                raise ValueError(f"{out} already holds a training run: resume it (resume=True, --resume) "
                                 "or choose another output directory")
        start, best, bad_evals, stopped_early = 0, math.inf, 0, False
        state = self.restore() if resume else None
        if resume and state is None:
            warnings.warn(f"no checkpoint in {out / 'checkpoints'} yet: starting from step 0", stacklevel=2)
        if state is None:
            self._seed()
        else:
            start, bad_evals = state["step"], state["bad_evals"]
            best = math.inf if state["best_val_loss"] is None else state["best_val_loss"]
            stopped_early = state.get("stopped_early", False)
        history = read_metrics(metrics_path, start) if (out is not None and state is not None) else []
        samples = read_metrics(samples_path, start) if (out is not None and state is not None) else []
        # Every rank has looked at out_dir (the check above, the checkpoint it resumes from) before the
        # main rank writes into it: otherwise another rank could see this run's fresh metrics.jsonl and
        # refuse it as an old run, leaving the main rank waiting for it in the first backward.
        hooks.barrier(self.ctx)
        if out is not None and main:
            out.mkdir(parents=True, exist_ok=True)
            remove_unfinished(out / "checkpoints")
            _write_lines(metrics_path, history)  # drop what a killed run logged after its last checkpoint
            _write_lines(samples_path, samples)
            if self.tokenizer is not None and not (out / "tokenizer.json").exists():
                self.tokenizer.save(out / "tokenizer.json")

        bar = tqdm(total=cfg.max_steps, initial=start, disable=not (cfg.progress and main), dynamic_ncols=True,
                   desc="train")
        train_time, train_tokens = 0.0, 0
        train_loss = history[-1]["train_loss"] if history else math.nan
        self.wrapped.train()
        step = start
        metrics_file = open(metrics_path, "a", encoding="utf-8") if (out is not None and main) else None
        try:
            while step < cfg.max_steps and not stopped_early:
                t0 = time.perf_counter()
                train_loss, lr, tokens = self.step(step)
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                dt = time.perf_counter() - t0
                train_time, train_tokens = train_time + dt, train_tokens + tokens
                step += 1
                row = {"step": step, "train_loss": train_loss, "val_loss": None, "lr": lr,
                       "tokens_per_s": tokens / dt}
                evaluating = step % cfg.eval_every == 0 or step == cfg.max_steps
                if evaluating:
                    val = self.evaluate()
                    row["val_loss"], row["val_perplexity"] = val, math.exp(min(val, 50.0))
                    if val < best:
                        best, bad_evals = val, 0
                    else:
                        bad_evals += 1
                    stopped_early = cfg.patience is not None and bad_evals >= cfg.patience
                history.append(row)
                bar.update(1)
                bar.set_postfix(loss=f"{train_loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tokens / dt:.0f}")
                if metrics_file is not None:
                    metrics_file.write(json.dumps(row) + "\n")
                    metrics_file.flush()
                if evaluating:
                    sample = self.sample(step) if main else None
                    if sample is not None:
                        samples.append(sample)
                        if out is not None:
                            with open(samples_path, "a", encoding="utf-8") as f:
                                f.write(json.dumps(sample) + "\n")
                        bar.write(f"step {step}: val loss {val:.4f} (perplexity {row['val_perplexity']:.1f})"
                                  f"{'  DEGENERATE' if sample['degenerate'] else ''}: {sample['text'] or sample['ids']!r}")
                    if out is not None and main:
                        plot_losses(history, out / "loss.png")
                every = cfg.checkpoint_every
                if out is not None and (evaluating if every is None else step % every == 0 or step == cfg.max_steps
                                        or stopped_early):
                    self.checkpoint(step, {"best_val_loss": None if best == math.inf else best,
                                           "bad_evals": bad_evals, "stopped_early": stopped_early})
        finally:
            bar.close()
            if metrics_file is not None:
                metrics_file.close()

        if out is not None:
            self.save_model(out)
        result = TrainResult(steps=step, train_loss=train_loss, best_val_loss=None if best == math.inf else best,
                             stopped_early=stopped_early, tokens_per_s=train_tokens / train_time if train_time else 0.0,
                             out_dir=out, samples=samples, history=history)
        if main and cfg.progress:
            print(summary(result, self))
        return result

    def save_model(self, out: Path) -> None:
        """``config.json`` + ``model.safetensors`` of the final weights (``save_pretrained``), by the main rank.

        A model adapted with LoRA (``minitransformer.lora.apply_lora``) writes its adapter instead, in
        PEFT's format (``adapter_config.json`` + ``adapter_model.safetensors``): the base is unchanged.
        """
        from minitransformer.lora import lora_layers, save_adapter

        state = hooks.gather_state_dict(self.wrapped, self.ctx)
        if self.ctx.is_main and lora_layers(self.model):
            # transformers' attribute for where the weights came from, set by ``minitransformer train``
            save_adapter(self.model, out, base_model_name_or_path=getattr(self.model, "name_or_path", None))
        elif self.ctx.is_main and hasattr(self.model, "save_pretrained"):
            model = self.model
            if state is not None and self.ctx.world_size > 1 and hooks.is_sharded(self.wrapped):
                model = type(self.model)(self.model.config)  # a full copy on the CPU to write
                hooks.load_full_state_dict(model, state, type(self.ctx)())
            model.save_pretrained(out)
        hooks.barrier(self.ctx)


def summary(result: TrainResult, trainer: Trainer | None = None) -> str:
    """One screen: what was trained, how far, the losses, the speed, the last sample, the files."""
    from minitransformer.lora import lora_layers, trainable_parameters

    lines = ["", "=" * 72]
    lora = trainer is not None and bool(lora_layers(trainer.model))
    if trainer is not None and hasattr(trainer.model, "num_parameters"):
        lines.append(f"model      {type(trainer.model).__name__}, {trainer.model.num_parameters() / 1e6:.2f}M parameters, "
                     f"on {trainer.device}, {trainer.config.precision}")
    if lora:
        trainable, total = trainable_parameters(trainer.model)
        lines.append(f"LoRA       {trainable:,d} of {total:,d} parameters trained ({100 * trainable / total:.2f}%)")
    lines.append(f"steps      {result.steps}" + ("  (stopped early: no improvement)" if result.stopped_early else ""))
    lines.append(f"train loss {result.train_loss:.4f}")
    if result.best_val_loss is not None:
        # perplexity is exp of a per-token cross-entropy: a language model's, not a classifier's
        lm = trainer is None or not isinstance(trainer.model, BertForSequenceClassification)
        ppl = f" (perplexity {math.exp(min(result.best_val_loss, 50)):.2f})" if lm else ""
        lines.append(f"val loss   {result.best_val_loss:.4f} best{ppl}")
    lines.append(f"speed      {result.tokens_per_s:,.0f} tokens/s (training steps only, this session)")
    if result.samples:
        last = result.samples[-1]
        text = (last["text"] if last["text"] is not None else str(last["ids"]))[:200].replace("\n", "\\n")
        lines.append(f"sample     {text!r}" + ("  [degenerate: one token repeats]" if last["degenerate"] else ""))
    if result.out_dir is not None:
        weights = "adapter_config.json, adapter_model.safetensors" if lora else "config.json, model.safetensors"
        lines.append(f"written    {result.out_dir}/ ({weights}, tokenizer.json, metrics.jsonl, loss.png, checkpoints/)")
    lines.append("=" * 72)
    return "\n".join(lines)


__all__ = ["CheckpointError", "TrainResult", "Trainer", "TrainingConfig", "enable_activation_checkpointing",
           "is_degenerate", "plot_losses", "summary"]
