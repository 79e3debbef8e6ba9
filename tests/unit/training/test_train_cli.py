"""``minitransformer train`` end to end: the output folder, transformers loading it, exact resume after SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from minitransformer.training.cli import train_main

TINY = ["--model", "gpt2-tiny", "--batch-size", "4", "--block-size", "32"]


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_train_writes_a_folder_transformers_and_tokenizers_load(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main([*TINY, "--max-steps", "12", "--eval-every", "6", "--out", str(out)]) == 0
    for name in ("config.json", "model.safetensors", "tokenizer.json", "metrics.jsonl", "loss.png"):
        assert (out / name).is_file(), name
    rows = metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert set(rows[0]) >= {"step", "train_loss", "val_loss", "lr", "tokens_per_s"}
    assert rows[5]["val_loss"] is not None and rows[0]["val_loss"] is None
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]  # it learns something in 12 steps

    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    import minitransformer

    ours = minitransformer.from_pretrained(out)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    text = "def f(x):\n    return x"
    ids = minitransformer.load_tokenizer(out / "tokenizer.json").encode(text)
    assert tokenizers.Tokenizer.from_file(str(out / "tokenizer.json")).encode(text).ids == ids
    with torch.no_grad():
        a, b = ours(torch.tensor([ids])).logits, theirs(torch.tensor([ids])).logits
    assert (a - b).abs().max().item() <= 1e-5


@pytest.mark.parametrize("extra, message", [
    (["--block-size", "100"], "longer than the model's 64 positions"),
    (["--precision", "fp16", "--device", "cpu"], "fp16 needs a GPU"),
    (["--model", "gpt-3"], "neither a preset"),
    (["--tokenizer", "nope.json"], "--tokenizer 'nope.json'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, extra, message):
    args = [*TINY, "--max-steps", "2", "--out", str(tmp_path / "run"), *extra]
    assert train_main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_corpus_too_small_and_an_existing_run_are_refused(tmp_path, capsys):
    small = tmp_path / "small.txt"
    small.write_text("tiny text")
    assert train_main([*TINY, "--corpus", str(small), "--max-steps", "2", "--out", str(tmp_path / "a")]) == 2
    assert "corpus is too small" in capsys.readouterr().err
    out = tmp_path / "b"
    assert train_main([*TINY, "--max-steps", "2", "--eval-every", "2", "--out", str(out)]) == 0
    before = (out / "model.safetensors").read_bytes()
    assert train_main([*TINY, "--max-steps", "2", "--out", str(out)]) == 2  # no --resume: nothing overwritten
    assert "already holds a training run" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == before


def test_resume_from_another_model_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main([*TINY, "--max-steps", "2", "--eval-every", "2", "--out", str(out)]) == 0
    assert train_main(["--model", "llama-tiny", "--batch-size", "4", "--block-size", "32", "--max-steps", "4",
                       "--out", str(out), "--resume"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def launch(out: Path, steps: int, resume: bool) -> subprocess.Popen:
    args = [sys.executable, "-m", "minitransformer.cli", "train", *TINY, "--max-steps", str(steps),
            "--eval-every", "5", "--out", str(out)] + (["--resume"] if resume else [])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_run(tmp_path):
    """A real training process, killed with SIGKILL at random moments, resumed each time: the losses of
    every step equal those of a run never interrupted, bit for bit (CPU, fp32)."""
    steps = 150
    clean = tmp_path / "clean"
    start = time.perf_counter()
    assert launch(clean, steps, resume=False).wait(timeout=300) == 0
    duration = time.perf_counter() - start  # start-up (imports) plus training
    killed, rng, kills = tmp_path / "killed", random.Random(0), 0
    proc = launch(killed, steps, resume=False)
    for _ in range(3):  # three kills, each at a random moment of a run, start-up included
        time.sleep(rng.uniform(0.4, 0.9) * duration)
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        proc = launch(killed, steps, resume=True)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert kills >= 1, "the run finished before any kill: lengthen it"
    assert [r["train_loss"] for r in metrics(killed)] == [r["train_loss"] for r in metrics(clean)]
    assert [r["val_loss"] for r in metrics(killed)] == [r["val_loss"] for r in metrics(clean)]
