"""Checks for chapter 3. Each compares your function with an independent reference from torch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from minitransformer.exercises import expect_close, expect_shape


def _qkv(B=2, H=4, T=5, S=7, D=8, Hkv=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    Hkv = H if Hkv is None else Hkv
    return (torch.randn(B, H, T, D, generator=g), torch.randn(B, Hkv, S, D, generator=g),
            torch.randn(B, Hkv, S, D, generator=g))


# The mistakes a check recognises, each as (what the student did: what to do instead). The checks compute
# the result of each mistake and, when yours equals one, say which it was instead of "values differ".
NO_SCALE_SCORES = ("your scores equal QK^T without the scale: when scale is None, multiply by 1/sqrt(D), "
                   "D = query.shape[-1]")
SCORES_OVER_D = "your scores are QK^T / D: the default scale is 1/sqrt(D), not 1/D"
IGNORED_SCALE = ("you ignore the scale argument: use it when it is given, and 1/sqrt(D) only when it is None")
DIVIDED_BY_SCALE = "you divided by scale: multiply the scores by it (scale is the factor itself, like 1/sqrt(D))"
NO_SCALE_ATTENTION = ("your attention equals softmax(QK^T) V without the 1/sqrt(D) scale: divide the scores by "
                      "sqrt(D) when scale is None (that is why the 'custom scale' case, scale=1, passes)")
SOFTMAX_OVER_QUERIES = ("you took the softmax over the queries (dim -2): each query's weights over the keys "
                        "must sum to 1, so take it over the last dim")
INVERTED_MASK = ("your mask works the wrong way round: here True means the query MAY attend to that key "
                 "(torch.nn.MultiheadAttention's attn_mask is the opposite); fill the scores where mask is False")


@pytest.mark.parametrize("scale", [None, 0.5])
def test_3_1_attention_scores(ex, scale):
    q, k, _ = _qkv()
    got = ex.attention_scores(q, k, scale)
    D = q.shape[-1]
    s = D ** -0.5 if scale is None else scale
    qk = torch.einsum("bhtd,bhsd->bhts", q, k)
    expected = qk * s
    mistakes = {NO_SCALE_SCORES: qk, SCORES_OVER_D: qk / D} if scale is None else {
        IGNORED_SCALE: qk * D ** -0.5, DIVIDED_BY_SCALE: qk / scale}
    expect_close(got, expected, exercise="3.1", case=f"B=2 H=4 T=5 S=7 D=8, scale={scale}", mistakes=mistakes)


def _attention_by_hand(q, k, v, mask=None, scale=None, softmax_dim=-1):
    """softmax(q k^T * scale, masked) v, with the knobs the common mistakes turn."""
    scores = q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5 if scale is None else scale)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(softmax_dim) @ v


@pytest.mark.parametrize("case", ["no mask", "causal mask", "random boolean mask", "custom scale"])
def test_3_2_scaled_dot_product_attention(ex, case):
    q, k, v = _qkv(T=6, S=6)
    mask, scale = None, None
    if case == "causal mask":
        mask = torch.ones(6, 6, dtype=torch.bool).tril()
    elif case == "random boolean mask":
        mask = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(1)) > 0.4
        mask[..., 0] = True  # every query sees at least one key
    elif case == "custom scale":
        scale = 1.0
    got = ex.scaled_dot_product_attention(q, k, v, mask, scale) if scale else ex.scaled_dot_product_attention(q, k, v, mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    mistakes = {
        NO_SCALE_ATTENTION: _attention_by_hand(q, k, v, mask, scale=1.0),
        IGNORED_SCALE: _attention_by_hand(q, k, v, mask),
        SOFTMAX_OVER_QUERIES: _attention_by_hand(q, k, v, mask, scale, softmax_dim=-2),
    }
    if mask is not None:
        mistakes[INVERTED_MASK] = _attention_by_hand(q, k, v, ~mask, scale)
    expect_close(got, expected, exercise="3.2", case=case, atol=1e-5, mistakes=mistakes)


def test_3_3_split_heads(ex):
    x = torch.arange(2 * 3 * 12, dtype=torch.float32).reshape(2, 3, 12)
    got = ex.split_heads(x, 4)
    expect_shape(got, (2, 4, 3, 3), exercise="3.3", case="B=2 T=3 C=12, H=4")
    expected = x.view(2, 3, 4, 3).permute(0, 2, 1, 3)
    mistakes = {
        "you reshaped (B, T, H*D) straight to (B, H, T, D), which mixes positions into heads: view it as "
        "(B, T, H, D) first, then swap T and H (transpose(1, 2))": x.reshape(2, 4, 3, 3),
        "your heads take every H-th column: the head index is the outer part of the last dim, so view it as "
        "(B, T, H, D), not (B, T, D, H)": x.view(2, 3, 3, 4).permute(0, 3, 1, 2),
    }
    expect_close(got, expected, exercise="3.3", case="head h holds columns h*D..(h+1)*D-1", mistakes=mistakes)


def test_3_4_merge_heads(ex):
    x = torch.randn(2, 4, 3, 5)
    got = ex.merge_heads(x)
    expected = x.permute(0, 2, 1, 3).reshape(2, 3, 20)
    mistakes = {"you reshaped (B, H, T, D) straight to (B, T, H*D): transpose(1, 2) first, so that each "
                "position's heads sit side by side": x.reshape(2, 3, 20)}
    expect_close(got, expected, exercise="3.4", case="B=2 H=4 T=3 D=5", mistakes=mistakes)


@pytest.mark.parametrize("n_rep", [1, 2, 4])
def test_3_5_repeat_kv(ex, n_rep):
    x = torch.randn(2, 2, 3, 4)
    got = ex.repeat_kv(x, n_rep)
    expected = torch.stack([x[:, h // n_rep] for h in range(2 * n_rep)], dim=1)
    mistakes = {"you tiled the heads (0, 1, 0, 1, ...), as x.repeat does: output head h must use input head "
                "h // n_rep (0, 0, 1, 1, ...), which is torch.repeat_interleave": x.repeat(1, n_rep, 1, 1)}
    expect_close(got, expected, exercise="3.5", case=f"Hkv=2, n_rep={n_rep}", mistakes=mistakes)
    if n_rep > 1:  # n_rep=1 is the identity: only meaningful next to a real repeat
        assert got.shape[1] == 2 * n_rep


def _mha_by_hand(x, w_q, w_k, w_v, w_o, H, Hkv, mask=None, scale=None, tile_kv=False):
    """Multi-head attention, with the knobs the common mistakes turn (no scale; kv heads tiled, not interleaved)."""
    B, T, _ = x.shape
    q = (x @ w_q.T).view(B, T, H, -1).transpose(1, 2)  # (B, H, T, D)
    k, v = ((x @ w.T).view(B, T, Hkv, -1).transpose(1, 2) for w in (w_k, w_v))  # (B, Hkv, T, D)
    repeat = (lambda t: t.repeat(1, H // Hkv, 1, 1)) if tile_kv else (lambda t: t.repeat_interleave(H // Hkv, 1))
    out = _attention_by_hand(q, repeat(k), repeat(v), mask, scale)  # (B, H, T, D)
    return out.transpose(1, 2).reshape(B, T, -1) @ w_o.T


MHA_NO_SCALE = ("your multi-head attention is not scaled by 1/sqrt(D), D the head size: "
                "fix exercise 3.2 (or 3.1) first, or pass nothing as scale")
MHA_TILED_KV = ("your query heads use the wrong key/value heads: query head h must use kv head "
                "h // (H // Hkv), as repeat_kv (exercise 3.5) gives")


@pytest.mark.parametrize("num_heads", [1, 4])
def test_3_6_multi_head_attention_matches_torch(ex, num_heads):
    torch.manual_seed(0)
    C = 16
    ref = torch.nn.MultiheadAttention(C, num_heads, bias=False, batch_first=True)
    x = torch.randn(2, 5, C)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    expected, _ = ref(x, x, x, attn_mask=~causal, need_weights=False)  # torch's mask: True = blocked
    w_q, w_k, w_v = ref.in_proj_weight.chunk(3, dim=0)
    got = ex.multi_head_attention(x, w_q, w_k, w_v, ref.out_proj.weight, num_heads, mask=causal)
    unscaled = _mha_by_hand(x, w_q, w_k, w_v, ref.out_proj.weight, num_heads, num_heads, causal, scale=1.0)
    expect_close(got, expected, exercise="3.6", case=f"H={num_heads}, causal, vs torch.nn.MultiheadAttention",
                 atol=1e-5, mistakes={MHA_NO_SCALE: unscaled.detach()})


def test_3_6_grouped_query_attention(ex):
    torch.manual_seed(1)
    C, H, Hkv, D = 16, 4, 2, 4
    x = torch.randn(2, 5, C)
    w_q, w_o = torch.randn(H * D, C) / 4, torch.randn(C, H * D) / 4
    w_k, w_v = torch.randn(Hkv * D, C) / 4, torch.randn(Hkv * D, C) / 4
    got = ex.multi_head_attention(x, w_q, w_k, w_v, w_o, H, num_kv_heads=Hkv)
    # Reference: GQA equals ordinary MHA whose k/v weights repeat each kv head's rows for its group.
    expand = lambda w: w.view(Hkv, D, C).repeat_interleave(H // Hkv, dim=0).reshape(H * D, C)  # noqa: E731
    q = (x @ w_q.T).view(2, 5, H, D).transpose(1, 2)
    k = (x @ expand(w_k).T).view(2, 5, H, D).transpose(1, 2)
    v = (x @ expand(w_v).T).view(2, 5, H, D).transpose(1, 2)
    expected = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 5, H * D) @ w_o.T
    mistakes = {MHA_NO_SCALE: _mha_by_hand(x, w_q, w_k, w_v, w_o, H, Hkv, scale=1.0),
                MHA_TILED_KV: _mha_by_hand(x, w_q, w_k, w_v, w_o, H, Hkv, tile_kv=True)}
    expect_close(got, expected, exercise="3.6", case="H=4, Hkv=2 (grouped-query)", atol=1e-5, mistakes=mistakes)
