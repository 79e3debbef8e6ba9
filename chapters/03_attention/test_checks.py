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


@pytest.mark.parametrize("scale", [None, 0.5])
def test_3_1_attention_scores(ex, scale):
    q, k, _ = _qkv()
    got = ex.attention_scores(q, k, scale)
    s = q.shape[-1] ** -0.5 if scale is None else scale
    expected = torch.einsum("bhtd,bhsd->bhts", q, k) * s
    expect_close(got, expected, exercise="3.1", case=f"B=2 H=4 T=5 S=7 D=8, scale={scale}")


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
    expect_close(got, expected, exercise="3.2", case=case, atol=1e-5)


def test_3_3_split_heads(ex):
    x = torch.arange(2 * 3 * 12, dtype=torch.float32).reshape(2, 3, 12)
    got = ex.split_heads(x, 4)
    expect_shape(got, (2, 4, 3, 3), exercise="3.3", case="B=2 T=3 C=12, H=4")
    expected = x.view(2, 3, 4, 3).permute(0, 2, 1, 3)
    expect_close(got, expected, exercise="3.3", case="head h holds columns h*D..(h+1)*D-1")


def test_3_4_merge_heads(ex):
    x = torch.randn(2, 4, 3, 5)
    got = ex.merge_heads(x)
    expected = x.permute(0, 2, 1, 3).reshape(2, 3, 20)
    expect_close(got, expected, exercise="3.4", case="B=2 H=4 T=3 D=5")


@pytest.mark.parametrize("n_rep", [1, 2, 4])
def test_3_5_repeat_kv(ex, n_rep):
    x = torch.randn(2, 2, 3, 4)
    got = ex.repeat_kv(x, n_rep)
    expected = torch.stack([x[:, h // n_rep] for h in range(2 * n_rep)], dim=1)
    expect_close(got, expected, exercise="3.5", case=f"Hkv=2, n_rep={n_rep}")
    if n_rep > 1:  # n_rep=1 is the identity: only meaningful next to a real repeat
        assert got.shape[1] == 2 * n_rep


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
    expect_close(got, expected, exercise="3.6", case=f"H={num_heads}, causal, vs torch.nn.MultiheadAttention",
                 atol=1e-5)


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
    expect_close(got, expected, exercise="3.6", case="H=4, Hkv=2 (grouped-query)", atol=1e-5)
