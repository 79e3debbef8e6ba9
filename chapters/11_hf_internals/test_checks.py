"""Checks for chapter 11. References: the ``safetensors`` library (``safe_open``, ``save_file``,
``load_file``), ``huggingface_hub`` (``snapshot_download`` and ``try_to_load_from_cache``, offline,
on a cache laid out in a temporary folder), and what transformers' ``save_pretrained`` writes and
its Auto mappings choose. Nothing is downloaded."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from minitransformer.exercises import expect_close, expect_equal

TENSORS = {
    "f32 (2, 3)": torch.randn(2, 3, generator=torch.Generator().manual_seed(0)),
    "f16 (4,)": torch.randn(4, generator=torch.Generator().manual_seed(1)).half(),
    "bf16 (3, 2, 2)": torch.randn(3, 2, 2, generator=torch.Generator().manual_seed(2)).bfloat16(),
    "i64 (5,)": torch.tensor([0, -1, 2**40, 7, -(2**62)]),
    "f32 scalar ()": torch.tensor(3.25),
}


@pytest.fixture(scope="module")
def st_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("st") / "mixed.safetensors"
    save_file(TENSORS, str(path), metadata={"format": "pt", "note": "chapter 11"})
    return path


@pytest.fixture(scope="module")
def hf_gpt2_dirs(tmp_path_factory) -> dict[str, Path]:
    """A tiny random GPT2LMHeadModel saved by transformers, whole and in shards of at most 20 KB."""
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    root = tmp_path_factory.mktemp("gpt2")
    model.save_pretrained(root / "single")
    model.save_pretrained(root / "sharded", max_shard_size="20KB")
    return {"single": root / "single", "sharded": root / "sharded", "model": model}


# ---- 11.1 --------------------------------------------------------------------------------------------

def test_11_1_header_matches_safe_open(ex, st_file):
    header = ex.read_safetensors_header(st_file)
    with safe_open(str(st_file), framework="pt") as f:
        names, metadata = set(f.keys()), f.metadata()
        expect_equal(set(header) - {"__metadata__"}, names, exercise="11.1", case="tensor names vs safe_open.keys()")
        expect_equal(header.get("__metadata__"), metadata, exercise="11.1", case="'__metadata__' vs safe_open.metadata()")
        for name in names:
            view = f.get_slice(name)
            entry = header[name]
            expect_equal(entry["dtype"], view.get_dtype(), exercise="11.1", case=f"{name}: dtype")
            expect_equal(list(entry["shape"]), list(view.get_shape()), exercise="11.1", case=f"{name}: shape")
            begin, end = entry["data_offsets"]
            size = TENSORS[name].numel() * TENSORS[name].element_size()
            expect_equal(end - begin, size, exercise="11.1", case=f"{name}: data_offsets span numel * bytes per element")


def test_11_1_header_of_a_transformers_checkpoint(ex, hf_gpt2_dirs):
    path = hf_gpt2_dirs["single"] / "model.safetensors"
    header = ex.read_safetensors_header(path)
    with safe_open(str(path), framework="pt") as f:
        expect_equal(sorted(k for k in header if k != "__metadata__"), sorted(f.keys()), exercise="11.1",
                     case="GPT2LMHeadModel.save_pretrained's model.safetensors: tensor names")


# ---- 11.2 --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(TENSORS))
def test_11_2_load_tensor_matches_safe_open(ex, st_file, name):
    got = ex.load_tensor(st_file, name)
    with safe_open(str(st_file), framework="pt") as f:
        expected = f.get_tensor(name)
    expect_equal(got, expected, exercise="11.2", case=f"{name!r} vs safe_open(...).get_tensor, bit for bit")


def test_11_2_load_tensor_from_a_transformers_checkpoint(ex, hf_gpt2_dirs):
    path = hf_gpt2_dirs["single"] / "model.safetensors"
    got = ex.load_tensor(path, "transformer.h.1.attn.c_attn.weight")
    expected = hf_gpt2_dirs["model"].transformer.h[1].attn.c_attn.weight.detach()
    expect_equal(got, expected, exercise="11.2", case="transformer.h.1.attn.c_attn.weight vs the model that saved it")


def test_11_2_unknown_name_raises_key_error(ex, st_file):
    with pytest.raises(KeyError):
        ex.load_tensor(st_file, "no.such.weight")


# ---- 11.3 --------------------------------------------------------------------------------------------

def test_11_3_shard_for_every_tensor(ex, hf_gpt2_dirs):
    folder = hf_gpt2_dirs["sharded"]
    shards = sorted(folder.glob("*.safetensors"))
    assert len(shards) > 1, "the reference checkpoint should be sharded"
    for shard in shards:  # the truth: open every shard and see what it holds
        with safe_open(str(shard), framework="pt") as f:
            for name in f.keys():
                got = ex.shard_for(folder / "model.safetensors.index.json", name)
                expect_equal(got, shard.name, exercise="11.3", case=f"{name} (transformers' max_shard_size='20KB')")


def test_11_3_unknown_name_raises_key_error(ex, hf_gpt2_dirs):
    with pytest.raises(KeyError):
        ex.shard_for(hf_gpt2_dirs["sharded"] / "model.safetensors.index.json", "no.such.weight")


# ---- 11.4 --------------------------------------------------------------------------------------------

COMMIT_A, COMMIT_B = "a" * 40, "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory) -> Path:
    """A hub cache laid out by hand: org/tiny at two commits (main -> A, tag v1.0 -> B) and gpt2 (no org)."""
    home = tmp_path_factory.mktemp("hf_home")
    for repo_id, refs in (("some-org/tiny", {"main": COMMIT_A, "v1.0": COMMIT_B}), ("gpt2", {"main": COMMIT_B})):
        repo = home / "hub" / ("models--" + repo_id.replace("/", "--"))
        (repo / "blobs").mkdir(parents=True)
        (repo / "refs").mkdir()
        for ref, commit in refs.items():
            (repo / "refs" / ref).write_text(commit)
            snapshot = repo / "snapshots" / commit
            snapshot.mkdir(parents=True, exist_ok=True)
            data = json.dumps({"model_type": "gpt2", "commit": commit}).encode()
            blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
            blob.write_bytes(data)
            (snapshot / "config.json").symlink_to(os.path.relpath(blob, snapshot))
    return home


@pytest.mark.parametrize("repo_id, revision", [("some-org/tiny", "main"), ("some-org/tiny", "v1.0"),
                                               ("some-org/tiny", COMMIT_B), ("gpt2", "main")])
def test_11_4_hub_cache_path_matches_huggingface_hub(ex, hf_home, repo_id, revision):
    from huggingface_hub import snapshot_download, try_to_load_from_cache

    cache = hf_home / "hub"
    expected = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=True))
    got = ex.hub_cache_path(hf_home, repo_id, revision)
    expect_equal(Path(got), expected, exercise="11.4",
                 case=f"{repo_id} at {revision!r}, vs snapshot_download(local_files_only=True)")
    config = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache, revision=revision)
    expect_equal(Path(got) / "config.json", Path(config), exercise="11.4",
                 case=f"{repo_id} at {revision!r}: config.json vs try_to_load_from_cache")


def test_11_4_unknown_revision_raises_file_not_found(ex, hf_home):
    with pytest.raises(FileNotFoundError):
        ex.hub_cache_path(hf_home, "some-org/tiny", "no-such-branch")


# ---- 11.5 --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def auto():
    """transformers' own Auto mappings (config class -> model class) and a registry made of its classes."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.auto import modeling_auto

    registry = {
        "gpt2": {"GPT2LMHeadModel": transformers.GPT2LMHeadModel, "GPT2Model": transformers.GPT2Model},
        "bert": {"BertModel": transformers.BertModel, "BertForMaskedLM": transformers.BertForMaskedLM,
                 "BertForSequenceClassification": transformers.BertForSequenceClassification},
    }
    return transformers, modeling_auto, registry


@pytest.mark.parametrize("case", ["gpt2, GPT2LMHeadModel", "bert, BertForMaskedLM", "bert, no architectures",
                                  "bert, an unknown name first"])
def test_11_5_pick_class_agrees_with_transformers_auto_mappings(ex, auto, case):
    transformers, modeling_auto, registry = auto
    if case.startswith("gpt2"):
        config = transformers.GPT2Config(architectures=["GPT2LMHeadModel"])
        expected = modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING[transformers.GPT2Config]
    elif case == "bert, no architectures":
        config = transformers.BertConfig()
        expected = modeling_auto.MODEL_MAPPING[transformers.BertConfig]  # the family's default: the base model
    else:
        names = ["BertForMaskedLM"] if case == "bert, BertForMaskedLM" else ["BertForPreTrainingX", "BertForMaskedLM"]
        config = transformers.BertConfig(architectures=names)
        expected = modeling_auto.MODEL_FOR_MASKED_LM_MAPPING[transformers.BertConfig]
    config_dict = json.loads(config.to_json_string())  # what config.json holds
    got = ex.pick_class(config_dict, registry)
    expect_equal(got, expected, exercise="11.5", case=case)


def test_11_5_pick_class_with_our_registry(ex, hf_gpt2_dirs):
    from minitransformer.loading import REGISTRY, from_pretrained

    ours = {mt: {a: fam.model_class([a])[1] for a in fam.architectures} for mt, fam in REGISTRY.items()}
    config_dict = json.loads((hf_gpt2_dirs["single"] / "config.json").read_text())
    got = ex.pick_class(config_dict, ours)
    expect_equal(got, type(from_pretrained(hf_gpt2_dirs["single"])), exercise="11.5",
                 case="a GPT2LMHeadModel config.json with minitransformer's registry: the class from_pretrained builds")


@pytest.mark.parametrize("config", [{"model_type": "mamba-42"}, {"architectures": ["GPT2LMHeadModel"]}],
                         ids=["unknown model_type", "no model_type"])
def test_11_5_unknown_model_type_lists_the_supported_ones(ex, auto, config):
    with pytest.raises(ValueError, match=r"(?s)(bert.*gpt2|gpt2.*bert)"):
        ex.pick_class(config, auto[2])


# ---- 11.6 --------------------------------------------------------------------------------------------

def test_11_6_safetensors_reads_your_file(ex, tmp_path):
    path = tmp_path / "mine.safetensors"
    ex.save_safetensors(TENSORS, path, metadata={"format": "pt", "author": "me"})
    loaded = load_file(str(path))
    expect_equal(sorted(loaded), sorted(TENSORS), exercise="11.6", case="tensor names, via safetensors.torch.load_file")
    for name, tensor in TENSORS.items():
        expect_equal(loaded[name], tensor, exercise="11.6", case=f"{name!r}, via safetensors.torch.load_file")
    with safe_open(str(path), framework="pt") as f:
        expect_equal(f.metadata(), {"format": "pt", "author": "me"}, exercise="11.6", case="metadata via safe_open")
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
    expect_equal(n % 8, 0, exercise="11.6", case="header length padded to a multiple of 8")


def test_11_6_transformers_loads_a_checkpoint_you_wrote(ex, hf_gpt2_dirs, tmp_path):
    import transformers

    reference = hf_gpt2_dirs["model"]
    state = {k: v for k, v in reference.state_dict().items() if k != "lm_head.weight"}  # tied: saved once
    (tmp_path / "config.json").write_text((hf_gpt2_dirs["single"] / "config.json").read_text())
    ex.save_safetensors(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    model = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[1, 4, 9, 16, 25, 36]])
    with torch.no_grad():
        expect_close(model(ids).logits, reference(ids).logits, exercise="11.6",
                     case="GPT2LMHeadModel.from_pretrained on your model.safetensors: same logits")
