"""Odd checkpoints against transformers: where it gives an answer, ours is the same; where it would
silently compute garbage (an integer or complex tensor in a float weight's place), ours refuses.

What transformers 5 does with dtypes (``modeling_utils._get_dtype``, ``core_model_loading``): its
default is ``dtype="auto"``, which takes config.json's ``dtype`` (older files: ``torch_dtype``), else
the first floating-point tensor of the first weight file (names sorted); the model is built in that
dtype and every checkpoint tensor is cast to its parameter's dtype with ``.to``, whatever it was.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

transformers = pytest.importorskip("transformers")

from minitransformer.loading import LoadingError, from_pretrained, save_pretrained  # noqa: E402
from minitransformer.testing import assert_close, seed_weights  # noqa: E402

pytestmark = pytest.mark.parity

WEIGHTS = "model.safetensors"
NORM = "transformer.h.0.ln_1.weight"
IDS = torch.tensor([[1, 5, 9, 2, 33, 7], [4, 4, 60, 3, 2, 1]])


def hf_gpt2_dir(path):
    config = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    seed_weights(transformers.GPT2LMHeadModel(config), 0, std=0.1).save_pretrained(path)
    return path


def edit(path, weights=None, **config_changes):
    if weights is not None:
        state = load_file(path / WEIGHTS)
        weights(state)
        save_file(state, path / WEIGHTS, metadata={"format": "pt"})
    config = json.loads((path / "config.json").read_text())
    for key, value in config_changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (path / "config.json").write_text(json.dumps(config))


def both(path):
    """(ours, transformers'), each loaded with its library's defaults."""
    hf = transformers.GPT2LMHeadModel.from_pretrained(path).eval()
    return from_pretrained(path), hf


def logits(model):
    with torch.no_grad():
        return model(IDS).logits


def dtypes(model):
    return {p.dtype for p in model.parameters()}


def half_norm(state):
    state[NORM] = state[NORM].half()


def test_one_fp16_norm_in_an_fp32_file_gives_fp32_as_in_transformers(tmp_path):
    edit(hf_gpt2_dir(tmp_path), weights=half_norm)
    ours, hf = both(tmp_path)
    assert dtypes(ours) == dtypes(hf) == {torch.float32}
    assert_close(logits(ours), logits(hf), what="mixed-dtype checkpoint logits")


def test_without_config_dtype_the_first_sorted_float_tensor_decides_as_in_transformers(tmp_path):
    first = "transformer.h.0.attn.c_attn.bias"  # the first name in sorted order
    edit(hf_gpt2_dir(tmp_path), weights=lambda s: s.update({first: s[first].half()}), dtype=None)
    ours, hf = both(tmp_path)
    assert dtypes(ours) == dtypes(hf) == {torch.float16}
    assert_close(logits(ours), logits(hf), relative_to_max=True, what="fp16 logits")


@pytest.mark.parametrize("config_dtypes, expected", [
    (dict(dtype=None, torch_dtype="bfloat16"), torch.bfloat16),
    (dict(dtype="float32", torch_dtype="bfloat16"), torch.float32),
])
def test_config_dtype_keys_are_read_as_transformers_reads_them(tmp_path, config_dtypes, expected):
    edit(hf_gpt2_dir(tmp_path), **config_dtypes)
    ours, hf = both(tmp_path)
    assert dtypes(ours) == dtypes(hf) == {expected}


def test_our_half_precision_save_loads_in_half_precision_in_both(tmp_path):
    save_pretrained(from_pretrained(hf_gpt2_dir(tmp_path / "hf"), dtype="bfloat16"), tmp_path / "ours")
    ours, hf = both(tmp_path / "ours")
    assert dtypes(ours) == dtypes(hf) == {torch.bfloat16}


@pytest.mark.parametrize("bad", [torch.arange(32, dtype=torch.int64), torch.complex(torch.ones(32), torch.ones(32))],
                         ids=["int64", "complex64"])
def test_non_float_weight_transformers_casts_silently_ours_refuses(tmp_path, bad):
    edit(hf_gpt2_dir(tmp_path), weights=lambda s: s.update({NORM: bad}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # complex -> real: "discards the imaginary part", once per process
        hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path)
    # transformers: .to(float32) -> the integers (0, 1, 2...) or the real parts become the norm's gains.
    assert torch.equal(hf.transformer.h[0].ln_1.weight.detach(), bad.real.float() if bad.is_complex() else bad.float())
    with pytest.raises(LoadingError) as err:
        from_pretrained(tmp_path)
    dtype = str(bad.dtype).removeprefix("torch.")
    assert f"{NORM} in {WEIGHTS} is {dtype}, but transformer.h.0.attn_norm.weight is a floating-point" in str(err.value)
