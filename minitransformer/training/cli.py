"""``minitransformer train``: train a model from scratch on a text corpus.

    minitransformer train --model gpt2-tiny --max-steps 200 --out runs/tiny          # the built-in corpus
    minitransformer train --model llama-tiny --corpus shakespeare.txt --tokenizer bpe --vocab-size 512 \\
        --max-steps 2000 --out runs/llama
    minitransformer train ... --out runs/tiny --resume                                # go on after a kill
    minitransformer train --model bert-tiny --max-steps 200 --out runs/bert          # masked LM (BERT)
    minitransformer train --model runs/tiny --lora-r 4 --max-steps 200 --out runs/tiny-lora   # LoRA fine-tune

GPT-2 and Llama learn to predict the next token; BERT learns masked-language modelling (15% of the
tokens chosen: 80% become ``[MASK]``, added to the tokenizer, 10% a random token, 10% kept). The output folder gets ``config.json`` + ``model.safetensors`` (``transformers`` loads them),
``tokenizer.json``, ``metrics.jsonl``, ``loss.png`` and ``checkpoints/`` (see ``docs/training.md``).
With ``--lora-r`` the run fine-tunes a trained model instead (``--model`` a folder with its weights and
``tokenizer.json``, e.g. an earlier run's ``--out``): its weights are frozen, LoRA adapters are trained on
``--lora-targets`` (PEFT's module names), and the folder gets the adapter in PEFT's format
(``adapter_config.json`` + ``adapter_model.safetensors``, which ``peft.PeftModel.from_pretrained`` loads).
Bad input is one line on stderr and exit status 2: no traceback, nothing already saved overwritten.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from minitransformer.loading.errors import LoadingError
from minitransformer.training.checkpoint import CheckpointError

EXIT_BAD_INPUT = 2
FAMILIES = "gpt2 and llama (next-token prediction), bert (masked LM)"
#: What ``--lora-targets`` defaults to, per family (PEFT's defaults for these models).
LORA_TARGETS = {"gpt2": "c_attn", "llama": "q_proj,v_proj"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minitransformer train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="gpt2-tiny",
                   help="a preset (gpt2-tiny, gpt2, llama-tiny, smollm-135m, bert-tiny...) or a path to a "
                        "config.json")
    p.add_argument("--corpus", default=None, help="a UTF-8 text file (default: the built-in corpus, Python's "
                                                  "own documentation topics)")
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--out", required=True, help="the output folder")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--tokenizer", default=None, help="char (the default), bpe, or a path to a tokenizer.json / "
                                                      "folder; with --resume, the run's own unless given")
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
    lora = p.add_argument_group("LoRA fine-tuning (--model: a trained model's folder)")
    lora.add_argument("--lora-r", type=int, default=None, help="train LoRA adapters of this rank, the base frozen")
    lora.add_argument("--lora-alpha", type=float, default=None, help="the update is scaled by alpha / r "
                                                                     "(default: 2 x r)")
    lora.add_argument("--lora-targets", default=None,
                      help="comma-separated PEFT module names (default: c_attn for GPT-2, q_proj,v_proj for LLaMA)")
    return p


def build_model_config(name: str):
    """A preset of a family we train, or a ``config.json`` (the file, or the folder holding it), as our config.

    Raises:
        ValueError: not a preset nor a config file, or a family that cannot be trained here (T5).
        FileNotFoundError: a ``.json`` path that does not exist, a folder without ``config.json``.
        LoadingError: a config file that is not JSON.
    """
    from minitransformer.loading.core import build_config
    from minitransformer.loading.io import read_json_object
    from minitransformer.loading.registry import get_family
    from minitransformer.models import BertConfig, GPT2Config, LlamaConfig, T5Config

    path = Path(name)
    if path.is_dir():
        path = path / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"--model {name}: the folder has no config.json; pass a preset or a config.json")
    if path.suffix == ".json":
        if not path.is_file():
            raise FileNotFoundError(f"--model {name}: no such file; pass a preset or the path of a config.json")
        config_dict = read_json_object(path)  # this very file, whatever its name
        try:
            family = get_family(config_dict.get("model_type"))
        except ValueError as err:
            raise ValueError(f"--model {name}: {err}") from err
        config = build_config(family, config_dict, path)[2]
    else:
        classes = (GPT2Config, LlamaConfig, BertConfig, T5Config)
        config = next((c.from_name(name) for c in classes if name in c.presets), None)
        if config is None:
            presets = [p for c in classes[:3] for p in c.presets]
            raise ValueError(f"--model {name!r} is neither a preset ({', '.join(presets)}) nor a config.json")
    if isinstance(config, T5Config):
        raise ValueError(f"--model {name}: training T5 (span corruption) is not supported yet; "
                         f"minitransformer train trains {FAMILIES}")
    if not isinstance(config, (GPT2Config, LlamaConfig, BertConfig)):
        raise ValueError(f"--model {name}: model_type {config.model_type!r} cannot be trained here; "
                         f"minitransformer train trains {FAMILIES}")
    return config


def build_tokenizer(kind: str | None, text: str, vocab_size: int, out: Path, resume: bool):
    """The tokenizer ``--tokenizer`` names (default char); on a resume without it, the run's own.

    Raises:
        ValueError: an unknown kind, or on a resume one that is not the run's (before anything is written).
    """
    from minitransformer.tokenizers import load_tokenizer
    from minitransformer.training.data import bpe_tokenizer, char_tokenizer, tokenizer_fingerprint

    saved = out / "tokenizer.json"
    if resume and saved.is_file() and kind is None:  # the run's own tokenizer, not a new one
        return load_tokenizer(saved)
    if kind in (None, "char"):
        tokenizer = char_tokenizer(text)
    elif kind == "bpe":
        tokenizer = bpe_tokenizer(text, vocab_size)
    elif Path(kind).exists():
        tokenizer = load_tokenizer(kind)
    else:
        raise ValueError(f"--tokenizer {kind!r}: expected char, bpe, or a path to a tokenizer.json or folder")
    if resume and saved.is_file() and tokenizer_fingerprint(tokenizer) != tokenizer_fingerprint(load_tokenizer(saved)):
        raise ValueError(f"--tokenizer {kind} is not the tokenizer {out} was trained with ({saved}): resume "
                         "without --tokenizer to use the run's own, or train into a new --out")
    return tokenizer


def lora_base(args: argparse.Namespace):
    """(model, tokenizer) of a LoRA fine-tune: the trained model in ``--model``, adapted, its base frozen.

    Raises:
        ValueError: ``--model`` is not a folder with weights, holds a family LoRA is not trained on here,
            has no tokenizer, or the LoRA settings are wrong (say a target that matches nothing).
    """
    from minitransformer.loading import from_pretrained
    from minitransformer.lora import apply_lora
    from minitransformer.tokenizers import load_tokenizer

    folder = Path(args.model)
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        raise ValueError(f"--lora-r fine-tunes a trained model: --model must be a folder with config.json and "
                         f"model.safetensors (say an earlier run's --out), got {args.model!r}")
    model = from_pretrained(folder)
    family = getattr(model.config, "model_type", None)
    if family not in LORA_TARGETS:
        raise ValueError(f"--lora-r: {folder} holds a {family} model; LoRA runs of minitransformer train are for "
                         f"gpt2 and llama (for a BERT classifier, see minitransformer finetune)")
    if args.tokenizer in ("char", "bpe"):
        raise ValueError(f"--tokenizer {args.tokenizer}: a LoRA fine-tune reads text with the base model's own "
                         f"tokenizer (its ids are the model's); drop --tokenizer or pass that tokenizer's path")
    source = Path(args.tokenizer) if args.tokenizer else folder / "tokenizer.json"
    if not source.exists():
        raise ValueError(f"{folder} has no tokenizer.json: pass the base model's tokenizer with --tokenizer PATH")
    tokenizer = load_tokenizer(source)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"the tokenizer {source} has {tokenizer.vocab_size} ids, more than the model's "
                         f"{model.config.vocab_size}: pass the tokenizer the model was trained with")
    targets = (args.lora_targets or LORA_TARGETS[family]).split(",")
    alpha = 2.0 * args.lora_r if args.lora_alpha is None else args.lora_alpha
    apply_lora(model, r=args.lora_r, alpha=alpha, target_modules=[t.strip() for t in targets if t.strip()])
    model.name_or_path = str(folder)  # transformers' attribute; save_adapter records it as the base model
    return model, tokenizer


def check_same_corpus(out: Path, text: str) -> None:
    """On a resume, refuse another corpus: the batches follow from the step only over the same tokens."""
    import hashlib

    record = out / "tokens.bin.json"
    if record.is_file():
        saved = json.loads(record.read_text(encoding="utf-8")).get("text_sha256")
        if saved != hashlib.sha256(text.encode("utf-8")).hexdigest():
            raise ValueError(f"{out} was trained on another corpus ({record} records another text): resume with "
                             "the same --corpus, or train into a new --out")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from minitransformer.models import GPT2, BertConfig, BertForMaskedLM, GPT2Config, Llama
    from minitransformer.training.corpus import read_corpus
    from minitransformer.training.data import (
        MaskedTokenBlocks,
        TokenBlocks,
        add_mask_token,
        load_token_file,
        tokenize_to_file,
    )
    from minitransformer.training.distributed import barrier, init_distributed, shutdown
    from minitransformer.training.trainer import Trainer, TrainingConfig

    out = Path(args.out)
    if not args.resume and ((out / "metrics.jsonl").exists() or (out / "checkpoints").exists()):
        raise ValueError(f"{out} already holds a training run: add --resume to continue it, or pick another --out")
    text = read_corpus(args.corpus)
    if args.resume:
        check_same_corpus(out, text)
    if args.lora_r is not None:  # fine-tune a trained model through LoRA adapters
        torch.manual_seed(args.seed)  # the adapters' A follows the seed
        model, tokenizer = lora_base(args)
        config, masked, mask_id, V = model.config, False, None, tokenizer.vocab_size
    else:
        config = build_model_config(args.model)
        tokenizer = build_tokenizer(args.tokenizer, text, args.vocab_size, out, args.resume)
        masked = isinstance(config, BertConfig)
        mask_id = add_mask_token(tokenizer) if masked else None
        V = tokenizer.vocab_size
        # The model reads the tokenizer's ids; a preset's special ids belong to another vocabulary.
        if masked:  # no padding in these blocks: no id is [PAD]
            config = dataclasses.replace(config, vocab_size=V, pad_token_id=None)
        else:
            config = dataclasses.replace(config, vocab_size=V, bos_token_id=None, eos_token_id=None)
        torch.manual_seed(args.seed)  # the initial weights follow the seed too (a resume reads them back)
        model = BertForMaskedLM(config) if masked else (GPT2 if isinstance(config, GPT2Config) else Llama)(config)
    # Under torchrun the main rank tokenizes and the others wait, then read its file (two ranks writing
    # one file would race). Outside torchrun this is a world of one: no process group, no waiting.
    ctx = init_distributed(args.device)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        tokens = tokenize_to_file(text, tokenizer, out / "tokens.bin")  # tokenized once, memory-mapped
    barrier(ctx)
    if not ctx.is_main:
        tokens = load_token_file(out / "tokens.bin")
    if masked:  # BERT's position table (its max_positions is None: the model does not say)
        data = MaskedTokenBlocks(tokens, args.block_size, mask_token_id=mask_id, vocab_size=V, seed=args.seed,
                                 max_positions=config.max_position_embeddings)
    else:
        data = TokenBlocks(tokens, args.block_size, seed=args.seed, max_positions=model.max_positions)
    train_config = TrainingConfig(
        max_steps=args.max_steps, batch_size=args.batch_size, block_size=args.block_size, lr=args.lr,
        warmup_steps=min(100, args.max_steps // 10), grad_accum=args.grad_accum, precision=args.precision,
        eval_every=min(args.eval_every, args.max_steps), patience=args.patience, seed=args.seed,
        device=args.device, compile=args.compile, distributed=args.distributed,
    )
    trainer = Trainer(model, train_config, data, tokenizer=tokenizer, out_dir=out)
    result = trainer.train(resume=args.resume)
    # Under torchrun: leave the process group (a no-op in one process). Only after a run that ended
    # well: after an error the other ranks may be inside a collective and never reach the barrier of
    # shutdown; this rank exits instead, and torchrun stops the others.
    shutdown(trainer.ctx)
    if trainer.ctx.is_main:
        (out / "train_result.json").write_text(json.dumps(
            {"steps": result.steps, "train_loss": result.train_loss, "best_val_loss": result.best_val_loss,
             "stopped_early": result.stopped_early, "tokens_per_s": result.tokens_per_s}, indent=2) + "\n")
    return 0


def train_main(argv: list[str]) -> int:
    """Parse ``argv`` and train; bad input (a ValueError, a missing file, a broken config) is one line and status 2."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError, CheckpointError, LoadingError) as err:
        print(f"minitransformer train: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
