"""Bad checkpoints end in an error that names the file (or the key) and says what to do (issue #10).

Each test corrupts one file of a tiny GPT-2 saved by minitransformer itself: nothing is downloaded
and transformers is not needed (``tests/parity/test_loading_bad_input.py`` compares with it).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from minitransformer.loading import (
    Checkpoint,
    ConfigError,
    LoadingError,
    WeightMap,
    check_config,
    convert,
    from_pretrained,
    save_pretrained,
)
from minitransformer.loading.transforms import FUSED_QKV_CONV1D
from minitransformer.models.base import Config
from minitransformer.models.bert import BertConfig
from minitransformer.models.gpt2 import GPT2, GPT2Config
from minitransformer.models.llama import LlamaConfig, MistralConfig, Qwen2Config
from minitransformer.models.t5 import T5Config
from minitransformer.testing import assert_close, seed_weights

WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
SHARD = "model-00001-of-00001.safetensors"
IDS = torch.tensor([[1, 5, 9, 2, 33, 7]])


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A tiny GPT-2 (C=32, H=4, 2 layers) saved once by our own save_pretrained."""
    model = GPT2(GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4))
    seed_weights(model, 0, std=0.1)
    return save_pretrained(model, tmp_path_factory.mktemp("gpt2") / "tiny")


@pytest.fixture
def ckpt(saved, tmp_path) -> Path:
    """A fresh copy of the tiny GPT-2 for one test to break."""
    return Path(shutil.copytree(saved, tmp_path / "ckpt"))


def edit_weights(directory: Path, edit) -> None:
    weights = load_file(directory / WEIGHTS)
    edit(weights)
    save_file(weights, directory / WEIGHTS, metadata={"format": "pt"})


def edit_config(directory: Path, **changes) -> None:
    config = json.loads((directory / "config.json").read_text())
    for key, value in changes.items():
        if value is _DROP:
            config.pop(key, None)
        else:
            config[key] = value
    (directory / "config.json").write_text(json.dumps(config))


_DROP = object()


def shard(directory: Path) -> None:
    """Turn the single file into a one-shard checkpoint with an index, as transformers writes them."""
    (directory / WEIGHTS).rename(directory / SHARD)
    names = load_file(directory / SHARD)
    (directory / INDEX).write_text(json.dumps({"metadata": {}, "weight_map": {n: SHARD for n in names}}))


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids).logits


# ---- 1. dtypes: one dtype for the whole model, as transformers; no integer / complex weights -----------

def test_one_fp16_norm_in_an_fp32_file_loads_as_fp32(ckpt, saved):
    edit_weights(ckpt, lambda w: w.update({"transformer.h.0.ln_1.weight": w["transformer.h.0.ln_1.weight"].half()}))
    model = from_pretrained(ckpt)
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # config.json says float32
    reference = from_pretrained(saved)
    with torch.no_grad():
        reference.transformer.h[0].attn_norm.weight.copy_(reference.transformer.h[0].attn_norm.weight.half())
    assert_close(logits(model), logits(reference), what="fp32 model with one fp16-rounded norm")


def test_without_a_config_dtype_the_first_float_weight_decides(ckpt):
    edit_config(ckpt, dtype=_DROP)
    first = sorted(load_file(ckpt / WEIGHTS))[0]  # transformers reads the first name, sorted
    edit_weights(ckpt, lambda w: w.update({first: w[first].half()}))
    model = from_pretrained(ckpt)
    assert {p.dtype for p in model.parameters()} == {torch.float16}


def test_config_dtype_then_torch_dtype(ckpt):
    edit_config(ckpt, dtype=_DROP, torch_dtype="bfloat16")
    assert {p.dtype for p in from_pretrained(ckpt).parameters()} == {torch.bfloat16}
    edit_config(ckpt, dtype="float16")  # the newer key wins, as in transformers
    assert {p.dtype for p in from_pretrained(ckpt).parameters()} == {torch.float16}
    assert {p.dtype for p in from_pretrained(ckpt, dtype="float32").parameters()} == {torch.float32}


def test_a_config_dtype_that_is_not_a_float_dtype_names_the_key(ckpt):
    edit_config(ckpt, dtype="int8")
    with pytest.raises(ConfigError) as err:
        from_pretrained(ckpt)
    message = str(err.value)
    assert str(ckpt / "config.json") in message and "dtype='int8'" in message and '"bfloat16"' in message


@pytest.mark.parametrize("bad", [torch.arange(32, dtype=torch.int64), torch.ones(32, dtype=torch.bool),
                                 torch.complex(torch.ones(32), torch.ones(32))], ids=["int64", "bool", "complex"])
def test_non_float_tensor_in_a_float_parameter_is_refused(ckpt, bad):
    edit_weights(ckpt, lambda w: w.update({"transformer.h.0.ln_1.weight": bad}))
    with pytest.raises(LoadingError) as err:
        from_pretrained(ckpt)
    message = str(err.value)
    dtype = str(bad.dtype).removeprefix("torch.")
    assert f"transformer.h.0.ln_1.weight in {WEIGHTS} is {dtype}" in message
    assert "transformer.h.0.attn_norm.weight is a floating-point parameter" in message
    assert "save the checkpoint again in float32, bfloat16 or float16" in message
    assert len(err.value.wrong_dtype) == 1


def test_save_writes_the_weights_dtype_into_config(saved, tmp_path):
    half = from_pretrained(saved, dtype="bfloat16")
    save_pretrained(half, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and "torch_dtype" not in config
    assert {p.dtype for p in from_pretrained(tmp_path).parameters()} == {torch.bfloat16}


# ---- 2. config.json and the shard index: JSON, shape of the document -----------------------------------

def test_invalid_json_in_config_names_file_line_and_column(ckpt):
    (ckpt / "config.json").write_text('{"model_type": "gpt2",\n "n_head": 4,,\n}')
    with pytest.raises(LoadingError) as err:
        from_pretrained(ckpt)
    message = str(err.value)
    assert str(ckpt / "config.json") in message and "line 2, column 14" in message
    assert "Fix it there by hand" in message and err.value.path == ckpt / "config.json"


def test_config_that_is_not_utf8_names_the_file(ckpt):
    (ckpt / "config.json").write_bytes(b"\x80\x81{}")
    with pytest.raises(LoadingError, match=r"config\.json is not UTF-8 text.*Download it again"):
        from_pretrained(ckpt)


def test_config_that_is_a_list_names_the_file(ckpt):
    (ckpt / "config.json").write_text("[1, 2]")
    with pytest.raises(LoadingError, match=r"config\.json holds a JSON list, where an object .* is expected"):
        from_pretrained(ckpt)


@pytest.mark.parametrize("key, value, needle", [
    ("model_type", ["gpt2"], r"model_type=\['gpt2'\], where a string is expected.*supported: .*gpt2"),
    ("architectures", "GPT2LMHeadModel", r"architectures='GPT2LMHeadModel'.*\"architectures\": \[\"GPT2LMHeadModel\"\]"),
    ("model_type", "mamba9000", r"model_type 'mamba9000' is not supported; supported model types: .*gpt2"),
])
def test_config_keys_of_the_wrong_kind_raise_config_error(ckpt, key, value, needle):
    edit_config(ckpt, **{key: value})
    with pytest.raises(ConfigError, match=needle) as err:
        from_pretrained(ckpt)
    assert str(ckpt / "config.json") in str(err.value)
    assert isinstance(err.value, ValueError) and isinstance(err.value, LoadingError)  # either except catches it


def test_invalid_json_in_the_index_names_file_line_and_column(ckpt):
    shard(ckpt)
    (ckpt / INDEX).write_text('{"weight_map": {\n  "a": "b",\n}}')
    with pytest.raises(LoadingError) as err:
        from_pretrained(ckpt)
    assert str(ckpt / INDEX) in str(err.value) and "line 3, column 1" in str(err.value)


@pytest.mark.parametrize("index", [{}, {"weight_map": []}, {"weight_map": {}}, {"weight_map": {"a": 3}}])
def test_index_without_a_weight_map_object_names_the_file(ckpt, index):
    shard(ckpt)
    (ckpt / INDEX).write_text(json.dumps(index))
    with pytest.raises(LoadingError, match=r'index\.json has .*"weight_map".*Download it again'):
        Checkpoint(ckpt)


# ---- 3. truncated or corrupt weight files ---------------------------------------------------------------

@pytest.mark.parametrize("cut", [lambda n: n // 2, lambda n: 20, lambda n: 0], ids=["half", "20-bytes", "empty"])
def test_truncated_safetensors_names_the_file(ckpt, cut):
    data = (ckpt / WEIGHTS).read_bytes()
    (ckpt / WEIGHTS).write_bytes(data[: cut(len(data))])
    with pytest.raises(LoadingError) as err:
        from_pretrained(ckpt)
    message = str(err.value)
    assert str(ckpt / WEIGHTS) in message and "truncated or corrupt" in message and "Download it again" in message


def test_truncated_bin_names_the_file(ckpt):
    torch.save(load_file(ckpt / WEIGHTS), ckpt / "pytorch_model.bin")
    (ckpt / WEIGHTS).unlink()
    assert {p.dtype for p in from_pretrained(ckpt).parameters()} == {torch.float32}  # intact, it loads
    data = (ckpt / "pytorch_model.bin").read_bytes()
    (ckpt / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(LoadingError, match=r"pytorch_model\.bin cannot be read by torch\.load .*truncated"):
        from_pretrained(ckpt)


def test_bin_that_is_no_pickle_of_tensors_is_refused_without_suggesting_weights_only_false(ckpt):
    (ckpt / WEIGHTS).unlink()
    (ckpt / "pytorch_model.bin").write_bytes(b"garbage" * 10)
    with pytest.raises(LoadingError) as err:
        from_pretrained(ckpt)
    message = str(err.value)
    assert message.startswith(f"{ckpt / 'pytorch_model.bin'} cannot be unpickled with weights_only=True (")
    assert "weights_only=False" not in message and "could run code" in message


def test_bin_that_is_a_training_checkpoint_names_the_entries(ckpt):
    torch.save({"state_dict": load_file(ckpt / WEIGHTS), "epoch": 3}, ckpt / "pytorch_model.bin")
    (ckpt / WEIGHTS).unlink()
    with pytest.raises(LoadingError, match=r"entries that are not tensors: 'state_dict' \(dict\), 'epoch' \(int\)"):
        from_pretrained(ckpt)


def test_a_tensor_in_two_shards_is_refused(ckpt):
    weights = load_file(ckpt / WEIGHTS)
    save_file(weights, ckpt / "model-00001-of-00002.safetensors")
    save_file({"transformer.wte.weight": weights["transformer.wte.weight"]}, ckpt / "model-00002-of-00002.safetensors")
    (ckpt / WEIGHTS).unlink()
    index = {"weight_map": {n: "model-00001-of-00002.safetensors" for n in weights}}
    index["weight_map"]["transformer.wte.weight"] = "model-00002-of-00002.safetensors"
    (ckpt / INDEX).write_text(json.dumps(index))
    with pytest.raises(LoadingError, match=r"00002\.safetensors holds 'transformer\.wte\.weight', which "
                                           r"model-00001-of-00002\.safetensors holds too"):
        Checkpoint(ckpt)


# ---- 4. a fused c_attn that does not split into q, k, v --------------------------------------------------

@pytest.mark.parametrize("key, shape, expected", [
    ("transformer.h.0.attn.c_attn.weight", (32, 95), (32, 96)),    # does not split into 3
    ("transformer.h.1.attn.c_attn.weight", (32, 99), (32, 96)),    # splits into 3, each of the wrong size
    ("transformer.h.0.attn.c_attn.bias", (95,), (96,)),
])
def test_fused_c_attn_of_the_wrong_shape_names_key_and_both_shapes(ckpt, key, shape, expected):
    edit_weights(ckpt, lambda w: w.update({key: torch.zeros(shape)}))
    with pytest.raises(LoadingError) as err:
        from_pretrained(ckpt)
    assert f"{key}: checkpoint gives {shape}, model expects {expected}" in str(err.value)
    assert len(err.value.mismatched) == 1 and not err.value.missing  # q, k, v are not "missing" on top


def test_to_ours_without_a_model_still_names_the_fused_key():
    wmap = WeightMap(rules=(convert("h.{i}.c_attn.weight", ("h.{i}.q", "h.{i}.k", "h.{i}.v"), FUSED_QKV_CONV1D),))
    state = {"h.0.c_attn.weight": torch.zeros(4, 13)}
    with pytest.raises(LoadingError, match=r"h\.0\.c_attn\.weight: fused_qkv_conv1d cannot convert it: "
                                           r"cannot split dim 0 of shape \(13, 4\) into 3"):
        wmap.to_ours(state, state.__getitem__)


# ---- 5. every file stays inside the checkpoint -----------------------------------------------------------

@pytest.mark.parametrize("entry", ["../outside.safetensors", "/tmp/outside.safetensors", "..\\outside.safetensors",
                                   "sub/../../outside.safetensors", ""])
def test_index_entries_outside_the_directory_are_refused(ckpt, entry):
    shard(ckpt)
    shutil.copy(ckpt / SHARD, ckpt.parent / "outside.safetensors")
    names = load_file(ckpt / SHARD)
    (ckpt / INDEX).write_text(json.dumps({"weight_map": {n: entry for n in names}}))
    with pytest.raises(LoadingError) as err:
        from_pretrained(ckpt)
    message = str(err.value)
    assert message.startswith(f"{ckpt / INDEX} names {entry!r}, which is not a file inside the checkpoint")
    assert "fix the name, or move that file in" in message


@pytest.mark.parametrize("name", ["config.json", WEIGHTS, SHARD, INDEX])
def test_symbolic_links_out_of_the_directory_are_refused(ckpt, tmp_path, name):
    if name in (SHARD, INDEX):
        shard(ckpt)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (ckpt / name).rename(outside / name)
    (ckpt / name).symlink_to(outside / name)
    with pytest.raises(LoadingError) as err:
        from_pretrained(ckpt)
    message = str(err.value)
    assert f"leads to {(outside / name).resolve()}, outside the checkpoint directory" in message
    assert f"Copy the file into {ckpt}" in message
    if name == SHARD:  # named by the index: the index and its entry are both named
        assert message.startswith(f"{ckpt / INDEX} names {SHARD!r}")


def test_links_inside_the_directory_and_a_linked_directory_are_fine(ckpt, tmp_path, saved):
    (ckpt / WEIGHTS).rename(ckpt / "real.safetensors")
    (ckpt / WEIGHTS).symlink_to("real.safetensors")
    (tmp_path / "link").symlink_to(ckpt, target_is_directory=True)
    assert_close(logits(from_pretrained(tmp_path / "link")), logits(from_pretrained(saved)), what="via links")


def test_hub_snapshot_links_into_blobs_are_fine(saved, tmp_path, monkeypatch):
    import hashlib

    repo = tmp_path / "hub" / "models--some-org--tiny"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    for file in saved.iterdir():
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        blob.write_bytes(file.read_bytes())
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    expected = logits(from_pretrained(saved))
    assert_close(logits(from_pretrained("some-org/tiny")), expected, what="hub id")
    assert_close(logits(from_pretrained(snapshot)), expected, what="snapshot folder")


# ---- 6. config values: positive ints, heads that divide --------------------------------------------------

@pytest.mark.parametrize("field, value, needle", [
    ("n_head", 0, "n_head=0 must be a positive int"),
    ("n_head", None, "n_head=None: expected an int"),
    ("n_head", 4.0, "n_head=4.0 must be an int (a size of the model): write 4, not 4.0"),
    ("n_head", True, "n_head=True must be a positive int"),
    ("n_embd", -32, "n_embd=-32 must be a positive int"),
    ("vocab_size", "64", "vocab_size='64' must be a positive int"),
    ("n_head", 5, "n_embd=32 is not divisible by n_head=5: each head gets n_embd / n_head channels; "
                  "choose a head count that divides 32 (1, 2, 4, 8, 16, 32)"),
    ("tie_word_embeddings", "false", "tie_word_embeddings='false' must be a bool (true or false in config.json)"),
    ("layer_norm_epsilon", "1e-5", "layer_norm_epsilon='1e-5' must be a finite number"),
])
def test_bad_config_values_name_config_json_and_the_field(ckpt, field, value, needle):
    edit_config(ckpt, **{field: value})
    with pytest.raises(ConfigError) as err:
        from_pretrained(ckpt)
    message = str(err.value)
    assert message.startswith(str(ckpt / "config.json")) and needle in message, message
    assert "Fix that value in config.json" in message


# Built inside the tests, not at collection: once Config.__post_init__ runs check_config, building a bad
# config is itself the error.
VALID = [(GPT2Config, {}), (LlamaConfig, {}), (MistralConfig, {}), (Qwen2Config, {}), (BertConfig, {}),
         (T5Config, {}), (LlamaConfig, dict(hidden_size=30, num_attention_heads=4, head_dim=8)),
         (T5Config, dict(d_model=30, d_kv=8, num_heads=4)), (Qwen2Config, dict(max_window_layers=0)),
         (GPT2Config, dict(n_inner=None, bos_token_id=-1)), (GPT2Config, dict(bos_token_id=None)),
         (LlamaConfig, dict(eos_token_id=[1, 2]))]


@pytest.mark.parametrize("cls, kwargs", VALID, ids=[f"{c.__name__}{k or ''}" for c, k in VALID])
def test_check_config_passes_the_presets_and_valid_corners(cls, kwargs):
    check_config(cls(**kwargs))


INVALID = [
    (LlamaConfig, dict(num_key_value_heads=3), "num_key_value_heads=3 must divide num_attention_heads=32"),
    (LlamaConfig, dict(hidden_size=30, num_attention_heads=4),
     "hidden_size=30 is not divisible by num_attention_heads=4: each head gets hidden_size / "
     "num_attention_heads channels; choose a head count that divides 30 (1, 2, 3, 5, 6, 10, 15, 30) or set head_dim"),
    (LlamaConfig, dict(head_dim=0), "head_dim=0 must be a positive int"),
    (T5Config, dict(d_kv=0), "d_kv=0 must be a positive int"),
    (T5Config, dict(num_decoder_layers=2.5), "num_decoder_layers=2.5 must be a positive int"),
    (BertConfig, dict(num_attention_heads=0), "num_attention_heads=0 must be a positive int"),
    (BertConfig, dict(type_vocab_size=0), "type_vocab_size=0 must be a positive int"),
    (Qwen2Config, dict(max_window_layers=-1), "max_window_layers=-1 must be a non-negative int"),
    (MistralConfig, dict(sliding_window=0), "sliding_window=0 must be a positive int"),
    (LlamaConfig, dict(rope_theta=float("nan")), "rope_theta=nan must be a finite number"),
]


@pytest.mark.parametrize("cls, kwargs, needle", INVALID, ids=[f"{c.__name__}{k}" for c, k, _ in INVALID])
def test_check_config_names_field_value_and_what_is_expected(cls, kwargs, needle):
    with pytest.raises(ValueError) as err:
        check_config(cls(**kwargs))
    assert needle in str(err.value), str(err.value)


def test_check_config_works_as_a_post_init_hook():
    @dataclass
    class Checked(Config):
        hidden_size: int = 32
        num_attention_heads: int = 4

        def __post_init__(self):
            check_config(self)

    assert Checked.from_dict({"num_attention_heads": 8}).num_attention_heads == 8
    with pytest.raises(ValueError, match="num_attention_heads=0 must be a positive int"):
        Checked.from_dict({"num_attention_heads": 0})
