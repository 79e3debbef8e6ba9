"""``minitransformer train --model bert-tiny``: masked-LM training, a folder transformers' MLM class loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from minitransformer.models.bert import BertConfig
from minitransformer.training.cli import train_main
from minitransformer.training.corpus import builtin_corpus

BERT = ["--model", "bert-tiny", "--batch-size", "8", "--block-size", "32"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "docs.txt"
    path.write_text(builtin_corpus()[:30_000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory, corpus) -> Path:
    out = tmp_path_factory.mktemp("bert") / "run"
    assert "bert-tiny" in BertConfig.presets
    assert train_main([*BERT, "--corpus", str(corpus), "--max-steps", "30", "--eval-every", "10", "--lr", "3e-3",
                       "--out", str(out)]) == 0
    return out


def test_bert_trains_with_a_mask_token_added_to_the_tokenizer(bert_run, corpus):
    import minitransformer

    tok = minitransformer.load_tokenizer(bert_run / "tokenizer.json")
    mask = tok.token_to_id("[MASK]")
    assert mask == len(tok) - 1 == len(set(corpus.read_text(encoding="utf-8")))  # after every character
    config = json.loads((bert_run / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"] and config["vocab_size"] == len(tok)
    assert config["pad_token_id"] is None  # no character is padding
    rows = [json.loads(line) for line in (bert_run / "metrics.jsonl").read_text().splitlines()]
    vals = [r["val_loss"] for r in rows if r["val_loss"] is not None]
    assert len(rows) == 30 and len(vals) == 3
    assert vals[-1] < vals[0] - 0.1  # it learns (measured 3.8 -> 3.5 in the Trainer test's setting)
    assert not (bert_run / "samples.jsonl").read_text()  # an encoder is not sampled from


def test_the_bert_folder_loads_in_transformers_masked_lm_with_equal_logits(bert_run):
    transformers = pytest.importorskip("transformers")
    import minitransformer

    ours = minitransformer.from_pretrained(bert_run).eval()
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(bert_run).eval()
    assert type(theirs).__name__ == "BertForMaskedLM"
    tok = minitransformer.load_tokenizer(bert_run / "tokenizer.json")
    ids = torch.tensor([tok.encode("The [MASK] statement"), tok.encode("if x: [MASK] = 1  # ok.")[:15]])
    assert (ids == tok.token_to_id("[MASK]")).sum() == 2
    with torch.no_grad():
        a, b = ours(ids).logits, theirs(ids).logits
    assert a.shape == b.shape == (2, 15, len(tok))
    assert (a - b).abs().max().item() <= 1e-5


def test_a_bert_run_resumes_to_the_same_losses(bert_run, corpus, tmp_path):
    clean = [json.loads(line) for line in (bert_run / "metrics.jsonl").read_text().splitlines()]
    out = tmp_path / "run"
    common = [*BERT, "--corpus", str(corpus), "--eval-every", "10", "--lr", "3e-3", "--out", str(out)]
    # the schedule depends on --max-steps: stop at step 10 by a run of 30 killed there, made by hand
    assert train_main([*common, "--max-steps", "30"]) == 0
    for name in ("step-0000020", "step-0000030"):
        import shutil

        shutil.rmtree(out / "checkpoints" / name)
    assert train_main([*common, "--max-steps", "30", "--resume"]) == 0
    resumed = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in resumed] == [r["train_loss"] for r in clean]
