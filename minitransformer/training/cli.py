"""``minitransformer train``: train a model from scratch on a text corpus.

    minitransformer train --model gpt2-tiny --max-steps 200 --out runs/tiny          # the built-in corpus
    minitransformer train --model llama-tiny --corpus shakespeare.txt --tokenizer bpe --vocab-size 512 \\
        --max-steps 2000 --out runs/llama
    minitransformer train ... --out runs/tiny --resume                                # go on after a kill

The output folder gets ``config.json`` + ``model.safetensors`` (``transformers`` loads them),
``tokenizer.json``, ``metrics.jsonl``, ``loss.png`` and ``checkpoints/`` (see ``docs/training.md``).
Bad input is one line on stderr and exit status 2: no traceback, nothing already saved overwritten.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from minitransformer.training.checkpoint import CheckpointError

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minitransformer train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gpt2-tiny",
                   help="a preset (gpt2-tiny, gpt2, llama-tiny, smollm-135m...) or a path to a config.json")
    p.add_argument("--corpus", default=None, help="a UTF-8 text file (default: the built-in corpus, Python's "
                                                  "own documentation topics)")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--out", required=True, help="the output folder")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--tokenizer", default="char", help="char, bpe, or a path to a tokenizer.json / folder")
    p.add_argument("--vocab-size", type=int, default=512, help="for --tokenizer bpe (256 bytes included)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--patience", type=int, default=None, help="stop after this many evaluations without a "
                                                               "better validation loss")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--distributed", choices=("ddp", "fsdp2"), default=None,
                   help="under torchrun: DistributedDataParallel or FSDP2 (fully_shard)")
    return p


def build_model_config(name: str):
    """A preset of any family, or a ``config.json`` path, as our typed config."""
    from minitransformer.models import GPT2Config, LlamaConfig

    path = Path(name)
    if path.suffix == ".json" or path.is_dir():
        from minitransformer.loading import AutoConfig

        return AutoConfig.from_pretrained(path.parent if path.suffix == ".json" else path)
    for config_class in (GPT2Config, LlamaConfig):
        if name in config_class.presets:
            return config_class.from_name(name)
    presets = [*GPT2Config.presets, *LlamaConfig.presets]
    raise ValueError(f"--model {name!r} is neither a preset ({', '.join(presets)}) nor a config.json")


def build_tokenizer(kind: str, text: str, vocab_size: int, out: Path, resume: bool):
    from minitransformer.tokenizers import load_tokenizer
    from minitransformer.training.data import bpe_tokenizer, char_tokenizer

    if resume and (out / "tokenizer.json").is_file():  # the run's own tokenizer, not a new one
        return load_tokenizer(out / "tokenizer.json")
    if kind == "char":
        return char_tokenizer(text)
    if kind == "bpe":
        return bpe_tokenizer(text, vocab_size)
    if not Path(kind).exists():
        raise ValueError(f"--tokenizer {kind!r}: expected char, bpe, or a path to a tokenizer.json or folder")
    return load_tokenizer(kind)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from minitransformer.models import GPT2, GPT2Config, Llama
    from minitransformer.training.corpus import read_corpus
    from minitransformer.training.data import TokenBlocks, tokenize_to_file
    from minitransformer.training.distributed import shutdown
    from minitransformer.training.trainer import Trainer, TrainingConfig

    out = Path(args.out)
    if not args.resume and ((out / "metrics.jsonl").exists() or (out / "checkpoints").exists()):
        raise ValueError(f"{out} already holds a training run: add --resume to continue it, or pick another --out")
    config = build_model_config(args.model)
    text = read_corpus(args.corpus)
    tokenizer = build_tokenizer(args.tokenizer, text, args.vocab_size, out, args.resume)
    V = tokenizer.vocab_size
    # The model reads the tokenizer's ids; a preset's special ids belong to another vocabulary.
    config = dataclasses.replace(config, vocab_size=V, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(args.seed)  # the initial weights follow the seed too (a resume reads them back)
    model = (GPT2 if isinstance(config, GPT2Config) else Llama)(config)
    out.mkdir(parents=True, exist_ok=True)
    tokens = tokenize_to_file(text, tokenizer, out / "tokens.bin")  # tokenized once, memory-mapped
    data = TokenBlocks(tokens, args.block_size, seed=args.seed, max_positions=model.max_positions)
    train_config = TrainingConfig(
        max_steps=args.max_steps, batch_size=args.batch_size, block_size=args.block_size, lr=args.lr,
        warmup_steps=min(100, args.max_steps // 10), grad_accum=args.grad_accum, precision=args.precision,
        eval_every=min(args.eval_every, args.max_steps), patience=args.patience, seed=args.seed,
        device=args.device, compile=args.compile, distributed=args.distributed,
    )
    trainer = Trainer(model, train_config, data, tokenizer=tokenizer, out_dir=out)
    try:
        result = trainer.train(resume=args.resume)
    finally:
        shutdown(trainer.ctx)  # under torchrun: leave the process group (a no-op in one process)
    if trainer.ctx.is_main:
        (out / "train_result.json").write_text(json.dumps(
            {"steps": result.steps, "train_loss": result.train_loss, "best_val_loss": result.best_val_loss,
             "stopped_early": result.stopped_early, "tokens_per_s": result.tokens_per_s}, indent=2) + "\n")
    return 0


def train_main(argv: list[str]) -> int:
    """Parse ``argv`` and train; bad input (a ValueError, a missing file) is one line and status 2."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError, CheckpointError) as err:
        print(f"minitransformer train: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
