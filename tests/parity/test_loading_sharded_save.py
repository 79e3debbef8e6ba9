"""Sharded saving: our ``save_pretrained(max_shard_size=...)`` writes what transformers writes.

A tiny random GPT-2 built by transformers, loaded through ours, saved in several shards; transformers
loads the shards with nothing missing, unexpected or mismatched, and so do we.
"""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from minitransformer.loading import from_pretrained, save_pretrained  # noqa: E402
from minitransformer.testing import assert_close, seed_weights  # noqa: E402

pytestmark = pytest.mark.parity

IDS = torch.tensor([[1, 5, 9, 2, 33, 7], [4, 4, 60, 3, 2, 1]])


@pytest.fixture
def ours(tmp_path):
    config = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                     bos_token_id=0, eos_token_id=0)
    seed_weights(transformers.GPT2LMHeadModel(config), seed=0, std=0.1).save_pretrained(tmp_path / "hf")
    return from_pretrained(tmp_path / "hf")


def test_shards_load_in_transformers_and_back(ours, tmp_path):
    out = ours.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")  # the weights are ~70 KB

    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    assert shards == [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    assert sorted(p.name for p in out.glob("*.safetensors")) == shards
    assert index["metadata"]["total_size"] > 20_000

    hf, info = transformers.AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    with torch.no_grad():
        expected = ours(IDS).logits
        assert_close(hf.eval()(IDS).logits, expected, atol=1e-5, rtol=0)
        assert_close(from_pretrained(out)(IDS).logits, expected, atol=1e-5, rtol=0)


def test_saving_again_replaces_the_old_layout(ours, tmp_path):
    save_pretrained(ours, tmp_path / "out", max_shard_size=20_000)
    save_pretrained(ours, tmp_path / "out")  # one file now: the shards and their index must go
    # (generation_config.json: the checkpoint transformers saved has one, and it is written back)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "generation_config.json",
                                                                   "model.safetensors"]


@pytest.mark.parametrize("size", ["5 parsecs", "20XB", "big"])
def test_bad_max_shard_size_says_what_to_pass(ours, tmp_path, size):
    with pytest.raises(ValueError, match="max_shard_size=.*is not a size.*'2GB'"):
        save_pretrained(ours, tmp_path / "bad", max_shard_size=size)
