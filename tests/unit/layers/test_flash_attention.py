"""The tiled flash attention equals the math path, in values and in gradients (principle 6)."""

from pathlib import Path

import pytest
import torch

from minitransformer.layers import flash_attention as flash_module
from minitransformer.layers.attention import dispatch_attention, scaled_dot_product_attention
from minitransformer.layers.flash_attention import flash_attention
from minitransformer.layers.masks import causal_mask, padding_mask
from minitransformer.testing import max_abs_diff
from minitransformer.training.memory import saved_for_backward  # the exact count the memory formula uses

ROOT = Path(__file__).resolve().parents[3]
ATOL = 1e-5  # fp32, values and gradients


def _qkv(B=2, H=4, Hkv=None, T=13, S=None, D=8, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    Hkv, S = H if Hkv is None else Hkv, T if S is None else S
    shapes = [(B, H, T, D), (B, Hkv, S, D), (B, Hkv, S, D)]
    return [torch.randn(shape, generator=g, dtype=dtype).requires_grad_() for shape in shapes]


def _padding(B, S):
    """Left padding on row 0, right padding on row 1: a (B, S) mask of 1/0."""
    mask = torch.ones(B, S, dtype=torch.long)
    mask[0, :3] = 0
    mask[1, -4:] = 0
    return mask


def _naive(q, k, v, causal=False, attention_mask=None, attn_mask=None, scale=None):
    """The math path given the same masks as one explicit (B, H, T, S) mask."""
    T, S = q.shape[2], k.shape[2]
    allowed = causal_mask(T, S) if causal else None  # (T, S), bottom-right as with a cache
    if attention_mask is not None:
        pad = padding_mask(attention_mask)  # (B, 1, 1, S)
        allowed = pad if allowed is None else allowed & pad
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        allowed = attn_mask if allowed is None else allowed & attn_mask
    elif attn_mask is not None:
        assert allowed is None, "this helper adds a float mask only on its own"
        allowed = attn_mask
    return scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)


# name -> (shape kwargs, flash kwargs, tiles)
CASES = {
    "no mask": (dict(), dict(), (4, 4)),
    "causal": (dict(), dict(causal=True), (4, 4)),
    "causal, S > T (cache)": (dict(T=6, S=19), dict(causal=True), (4, 5)),
    "padded keys": (dict(S=17), dict(attention_mask=_padding(2, 17)), (4, 4)),
    "padded keys, bool": (dict(S=17), dict(attention_mask=_padding(2, 17).bool()), (5, 3)),
    "causal + padded keys": (dict(T=9, S=17), dict(causal=True, attention_mask=_padding(2, 17)), (4, 4)),
    "GQA H=4 Hkv=2": (dict(Hkv=2), dict(causal=True), (4, 4)),
    "GQA H=4 Hkv=1 (MQA)": (dict(Hkv=1), dict(attention_mask=_padding(2, 13)), (4, 4)),
    "tiles that do not divide T, S": (dict(T=37, S=41, Hkv=2), dict(causal=True), (8, 7)),
    "tiles larger than T, S": (dict(T=5, S=9), dict(causal=True), (64, 64)),
    "one tile per row and key": (dict(T=5, S=6), dict(causal=True), (1, 1)),
    "T = 1 (decoding)": (dict(T=1, S=23, Hkv=2), dict(causal=True, attention_mask=_padding(2, 23)), (4, 4)),
    "custom scale": (dict(), dict(scale=0.3), (4, 4)),
    "bool attn_mask (B,1,T,S)": (dict(S=11), dict(attn_mask=torch.rand(2, 1, 13, 11) > 0.3), (4, 4)),
}


@pytest.mark.parametrize("case", CASES)
def test_values_and_gradients_equal_the_math_path(case):
    shapes, kwargs, (block_q, block_k) = CASES[case]
    q, k, v = _qkv(**shapes)
    ours = flash_attention(q, k, v, block_q=block_q, block_k=block_k, **kwargs)
    theirs = _naive(q, k, v, **kwargs)
    assert max_abs_diff(ours, theirs) <= ATOL
    grad = torch.randn_like(ours)
    for a, b in zip(torch.autograd.grad(ours, (q, k, v), grad), torch.autograd.grad(theirs, (q, k, v), grad)):
        assert max_abs_diff(a, b) <= ATOL


def test_additive_mask_and_its_gradient_equal_the_math_path():
    """T5's relative bias is an additive (1, H, T, S) mask with a gradient; flash gives it one too."""
    q, k, v = _qkv(T=10, S=14, Hkv=2)
    bias = torch.randn(1, 4, 10, 14, requires_grad=True)
    ours = flash_attention(q, k, v, attn_mask=bias, block_q=4, block_k=3)
    theirs = scaled_dot_product_attention(q, k, v, attn_mask=bias)
    assert max_abs_diff(ours, theirs) <= ATOL
    grad = torch.randn_like(ours)
    inputs = (q, k, v, bias)
    for a, b in zip(torch.autograd.grad(ours, inputs, grad), torch.autograd.grad(theirs, inputs, grad)):
        assert max_abs_diff(a, b) <= ATOL


def test_fully_masked_rows_give_zero_output_and_zero_gradient():
    """Batch row 1 has every key padded; under the causal mask, row 0's first queries see only padding."""
    q, k, v = _qkv(T=8, S=8)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[0, :3] = 0  # left padding: queries 0..2 of row 0 see no key
    mask[1] = 0  # nothing at all in row 1
    out = flash_attention(q, k, v, causal=True, attention_mask=mask, block_q=3, block_k=3)
    assert torch.isfinite(out).all()
    assert out[0, :, :3].abs().max() == 0 and out[1].abs().max() == 0
    assert max_abs_diff(out, _naive(q, k, v, causal=True, attention_mask=mask)) <= ATOL
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), torch.randn_like(out))
    assert all(torch.isfinite(g).all() for g in (dq, dk, dv))
    assert dq[0, :, :3].abs().max() == 0 and dq[1].abs().max() == 0
    assert dk[1].abs().max() == 0 and dv[1].abs().max() == 0
    assert dk[0, :, :3].abs().max() == 0 and dv[0, :, :3].abs().max() == 0  # padded keys get nothing


def test_gradcheck_float64():
    q, k, v = _qkv(B=1, H=2, Hkv=1, T=3, S=5, D=4, dtype=torch.float64)
    mask = torch.tensor([[0, 1, 1, 1, 1]])
    bias = torch.randn(1, 2, 3, 5, dtype=torch.float64, requires_grad=True)

    def f(q, k, v, bias):
        return flash_attention(q, k, v, causal=True, attention_mask=mask, attn_mask=bias, block_q=2, block_k=2)

    assert torch.autograd.gradcheck(f, (q, k, v, bias))


def test_low_precision_inputs_are_summed_in_fp32():
    q, k, v = (x.detach().to(torch.bfloat16) for x in _qkv(T=20))
    ours = flash_attention(q, k, v, causal=True, block_q=8, block_k=8)
    assert ours.dtype == torch.bfloat16
    reference = _naive(q.float(), k.float(), v.float(), causal=True)
    assert max_abs_diff(ours, reference) <= 1e-2  # one bf16 rounding of the output


def test_causal_skips_the_tiles_above_the_diagonal(monkeypatch):
    """T = S = 8 in tiles of 2: 4 query tiles see 1, 2, 3, 4 key tiles, 10 of the 16, forward and backward."""
    calls = []
    scores = flash_module._Tiles.scores
    monkeypatch.setattr(flash_module._Tiles, "scores", lambda self, *a: calls.append(a[2:]) or scores(self, *a))
    q, k, v = _qkv(B=1, H=1, T=8)
    out = flash_attention(q, k, v, causal=True, block_q=2, block_k=2)
    assert len(calls) == 10 and all(j0 <= i1 - 1 for i0, i1, j0, j1 in calls)
    out.sum().backward()
    assert len(calls) == 20


def test_gqa_does_not_repeat_keys_and_values(monkeypatch):
    """Each group of query heads meets its one kv head by broadcasting; repeat_kv is never called."""
    monkeypatch.setattr(torch.Tensor, "repeat_interleave", lambda *a, **kw: pytest.fail("k/v were repeated"))
    q, k, v = _qkv(Hkv=1)
    flash_attention(q, k, v).sum().backward()


def test_the_mask_models_pass_gives_the_same_as_causal_and_padding():
    """Models hand attention one bool (B, 1, T, S) decoder mask; as attn_mask it gives the same answer."""
    q, k, v = _qkv(Hkv=2, T=9, S=12)
    mask = causal_mask(9, 12)[None, None] & padding_mask(_padding(2, 12))  # (B, 1, T, S)
    ours = flash_attention(q, k, v, attn_mask=mask, block_q=4, block_k=4)
    assert max_abs_diff(ours, flash_attention(q, k, v, causal=True, attention_mask=_padding(2, 12))) <= ATOL
    theirs, _ = dispatch_attention(q, k, v, mask, backend="math")
    assert max_abs_diff(ours, theirs) <= ATOL


@pytest.mark.parametrize("shapes, kwargs, message", [
    ([(2, 4, 5, 8), (2, 4, 5, 8), (2, 4, 8)], {}, "4-D"),
    ([(2, 4, 5, 8), (2, 4, 6, 8), (2, 4, 7, 8)], {}, "agree on \\(B, Hkv, S\\)"),
    ([(2, 4, 5, 8), (2, 4, 6, 16), (2, 4, 6, 16)], {}, "batch B and head size D"),
    ([(2, 4, 5, 8), (3, 4, 6, 8), (3, 4, 6, 8)], {}, "batch B and head size D"),
    ([(2, 4, 5, 8), (2, 3, 6, 8), (2, 3, 6, 8)], {}, "not a multiple"),
    ([(2, 4, 7, 8), (2, 4, 6, 8), (2, 4, 6, 8)], dict(causal=True), "S >= T"),
    ([(2, 4, 5, 8)] * 3, dict(block_q=0), "block_q must be a positive int"),
    ([(2, 4, 5, 8)] * 3, dict(block_k=-4), "block_k must be a positive int"),
    ([(2, 4, 5, 8)] * 3, dict(block_q=2.5), "block_q must be a positive int"),
    ([(2, 4, 5, 8)] * 3, dict(block_k=True), "block_k must be a positive int"),
    ([(2, 4, 5, 8)] * 3, dict(attention_mask=torch.ones(2, 6)), "attention_mask must have shape \\(B, S\\)"),
    ([(2, 4, 5, 8)] * 3, dict(attention_mask=torch.full((2, 5), 2)), "only 0 \\(padding\\) and 1"),
    ([(2, 4, 5, 8)] * 3, dict(attn_mask=torch.ones(3, 1, 5, 5, dtype=torch.bool)), "does not broadcast"),
])
def test_bad_input_raises_a_clear_error(shapes, kwargs, message):
    q, k, v = (torch.zeros(shape) for shape in shapes)
    with pytest.raises(ValueError, match=message):
        flash_attention(q, k, v, **kwargs)


def test_what_the_backward_keeps_grows_with_t_not_t_squared():
    """The memory a training step holds: the naive path keeps the (B, H, T, S) scores and probabilities,
    flash keeps the output and one log-sum-exp per row. Counted exactly, so the test cannot flake; the
    process's peak memory at T = 4096 is measured by scripts/bench_attention.py (docs/flash-attention.md)."""
    B, H, T, D = 1, 4, 512, 32
    q, k, v = (torch.randn(B, H, T, D, requires_grad=True) for _ in range(3))
    naive = saved_for_backward(lambda: _naive(q, k, v, causal=True), exclude=(q, k, v))[1]
    flash = saved_for_backward(lambda: flash_attention(q, k, v, causal=True), exclude=(q, k, v))[1]
    assert naive >= 2 * B * H * T * T * 4  # the scores and the probabilities, fp32
    assert flash == B * H * T * D * 4 + B * H * T * 4  # the output O and the log-sum-exp L, nothing (T, S)
    assert flash / naive < 0.1
