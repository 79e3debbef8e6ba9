"""``minitransformer generate PATH "prompt"``: the text model.generate gives, streamed; bad input is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import minitransformer
from minitransformer.cli import main
from minitransformer.training.cli import train_main

PROMPT = "def f(x):"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "tiny"
    assert train_main(["--model", "gpt2-tiny", "--max-steps", "40", "--lr", "3e-3", "--batch-size", "8",
                       "--block-size", "32", "--out", str(out)]) == 0
    return out


def expected(run: Path, **options) -> str:
    model = minitransformer.from_pretrained(run, attn_implementation="sdpa")
    tok = minitransformer.load_tokenizer(run)
    ids = torch.tensor([tok.encode(PROMPT)])
    torch.manual_seed(options.pop("seed", 0))
    out = model.generate(ids, **options)
    return PROMPT + tok.decode(out[0, ids.shape[1]:].tolist(), skip_special_tokens=True)


@pytest.mark.parametrize("flags, options", [
    ([], dict(max_new_tokens=50, do_sample=False)),
    (["--max-new-tokens", "20", "--do-sample", "--temperature", "0.8", "--top-k", "20", "--seed", "3"],
     dict(max_new_tokens=20, do_sample=True, temperature=0.8, top_k=20, seed=3)),
    (["--max-new-tokens", "12", "--num-beams", "3"], dict(max_new_tokens=12, num_beams=3)),
])
def test_generate_prints_what_model_generate_gives(run, capsys, flags, options):
    capsys.readouterr()
    assert main(["generate", str(run), PROMPT, *flags]) == 0
    captured = capsys.readouterr()
    assert captured.out == expected(run, **options) + "\n"
    assert "tokens/s" in captured.err and "sdpa" in captured.err


@pytest.mark.slow
def test_generate_compile_prints_the_same_text(run, capsys):
    """--compile is generate(compile=True): the compiled decode step, token-identical to eager."""
    capsys.readouterr()
    assert main(["generate", str(run), PROMPT, "--compile", "--max-new-tokens", "12"]) == 0
    assert capsys.readouterr().out == expected(run, max_new_tokens=12) + "\n"


def test_bad_input_is_one_line_and_exit_2(run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["generate", str(tmp_path), PROMPT]) == 2
    err = capsys.readouterr().err
    assert err.startswith("minitransformer generate: error: cannot load") and "config.json" in err

    assert main(["generate", str(run), PROMPT, "--top-p", "2"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "top_p must be in (0, 1]" in captured.err  # refused before any text

    bert = tmp_path / "bert"
    assert train_main(["--model", "bert-tiny", "--max-steps", "2", "--block-size", "16", "--out", str(bert)]) == 0
    capsys.readouterr()
    assert main(["generate", str(bert), PROMPT]) == 2
    assert "does not generate text" in capsys.readouterr().err
