"""Loading through every door: the hub cache, sharded safetensors, .bin, dtypes, and saving back.

Models are tiny random transformers models saved with ``save_pretrained``; nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from minitransformer.loading import LoadingError, from_pretrained, save_pretrained  # noqa: E402
from minitransformer.models import GPT2, Llama  # noqa: E402
from minitransformer.testing import assert_close, seed_weights  # noqa: E402

pytestmark = pytest.mark.parity


def hf_gpt2(seed=0, **overrides):
    """A tiny GPT2LMHeadModel with the test's own seeded weights (not transformers' init)."""
    kwargs = dict(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0)
    kwargs.update(overrides)
    return seed_weights(transformers.GPT2LMHeadModel(transformers.GPT2Config(**kwargs)), seed, std=0.1).eval()


def hf_llama(seed=0, **overrides):
    """A tiny LlamaForCausalLM (GQA) with the test's own seeded weights."""
    kwargs = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64, bos_token_id=0, eos_token_id=0,
                  initializer_range=0.1)
    kwargs.update(overrides)
    return seed_weights(transformers.LlamaForCausalLM(transformers.LlamaConfig(**kwargs)), seed, std=0.1).eval()


IDS = torch.tensor([[1, 5, 9, 2, 33, 7], [4, 4, 60, 3, 2, 1]])


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids).logits


# ---- the hub cache ------------------------------------------------------------------------------------

def lay_out_hub_snapshot(cache: Path, repo_id: str, commit: str, source: Path, refs: tuple[str, ...]) -> None:
    """Copy a saved model into ``cache`` as huggingface_hub lays it out: blobs, snapshots, refs."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for file in source.iterdir():
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An offline HF_HOME holding some-org/some-model at two commits: main (seed 0) and v2 (seed 1)."""
    home = tmp_path / "hf_home"
    models = {}
    for seed, commit, refs in ((0, "a" * 40, ("main",)), (1, "b" * 40, ("v2",))):
        hf = hf_gpt2(seed)
        hf.save_pretrained(tmp_path / f"src{seed}")
        lay_out_hub_snapshot(home / "hub", "some-org/some-model", commit, tmp_path / f"src{seed}", refs)
        models[commit] = hf
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return models


def test_hub_id_resolves_through_the_cache(hub):
    model = from_pretrained("some-org/some-model")
    assert isinstance(model, GPT2)
    assert_close(logits(model), logits(hub["a" * 40]), what="main revision logits")


@pytest.mark.parametrize("revision", ["v2", "b" * 40])
def test_hub_revision(hub, revision):
    model = from_pretrained("some-org/some-model", revision=revision)
    assert_close(logits(model), logits(hub["b" * 40]), what=f"revision {revision} logits")


def test_hub_offline_and_not_cached_says_what_to_do(hub):
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        from_pretrained("some-org/not-there")


# ---- file formats -------------------------------------------------------------------------------------

def test_sharded_safetensors(tmp_path):
    hf = hf_llama()
    hf.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    assert_close(logits(from_pretrained(tmp_path)), logits(hf), what="sharded checkpoint logits")


def test_bin_checkpoint_through_weights_only(tmp_path):
    hf = hf_gpt2()
    hf.config.save_pretrained(tmp_path)
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    assert_close(logits(from_pretrained(tmp_path)), logits(hf), what=".bin checkpoint logits")


def test_base_model_checkpoint_without_prefix(tmp_path):
    """The hub's "gpt2" was saved from GPT2Model: keys have no ``transformer.`` prefix."""
    hf = hf_gpt2()
    hf.transformer.save_pretrained(tmp_path)  # GPT2Model: wte.weight, h.0..., no lm_head
    config = json.loads((tmp_path / "config.json").read_text())
    config["architectures"] = ["GPT2LMHeadModel"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert_close(logits(from_pretrained(tmp_path)), logits(hf), what="base-model checkpoint logits")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_loading_agrees_with_fp32(tmp_path, dtype):
    """bf16/fp16 weights and activations against fp32, on the logits, with a bound stated in eps.

    eps is the dtype's machine epsilon (bf16 7.8e-3, fp16 9.8e-4). Each rounding (of a weight when
    loading, of an activation after each matmul, norm, softmax, residual add) has relative error at
    most eps/2; a 2-layer model does about ten in sequence on the path to a logit, and independent
    errors add roughly in quadrature: sqrt(10) * eps/2 ~ 1.6 eps relative. So we require:

    - the error relative to the logits as a whole, ||half - fp32|| / ||fp32||, at most 4 eps;
    - every logit within 8 eps * max|fp32 logits| (single elements can be unlucky: a 2x margin more).

    Measured (seeds 0-2): bf16 relative 0.7-1.2e-2 (~1.5 eps), max 1.5-2.5e-2 (bound ~0.1);
    fp16 relative ~1e-3 (~1.2 eps). A scale-free bound matters: the library's fixed atol for
    bf16 (2e-2) is the right size for unit-scale values but not for logits of size ~1.7.
    """
    hf = hf_llama()
    hf.save_pretrained(tmp_path)
    full = from_pretrained(tmp_path)
    half = from_pretrained(tmp_path, dtype=dtype)
    assert all(p.dtype == dtype for p in half.parameters())
    a, b = logits(half), logits(full)
    assert a.dtype == dtype
    a, eps = a.float(), torch.finfo(dtype).eps
    assert (a - b).norm() / b.norm() <= 4 * eps
    assert_close(a, b, atol=8 * eps * b.abs().max().item(), rtol=0.0, what=f"{dtype} logits")


def test_dtype_by_name_and_device(tmp_path):
    hf_gpt2().save_pretrained(tmp_path)
    model = from_pretrained(tmp_path, dtype="bfloat16", device="cpu")
    assert model.transformer.wte.weight.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="float32"):
        from_pretrained(tmp_path, dtype="int8")


# ---- saving back --------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [hf_gpt2, lambda: hf_gpt2(tie_word_embeddings=False), hf_llama,
                                  lambda: hf_llama(tie_word_embeddings=True, rope_theta=500.0,
                                                   rope_scaling={"rope_type": "linear", "factor": 2.0})],
                         ids=["gpt2", "gpt2_untied", "llama", "llama_tied_scaled"])
def test_round_trip_transformers_loads_our_save(tmp_path, make):
    hf = make()
    hf.save_pretrained(tmp_path / "hf")
    ours = from_pretrained(tmp_path / "hf")
    ours.save_pretrained(tmp_path / "ours")
    back, info = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert type(back) is type(hf)
    assert_close(logits(back.eval()), logits(hf), what="transformers on our save")
    assert_close(logits(from_pretrained(tmp_path / "ours")), logits(hf), what="ours on our save")


def test_save_from_random_init_loads_in_transformers(tmp_path):
    from minitransformer.models import LlamaConfig

    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))
    save_pretrained(model, tmp_path)
    back, info = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert_close(logits(back.eval()), logits(model.eval()), what="random-init Llama in transformers")


# ---- bad checkpoints ----------------------------------------------------------------------------------

def test_unknown_model_type_lists_supported_types(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba9000"}))
    with pytest.raises(ValueError, match="mamba9000") as err:
        from_pretrained(tmp_path)
    for supported in ("gpt2", "llama", "mistral", "qwen2"):
        assert supported in str(err.value)


def test_missing_and_unexpected_weights_listed_by_name(tmp_path):
    from safetensors.torch import load_file, save_file

    hf_llama().save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["model.layers.1.mlp.up_proj.weight"], weights["model.norm.weight"]
    weights["model.layers.0.self_attn.extra.weight"] = torch.zeros(2)
    weights["lm_head.weight"] = torch.zeros(63, 32)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(LoadingError) as err:
        from_pretrained(tmp_path)
    message = str(err.value)
    assert "model.layers.1.mlp.up_proj.weight" in message and "model.norm.weight" in message
    assert "model.layers.0.self_attn.extra.weight" in message
    assert "lm_head.weight" in message and "(63, 32)" in message and "(64, 32)" in message
    assert err.value.missing and err.value.unexpected and err.value.mismatched


def test_missing_layer_when_config_says_more_layers(tmp_path):
    hf_gpt2().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["n_layer"] = 3
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(LoadingError, match=r"transformer\.h\.2\.self_attn\.q_proj\.weight"):
        from_pretrained(tmp_path)
