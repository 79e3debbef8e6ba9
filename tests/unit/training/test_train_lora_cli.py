"""``minitransformer train --lora-r``: a LoRA fine-tune of a model our trainer trained, its adapter loaded by peft."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import minitransformer
from minitransformer.lora import load_adapter, trainable_parameters
from minitransformer.training.cli import train_main

TINY = ["--batch-size", "8", "--block-size", "32"]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A gpt2-tiny trained from scratch for 40 steps (the base the adapters fine-tune)."""
    out = tmp_path_factory.mktemp("base") / "run"
    assert train_main(["--model", "gpt2-tiny", *TINY, "--max-steps", "40", "--eval-every", "40", "--lr", "3e-3",
                       "--out", str(out)]) == 0
    return out


def results(out: Path) -> dict:
    return json.loads((out / "train_result.json").read_text())


def test_a_lora_run_trains_under_2_percent_and_peft_loads_its_adapter(base, tmp_path, capsys):
    out = tmp_path / "lora"
    assert train_main(["--model", str(base), "--lora-r", "2", *TINY, "--max-steps", "30", "--eval-every", "30",
                       "--lr", "1e-2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "LoRA " in printed and "adapter_model.safetensors" in printed
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "metrics.jsonl"):
        assert (out / name).is_file(), name
    assert not (out / "model.safetensors").exists()  # the base is unchanged: only the adapter is the run's
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 2 and config["lora_alpha"] == 4 and config["target_modules"] == ["c_attn"]
    assert config["base_model_name_or_path"] == str(base)

    ours = load_adapter(minitransformer.from_pretrained(base), out).eval()
    trainable, total = trainable_parameters(ours)
    assert 0 < trainable / total < 0.02, (trainable, total)
    assert results(out)["best_val_loss"] < results(base)["best_val_loss"]  # the adapters learned something

    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    theirs = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(base), out).eval()
    ids = torch.tensor([minitransformer.load_tokenizer(base / "tokenizer.json").encode("def f(x):\n    return x")])
    with torch.no_grad():
        a, b = ours(ids).logits, theirs(input_ids=ids).logits
        plain = minitransformer.from_pretrained(base)(ids).logits
    assert (a - b).abs().max().item() <= 1e-5
    assert (a - plain).abs().max().item() > 1e-3  # the trained adapter changes the outputs


@pytest.mark.parametrize("extra, message", [
    (["--model", "gpt2-tiny"], "must be a folder with config.json and model.safetensors"),
    (["--lora-targets", "q_lin"], "q_lin"),
    (["--lora-r", "0"], "r"),
    (["--tokenizer", "char"], "base model's own tokenizer"),
])
def test_bad_lora_input_is_one_line_and_exit_2(base, tmp_path, capsys, extra, message):
    args = ["--model", str(base), "--lora-r", "2", *TINY, "--max-steps", "2", "--out", str(tmp_path / "run")]
    args = args + extra  # later flags win
    assert train_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("minitransformer train: error:") and message in err and "Traceback" not in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
