import pytest
import torch
import torch.nn.functional as F

from minitransformer.layers import (
    MultiHeadAttention,
    dispatch_attention,
    fused_attention,
    repeat_kv,
    scaled_dot_product_attention,
    to_additive,
)
from minitransformer.testing import SINGLE_OP_FP32_ATOL, max_abs_diff


def _qkv(B=2, H=4, T=5, S=7, D=8, Hkv=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    Hkv = H if Hkv is None else Hkv
    return (torch.randn(B, H, T, D, generator=g), torch.randn(B, Hkv, S, D, generator=g),
            torch.randn(B, Hkv, S, D, generator=g))


def _bool_mask(shape, seed=1):
    m = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) > 0.4
    m[..., 0] = True  # no fully masked row: torch's behaviour there is not part of this comparison
    return m


CASES = {
    "none": dict(),
    "bool (B,1,T,S)": dict(attn_mask=_bool_mask((2, 1, 5, 7))),
    "bool (T,S)": dict(attn_mask=_bool_mask((5, 7))),
    "additive (B,H,T,S)": dict(attn_mask=torch.randn(2, 4, 5, 7)),
    "causal": dict(is_causal=True),
    "custom scale": dict(scale=0.3),
    "bool + scale": dict(attn_mask=_bool_mask((2, 4, 5, 7)), scale=1.0),
}


@pytest.mark.parametrize("case", CASES)
def test_math_path_equals_torch_sdpa(case):
    q, k, v = _qkv()
    ours = scaled_dot_product_attention(q, k, v, **CASES[case])
    theirs = F.scaled_dot_product_attention(q, k, v, **CASES[case])
    assert max_abs_diff(ours, theirs) <= SINGLE_OP_FP32_ATOL


@pytest.mark.parametrize("case", CASES)
def test_math_and_fused_paths_agree(case):
    q, k, v = _qkv(Hkv=2)
    a, _ = dispatch_attention(q, k, v, backend="math", **CASES[case])
    b, _ = dispatch_attention(q, k, v, backend="sdpa", **CASES[case])
    assert max_abs_diff(a, b) <= SINGLE_OP_FP32_ATOL


def test_bool_mask_equals_its_additive_form():
    q, k, v = _qkv()
    m = _bool_mask((2, 1, 5, 7))
    a = scaled_dot_product_attention(q, k, v, attn_mask=m)
    b = scaled_dot_product_attention(q, k, v, attn_mask=to_additive(m))
    assert max_abs_diff(a, b) <= SINGLE_OP_FP32_ATOL


def test_grouped_query_equals_repeated_heads():
    q, k, v = _qkv(H=6, Hkv=2)
    ours = scaled_dot_product_attention(q, k, v)
    theirs = F.scaled_dot_product_attention(q, repeat_kv(k, 3), repeat_kv(v, 3))
    assert max_abs_diff(ours, theirs) <= SINGLE_OP_FP32_ATOL
    assert torch.equal(repeat_kv(k, 3)[:, 4], k[:, 1])  # query head 4 uses kv head 4 // 3 = 1


def test_weights_are_probabilities_and_fully_masked_rows_are_zero():
    q, k, v = _qkv(T=3, S=3)
    mask = torch.tensor([[True, False, False], [False, False, False], [True, True, True]])
    out, w = scaled_dot_product_attention(q, k, v, attn_mask=mask, return_weights=True)
    assert not torch.isnan(out).any() and not torch.isnan(w).any()
    torch.testing.assert_close(w[..., 0, :].sum(-1), torch.ones(2, 4))
    assert torch.all(w[..., 1, :] == 0) and torch.all(out[..., 1, :] == 0)
    fused = fused_attention(q, k, v, attn_mask=mask)
    assert torch.all(fused[..., 1, :] == 0)
    assert max_abs_diff(fused, out) <= SINGLE_OP_FP32_ATOL


def test_dropout_is_inverted_and_off_by_default():
    q, k, v = _qkv()
    torch.manual_seed(0)
    _, w = scaled_dot_product_attention(q, k, v, dropout_p=0.5, return_weights=True)
    kept = w[w > 0]
    assert 0.3 < (w == 0).float().mean() < 0.7
    assert torch.all(kept <= 2.0 + 1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(attn_mask=torch.ones(3, 7, dtype=torch.bool)), r"axis T has size 3, expected 1 or 5"),
        (dict(attn_mask=torch.ones(2, 1, 5, 7, dtype=torch.int64)), "must be bool"),
        (dict(attn_mask=torch.ones(1, 1, 1, 2, 5, 7, dtype=torch.bool)), "at most 4"),
    ],
)
def test_bad_masks_raise_clear_errors(kwargs, match):
    q, k, v = _qkv()
    with pytest.raises((ValueError, TypeError), match=match):
        scaled_dot_product_attention(q, k, v, **kwargs)


def test_bad_shapes_raise_clear_errors():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="4-D"):
        scaled_dot_product_attention(q[0], k, v)
    with pytest.raises(ValueError, match="not a multiple"):
        scaled_dot_product_attention(q, k[:, :3], v[:, :3])
    with pytest.raises(ValueError, match="head size D"):
        scaled_dot_product_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="backend"):
        dispatch_attention(q, k, v, backend="flash9")


def _copy_from_torch_mha(ref: torch.nn.MultiheadAttention, ours: MultiHeadAttention) -> None:
    """torch fuses q, k, v into one in_proj weight (3C, C): split it into our three projections."""
    for name, w, b in zip(("q_proj", "k_proj", "v_proj"), ref.in_proj_weight.chunk(3), ref.in_proj_bias.chunk(3)):
        getattr(ours, name).weight.data.copy_(w)
        getattr(ours, name).bias.data.copy_(b)
    ours.o_proj.weight.data.copy_(ref.out_proj.weight)
    ours.o_proj.bias.data.copy_(ref.out_proj.bias)


@pytest.mark.parametrize("backend", ["math", "sdpa"])
@pytest.mark.parametrize("kind", ["self", "cross"])
def test_multi_head_attention_equals_torch(backend, kind):
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    ours = MultiHeadAttention(16, 4, attn_implementation=backend)
    _copy_from_torch_mha(ref, ours)
    x = torch.randn(2, 5, 16)
    mem = x if kind == "self" else torch.randn(2, 9, 16)
    S = mem.shape[1]
    blocked = torch.rand(5, S) > 0.7
    blocked[:, 0] = False
    expected, expected_w = ref(x, mem, mem, attn_mask=blocked, average_attn_weights=False)
    got, got_w = ours(x, None if kind == "self" else mem, attn_mask=~blocked, output_attentions=True)
    assert max_abs_diff(got, expected) <= 1e-5
    assert max_abs_diff(got_w, expected_w) <= 1e-6


def test_multi_head_attention_gqa_shapes_and_probs():
    mha = MultiHeadAttention(32, 8, num_key_value_heads=2, bias=False)
    assert mha.k_proj.weight.shape == (8, 32) and mha.q_proj.weight.shape == (32, 32)
    out, w = mha(torch.randn(3, 4, 32), output_attentions=True)
    assert out.shape == (3, 4, 32) and w.shape == (3, 8, 4, 4)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 8, 4))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(hidden_size=30, num_attention_heads=4), "hidden_size=30 is not divisible by num_attention_heads=4"),
        (dict(hidden_size=32, num_attention_heads=8, num_key_value_heads=3), "num_key_value_heads=3 must divide"),
        (dict(hidden_size=32, num_attention_heads=0), "positive"),
        (dict(hidden_size=32, num_attention_heads=4, attn_implementation="fast"), "attn_implementation"),
    ],
)
def test_bad_head_configs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiHeadAttention(**kwargs)


def test_wrong_input_width_raises():
    mha = MultiHeadAttention(16, 4)
    with pytest.raises(ValueError, match=r"hidden_size=16"):
        mha(torch.randn(2, 3, 12))
    with pytest.raises(ValueError, match="key_value_states"):
        mha(torch.randn(2, 3, 16), key_value_states=torch.randn(2, 3, 8))
