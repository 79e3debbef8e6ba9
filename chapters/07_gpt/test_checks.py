"""Checks for chapter 7. The reference is transformers itself: its ``Conv1D``, a tiny random
``GPT2LMHeadModel`` (its embedding output, logits, ``generate`` and loss). Nothing is downloaded."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from minitransformer.exercises import expect_close, expect_equal, expect_shape

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

V, P, C = 61, 32, 16


@pytest.fixture(scope="module")
def hf():
    """A tiny random GPT-2 built by transformers: weights large enough that greedy decoding wanders."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=V, n_positions=P, n_embd=C, n_layer=2, n_head=4,
                                     initializer_range=0.3, bos_token_id=None, eos_token_id=None,
                                     attn_implementation="eager")
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # random biases too, so that a dropped or misplaced bias shows
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
    return model


def _ids(B: int, T: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def test_7_1_conv1d_to_linear_matches_transformers_conv1d(ex):
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(2)
    conv = Conv1D(nf=4 * C, nx=C)  # GPT-2's c_fc: C inputs, 4C outputs, weight stored (C, 4C)
    with torch.no_grad():
        conv.weight.normal_()
        conv.bias.normal_()
    weight = ex.conv1d_to_linear(conv.weight.detach(), C, 4 * C)
    expect_shape(weight, (4 * C, C), exercise="7.1", case="c_fc (C=16 -> 4C=64): nn.Linear stores (out, in)")
    x = torch.randn(2, 3, C)
    expect_close(F.linear(x, weight, conv.bias.detach()), conv(x).detach(), exercise="7.1",
                 case="F.linear(x, your weight, bias) vs transformers' Conv1D(x)")


def test_7_1_wrong_shape_raises_value_error(ex):
    already_linear = torch.randn(4 * C, C)  # someone transposed it already: (out, in)
    with pytest.raises(ValueError):
        ex.conv1d_to_linear(already_linear, C, 4 * C)


@pytest.mark.parametrize("layer", [0, 1])
def test_7_2_split_c_attn_matches_c_attn(ex, hf, layer):
    c_attn = hf.transformer.h[layer].attn.c_attn
    (q_w, k_w, v_w), (q_b, k_b, v_b) = ex.split_c_attn(c_attn.weight.detach(), c_attn.bias.detach())
    x = torch.randn(2, 5, C, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        q, k, v = c_attn(x).split(C, dim=2)  # how GPT2Attention itself splits the fused output
    for name, w, b, expected in (("q", q_w, q_b, q), ("k", k_w, k_b, k), ("v", v_w, v_b, v)):
        expect_shape(w, (C, C), exercise="7.2", case=f"layer {layer}: {name} weight in nn.Linear layout")
        expect_close(F.linear(x, w, b), expected, exercise="7.2",
                     case=f"layer {layer}: F.linear(x, {name}_w, {name}_b) vs c_attn(x).split(C, dim=2)")


@pytest.mark.parametrize("past_length", [0, 7])
def test_7_3_embeddings_match_transformers(ex, hf, past_length):
    ids = _ids(2, 6)
    positions = torch.arange(past_length, past_length + 6)[None].expand(2, -1)
    with torch.no_grad():
        expected = hf(ids, position_ids=positions, output_hidden_states=True).hidden_states[0]
    got = ex.gpt2_embeddings(ids, hf.transformer.wte.weight.detach(), hf.transformer.wpe.weight.detach(),
                             past_length)
    expect_close(got, expected, exercise="7.3",
                 case=f"B=2 T=6, past_length={past_length}, vs GPT2LMHeadModel's hidden_states[0]")


def test_7_3_too_long_names_n_positions(ex, hf):
    ids = _ids(1, 5)
    with pytest.raises(ValueError, match="n_positions"):
        ex.gpt2_embeddings(ids, hf.transformer.wte.weight.detach(), hf.transformer.wpe.weight.detach(),
                           past_length=P - 2)  # positions P-2 .. P+2: three past the table


def test_7_4_tied_lm_head_matches_transformers(ex, hf):
    assert hf.lm_head.weight is hf.transformer.wte.weight  # the tie the exercise relies on
    ids = _ids(2, 7, seed=4)
    with torch.no_grad():
        out = hf(ids, output_hidden_states=True)
    got = ex.lm_head_logits(out.hidden_states[-1], hf.transformer.wte.weight.detach())
    expect_close(got, out.logits, exercise="7.4", case="logits from ln_f's output (B=2 T=7 V=61) vs GPT2LMHeadModel")


@pytest.mark.parametrize("B, T, new", [(2, 5, 12), (1, 1, 8)])
def test_7_5_greedy_generate_matches_transformers_generate(ex, hf, B, T, new):
    ids = _ids(B, T, seed=5)
    with torch.no_grad():
        expected = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=False)
    assert expected[:, T:].unique().numel() > 2, "the reference model should not repeat one token forever"
    got = ex.greedy_generate(hf, ids, new)
    expect_equal(got, expected, exercise="7.5",
                 case=f"B={B}, prompt of {T}, {new} new tokens, token for token vs generate(do_sample=False)")


@pytest.mark.parametrize("case", ["labels = input_ids", "padding marked -100"])
def test_7_6_next_token_loss_matches_transformers(ex, hf, case):
    ids = _ids(2, 8, seed=6)
    labels = ids.clone()
    if case == "padding marked -100":
        labels[0, 5:] = -100
    with torch.no_grad():
        out = hf(ids, labels=labels)
    got = ex.next_token_loss(out.logits, labels)
    expect_close(got, out.loss, exercise="7.6", case=f"{case}, vs GPT2LMHeadModel(ids, labels=...).loss")
