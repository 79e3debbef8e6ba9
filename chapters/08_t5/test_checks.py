"""Checks for chapter 8. References: transformers' own T5 pieces with the same weights
(``T5Attention._relative_position_bucket`` and ``compute_bias``, ``T5LayerNorm``, ``_shift_right``,
a cross-attention ``T5Attention``, ``T5ForConditionalGeneration(labels=...).loss``; skipped if transformers
is not installed), and torch formulas and hand-computed tables that run without it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from minitransformer.exercises import expect_close, expect_equal, expect_shape
from minitransformer.models.t5 import T5, T5Config

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see the fixture


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _hf_t5():
    return pytest.importorskip("transformers.models.t5.modeling_t5",
                               reason="transformers is not installed: pip install 'minitransformer[hf]'")


def _hf_config(**overrides):
    from transformers import T5Config as HFT5Config

    config = HFT5Config(**{**dict(vocab_size=40, d_model=16, d_kv=6, d_ff=24, num_layers=2, num_heads=4,
                                  relative_attention_num_buckets=8, relative_attention_max_distance=16,
                                  dropout_rate=0.0), **overrides})
    config._attn_implementation = "eager"
    return config


# ---------------------------------------------------------------- 8.1 buckets

@pytest.mark.parametrize("bidirectional", [True, False], ids=["bidirectional (encoder)", "causal (decoder)"])
@pytest.mark.parametrize("num_buckets, max_distance", [(32, 128), (8, 16)])
def test_8_1_buckets_match_transformers(ex, bidirectional, num_buckets, max_distance):
    t5 = _hf_t5()
    relative_position = torch.arange(-300, 301)[None, :] + torch.tensor([[0], [7]])  # (2, 601), past max_distance
    expected = t5.T5Attention._relative_position_bucket(relative_position, bidirectional, num_buckets, max_distance)
    got = ex.relative_position_bucket(relative_position, bidirectional, num_buckets, max_distance)
    expect_equal(got, expected, exercise="8.1",
                 case=f"bidirectional={bidirectional}, num_buckets={num_buckets}, max_distance={max_distance}, "
                      "distances -300..307, vs transformers' T5Attention._relative_position_bucket")


@pytest.mark.parametrize("bidirectional, relative, expected", [
    (True, [-20, -5, -3, -1, 0, 1, 3, 5, 20], [7, 4, 3, 1, 0, 9, 11, 12, 15]),
    (False, [-20, -5, -3, -1, 0, 1, 3, 5, 20], [7, 4, 3, 1, 0, 0, 0, 0, 0]),
], ids=["bidirectional", "causal"])
def test_8_1_buckets_by_hand(ex, bidirectional, relative, expected):
    got = ex.relative_position_bucket(torch.tensor(relative), bidirectional, num_buckets=8 if not bidirectional
                                      else 16, max_distance=16)
    expect_equal(got, torch.tensor(expected), exercise="8.1",
                 case=f"{'16' if bidirectional else '8'} buckets, max_distance=16, relative positions {relative}")


# ---------------------------------------------------------------- 8.2 the bias tensor

@pytest.mark.parametrize("is_decoder, T, S", [(False, 20, 20), (True, 20, 20), (False, 5, 9)],
                         ids=["encoder 20x20", "decoder 20x20", "encoder T=5 S=9"])
def test_8_2_bias_matches_transformers(ex, is_decoder, T, S):
    t5 = _hf_t5()
    ref = t5.T5Attention(_hf_config(is_decoder=is_decoder), has_relative_attention_bias=True, layer_idx=0)
    with torch.no_grad():
        ref.relative_attention_bias.weight.copy_(torch.randn(8, 4, generator=_gen(1)))
        expected = ref.compute_bias(T, S)
    got = ex.relative_position_bias(ref.relative_attention_bias.weight.detach(), T, S, not is_decoder, 16)
    expect_close(got, expected, exercise="8.2", case=f"{'decoder' if is_decoder else 'encoder'}, T={T}, S={S}, "
                                                     "8 buckets, H=4, vs transformers' T5Attention.compute_bias")


def test_8_2_bias_layout(ex):
    weight = torch.arange(6 * 3, dtype=torch.float32).reshape(6, 3)  # (num_buckets, H): value = 3 * bucket + head
    got = ex.relative_position_bias(weight, 4, 4, bidirectional=False, max_distance=8)
    expect_shape(got, (1, 3, 4, 4), exercise="8.2", case="(1, H, T, S) with H=3, T=S=4")
    # causal, 6 buckets: key j, query i: bucket = i - j for j <= i (distances 0..2 exact), 0 after the query
    bucket = (torch.arange(4)[:, None] - torch.arange(4)[None, :]).clamp_min(0)  # (T, S)
    expected = torch.stack([3.0 * bucket + h for h in range(3)])[None]
    expect_close(got, expected, exercise="8.2", case="head h of query i, key j holds weight[bucket(j - i), h]")


# ---------------------------------------------------------------- 8.3 the T5 norm

@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_8_3_t5_layer_norm_matches_transformers(ex, dtype):
    t5 = _hf_t5()
    ref = t5.T5LayerNorm(16, eps=1e-6)
    with torch.no_grad():
        ref.weight.copy_(torch.rand(16, generator=_gen(2)) + 0.5)
    ref = ref.to(dtype)
    x = (torch.randn(2, 5, 16, generator=_gen(3)) * 3 + 5).to(dtype)  # mean far from 0: no centring allowed
    with torch.no_grad():
        expected = ref(x)
    got = ex.t5_layer_norm(x, ref.weight.detach(), 1e-6)
    if got.dtype != expected.dtype:
        raise AssertionError(f"Exercise 8.3, case '{dtype}': expected dtype {expected.dtype}, got {got.dtype}")
    atol = None if dtype == torch.float32 else 2e-2
    expect_close(got.float(), expected.float(), exercise="8.3", atol=atol,
                 case=f"{dtype}, inputs centred at 5, vs transformers' T5LayerNorm")


def test_8_3_t5_layer_norm_formula(ex):
    x = torch.randn(3, 8, generator=_gen(4)) + 2.0
    weight = torch.rand(8, generator=_gen(5)) + 0.5
    expected = F.rms_norm(x, (8,), weight, eps=1e-6)
    expect_close(ex.t5_layer_norm(x, weight, 1e-6), expected, exercise="8.3",
                 case="x / sqrt(mean(x^2) + eps) * weight, vs torch.nn.functional.rms_norm (no mean subtracted)")


# ---------------------------------------------------------------- 8.4 shift right

LABELS = torch.tensor([[5, 6, 7, 1, -100, -100], [8, 9, 10, 11, 12, 1]])


def test_8_4_shift_right_matches_transformers(ex):
    t5 = _hf_t5()
    fake_model = SimpleNamespace(config=SimpleNamespace(decoder_start_token_id=0, pad_token_id=0))
    expected = t5.T5PreTrainedModel._shift_right(fake_model, LABELS)
    got = ex.shift_right(LABELS.clone(), 0, 0)
    expect_equal(got, expected, exercise="8.4", case="start 0, pad 0, vs transformers' T5 _shift_right")


def test_8_4_shift_right_by_hand(ex):
    labels = LABELS.clone()
    got = ex.shift_right(labels, 3, 2)
    expected = torch.tensor([[3, 5, 6, 7, 1, 2], [3, 8, 9, 10, 11, 12]])
    expect_equal(got, expected, exercise="8.4",
                 case="decoder_start_token_id=3 first, then the labels without their last; -100 -> pad_token_id=2")
    expect_equal(labels, LABELS, exercise="8.4", case="labels must not be modified (the loss still needs the -100s)")


# ---------------------------------------------------------------- 8.5 cross attention

def _cross_inputs(seed=6, C=16, inner=24):
    g = _gen(seed)
    x, enc = torch.randn(2, 3, C, generator=g), torch.randn(2, 7, C, generator=g)
    w = [torch.randn(inner, C, generator=g) / C**0.5 for _ in range(3)] + [torch.randn(C, inner, generator=g) / inner**0.5]
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0]])
    return x, enc, w, mask


@pytest.mark.parametrize("masked", [False, True], ids=["no mask", "padded encoder"])
def test_8_5_cross_attention_matches_transformers(ex, masked):
    t5 = _hf_t5()
    x, enc, (w_q, w_k, w_v, w_o), mask = _cross_inputs()
    ref = t5.T5Attention(_hf_config(is_decoder=True), has_relative_attention_bias=False, layer_idx=0).eval()
    with torch.no_grad():
        for linear, w in zip((ref.q, ref.k, ref.v, ref.o), (w_q, w_k, w_v, w_o)):
            linear.weight.copy_(w)
        additive = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min if masked else None
        expected = ref(x, mask=additive, key_value_states=enc)[0]
    got = ex.cross_attention(x, enc, w_q, w_k, w_v, w_o, 4, mask if masked else None)
    expect_close(got, expected, exercise="8.5",
                 case=f"B=2 T=3 S=7 C=16 H=4 D=6, {'padded encoder' if masked else 'no mask'}, "
                      "vs transformers' T5Attention with key_value_states (unscaled)")


def test_8_5_cross_attention_formula(ex):
    x, enc, (w_q, w_k, w_v, w_o), mask = _cross_inputs(seed=7)

    def heads(t):  # (B, L, H * D) -> (B, H, L, D)
        return t.unflatten(-1, (4, 6)).transpose(1, 2)

    q, k, v = heads(x @ w_q.T), heads(enc @ w_k.T), heads(enc @ w_v.T)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :].bool(), scale=1.0)
    expected = out.transpose(1, 2).flatten(2) @ w_o.T
    got = ex.cross_attention(x, enc, w_q, w_k, w_v, w_o, 4, mask)
    expect_close(got, expected, exercise="8.5", atol=1e-5,
                 case="vs F.scaled_dot_product_attention(scale=1.0): did you divide by sqrt(D)? T5 does not")


# ---------------------------------------------------------------- 8.6 teacher-forced loss

def _seq2seq_batch(vocab=40):
    g = _gen(8)
    input_ids = torch.randint(2, vocab, (2, 7), generator=g)
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]])
    labels = torch.randint(2, vocab, (2, 5), generator=g)
    labels[1, 3:] = -100  # a shorter target, padded with the ignore index
    return input_ids, attention_mask, labels


def test_8_6_loss_matches_transformers(ex):
    t5 = _hf_t5()
    torch.manual_seed(9)
    model = t5.T5ForConditionalGeneration(_hf_config(decoder_start_token_id=0, pad_token_id=0)).eval()
    input_ids, attention_mask, labels = _seq2seq_batch()
    with torch.no_grad():
        expected = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        got = ex.seq2seq_loss(model, input_ids, attention_mask, labels, 0, 0)
    expect_close(torch.as_tensor(got).reshape(()), expected, exercise="8.6",
                 case="a tiny transformers T5ForConditionalGeneration, vs its own loss from labels=")


def test_8_6_loss_formula(ex):
    torch.manual_seed(10)
    config = T5Config(vocab_size=40, d_model=16, d_kv=4, d_ff=24, num_layers=1, num_heads=4,
                      relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0,
                      decoder_start_token_id=1, pad_token_id=0)
    model = T5(config).eval()
    input_ids, attention_mask, labels = _seq2seq_batch()
    decoder_input_ids = torch.cat([torch.ones(2, 1, dtype=torch.long), labels[:, :-1].clamp_min(0)], dim=1)
    with torch.no_grad():
        logits = model(input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids).logits
        keep = labels != -100
        expected = F.cross_entropy(logits[keep], labels[keep])
        got = ex.seq2seq_loss(model, input_ids, attention_mask, labels, 1, 0)
    expect_close(torch.as_tensor(got).reshape(()), expected, exercise="8.6",
                 case="decoder_start_token_id=1: mean cross-entropy over the labels that are not -100")
