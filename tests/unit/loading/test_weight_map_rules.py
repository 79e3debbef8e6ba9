"""The weight-map machinery on hand-made tensors: rules, placeholders, prefixes, errors, inverses."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from minitransformer.loading import (
    Checkpoint,
    LoadingError,
    WeightMap,
    convert,
    empty_weights,
    get_family,
    load_weights,
    rename,
    resolve_checkpoint_dir,
)
from minitransformer.loading.transforms import CONV1D_TRANSPOSE, FUSED_QKV_BIAS, FUSED_QKV_CONV1D
from minitransformer.testing import assert_close


class Tiny(nn.Module):
    """Two layers of q/k/v/o, a tied head: the shape of a real family in miniature."""

    def __init__(self, C: int = 4, layers: int = 2):
        super().__init__()
        self.emb = nn.Embedding(10, C)
        self.h = nn.ModuleList(nn.ModuleDict({p: nn.Linear(C, C) for p in ("q", "k", "v", "o")})
                               for _ in range(layers))
        self.head = nn.Linear(C, 10, bias=False)
        self.head.weight = self.emb.weight


TINY_MAP = WeightMap(
    rules=(
        rename("base.wte.weight", "emb.weight"),
        convert("base.h.{i}.c_attn.weight", tuple(f"h.{{i}}.{p}.weight" for p in "qkv"), FUSED_QKV_CONV1D),
        convert("base.h.{i}.c_attn.bias", tuple(f"h.{{i}}.{p}.bias" for p in "qkv"), FUSED_QKV_BIAS),
        convert("base.h.{i}.c_proj.weight", "h.{i}.o.weight", CONV1D_TRANSPOSE),
        rename("base.h.{i}.c_proj.bias", "h.{i}.o.bias"),
    ),
    hf_prefix="base.",
    ignore=(r"\.masked_bias$",),
)


def hf_state(C: int = 4, layers: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    state = {"base.wte.weight": torch.randn(10, C, generator=g)}
    for i in range(layers):
        state[f"base.h.{i}.c_attn.weight"] = torch.randn(C, 3 * C, generator=g)  # Conv1D: (in, out)
        state[f"base.h.{i}.c_attn.bias"] = torch.randn(3 * C, generator=g)
        state[f"base.h.{i}.c_proj.weight"] = torch.randn(C, C, generator=g)
        state[f"base.h.{i}.c_proj.bias"] = torch.randn(C, generator=g)
    return state


class DictCheckpoint:
    def __init__(self, state):
        self.state, self.directory = state, "<dict>"

    def keys(self):
        return list(self.state)

    def get(self, name):
        return self.state[name]


def test_load_applies_transforms_and_ties():
    state = hf_state()
    with empty_weights():
        model = Tiny()
    assert model.emb.weight.device.type == "meta"
    load_weights(model, DictCheckpoint(state), TINY_MAP)
    assert model.head.weight is model.emb.weight
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    fused = x @ state["base.h.1.c_attn.weight"] + state["base.h.1.c_attn.bias"]  # Conv1D: x @ W + b
    q, k, v = fused.split(4, dim=-1)
    # addmm (Linear) and matmul-then-add round differently: compare under the fp32 policy, not allclose's 1e-8
    assert_close(model.h[1].q(x), q, what="q")
    assert_close(model.h[1].k(x), k, what="k")
    assert_close(model.h[1].v(x), v, what="v")
    assert_close(model.h[0].o(x), x @ state["base.h.0.c_proj.weight"] + state["base.h.0.c_proj.bias"], what="o")


def test_transforms_are_views_no_copy():
    state = hf_state()
    ours, _, _ = TINY_MAP.to_ours(state, state.__getitem__)
    assert ours["h.0.q.weight"].untyped_storage().data_ptr() == state["base.h.0.c_attn.weight"].untyped_storage().data_ptr()


def test_to_hf_inverts_to_ours():
    state = hf_state()
    ours, unexpected, missing = TINY_MAP.to_ours(state, state.__getitem__)
    assert not unexpected and not missing
    back = TINY_MAP.to_hf(ours)
    assert set(back) == set(state)
    for name in state:
        assert torch.equal(back[name], state[name]), name


def test_prefix_is_added_for_base_model_checkpoints_and_ignored_keys_dropped():
    state = {k.removeprefix("base."): v for k, v in hf_state().items()}
    state["h.0.masked_bias"] = torch.tensor(-1e4)
    ours, unexpected, missing = TINY_MAP.to_ours(state, state.__getitem__)
    assert "h.1.q.weight" in ours and not unexpected and not missing



def test_load_aliases_rename_old_keys_but_never_shadow_current_ones():
    wmap = WeightMap(rules=(rename("norm.weight", "norm.weight"),), load_aliases=((r"\.gamma$", ".weight"),))
    old = {"norm.gamma": torch.ones(2)}
    ours, unexpected, missing = wmap.to_ours(old, old.__getitem__)
    assert list(ours) == ["norm.weight"] and not unexpected and not missing
    both = {"norm.gamma": torch.zeros(2), "norm.weight": torch.ones(2)}
    ours, unexpected, _ = wmap.to_ours(both, both.__getitem__)
    assert torch.equal(ours["norm.weight"], torch.ones(2)) and unexpected == ["norm.gamma"]
    assert set(wmap.to_hf(ours)) == {"norm.weight"}  # saving writes the current name

def test_one_error_lists_missing_unexpected_and_mismatched():
    state = hf_state()
    del state["base.h.1.c_proj.weight"]
    state["base.h.0.rotary.weight"] = torch.zeros(1)
    state["base.wte.weight"] = torch.zeros(11, 4)
    with empty_weights():
        model = Tiny()
    with pytest.raises(LoadingError) as err:
        load_weights(model, DictCheckpoint(state), TINY_MAP)
    message = str(err.value)
    assert "h.1.o.weight" in message and "base.h.1.c_proj.weight" in message  # ours and where it comes from
    assert "base.h.0.rotary.weight" in message
    assert "emb.weight: checkpoint gives (11, 4), model expects (10, 4)" in message
    assert len(err.value.missing) == 1 and len(err.value.unexpected) == 1 and len(err.value.mismatched) == 1


def test_to_hf_reports_names_the_map_does_not_cover():
    with pytest.raises(LoadingError, match="stray"):
        TINY_MAP.to_hf({"emb.weight": torch.zeros(10, 4), "stray.weight": torch.zeros(1)})


def test_rule_without_transform_is_one_to_one():
    from minitransformer.loading import Rule

    with pytest.raises(ValueError, match="one name to one name"):
        Rule(("a", "b"), ("c",))


def test_unknown_model_type_lists_supported():
    with pytest.raises(ValueError, match="supported model types: .*gpt2.*llama"):
        get_family("not-a-model")
    with pytest.raises(ValueError, match="no model_type"):
        get_family(None)


def test_checkpoint_reads_sharded_safetensors(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.ones(2)}, tmp_path / "model-00001-of-00002.safetensors")
    save_file({"b": torch.zeros(3)}, tmp_path / "model-00002-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with Checkpoint(tmp_path) as ckpt:
        assert sorted(ckpt.keys()) == ["a", "b"]
        assert torch.equal(ckpt.get("b"), torch.zeros(3))


def test_checkpoint_without_weights_says_what_it_expected(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors.*config\.json"):
        Checkpoint(tmp_path)


def test_bin_files_refuse_arbitrary_pickles(tmp_path):
    import fractions

    torch.save({"a": fractions.Fraction(1, 3)}, tmp_path / "pytorch_model.bin")  # not a tensor: refused
    with pytest.raises(Exception, match="(?i)weights_only|unsupported"):
        Checkpoint(tmp_path)


def test_resolve_local_dir_and_bad_paths(tmp_path):
    assert resolve_checkpoint_dir(tmp_path) == tmp_path
    with pytest.raises(FileNotFoundError, match="no such directory"):
        resolve_checkpoint_dir(tmp_path / "absent")
    (tmp_path / "file.json").write_text("{}")
    with pytest.raises(NotADirectoryError, match="config.json"):
        resolve_checkpoint_dir(tmp_path / "file.json")


def test_empty_weights_keeps_buffers_real():
    from minitransformer.layers import RotaryEmbedding

    with empty_weights():
        rope = RotaryEmbedding(8)
        linear = nn.Linear(20_000, 20_000)  # 1.6 GB if it were initialised
    assert linear.weight.device.type == "meta"
    assert rope.inv_freq.device.type == "cpu" and rope.inv_freq[0] == 1.0
    assert nn.Linear(2, 2).weight.device.type == "cpu"  # the patch is undone on exit
