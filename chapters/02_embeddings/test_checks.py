"""Checks for chapter 2. References: one-hot matmul, torch.nn.Embedding, the formulas evaluated with
Python's math module, and RoPE as multiplication by complex numbers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from minitransformer.exercises import expect_close, expect_shape


def test_2_1_lookup_equals_one_hot_matmul(ex):
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(11, 4, generator=g)  # V=11, C=4
    ids = torch.tensor([[3, 0, 10, 3], [7, 7, 1, 2]])  # (B=2, T=4), repeats and both ends of the vocabulary
    got = ex.embedding_lookup(ids, weight)
    expect_shape(got, (2, 4, 4), exercise="2.1", case="ids (2, 4), weight (11, 4)")
    expected = F.one_hot(ids, num_classes=11).float() @ weight  # (B, T, V) @ (V, C)
    expect_close(got, expected, exercise="2.1", case="vs one_hot(ids) @ weight")


def test_2_1_lookup_matches_nn_embedding_gradient(ex):
    torch.manual_seed(1)
    ref = torch.nn.Embedding(6, 3)
    weight = ref.weight.detach().clone().requires_grad_(True)
    ids = torch.tensor([[0, 5, 5, 2]])
    ex.embedding_lookup(ids, weight).sum().backward()
    ref(ids).sum().backward()
    expect_close(weight.grad, ref.weight.grad, exercise="2.1",
                 case="gradient: a row used twice gets twice the gradient, unused rows get zero")


@pytest.mark.parametrize("past_length", [0, 3])
def test_2_2_embed_with_positions(ex, past_length):
    torch.manual_seed(2)
    tok, pos = torch.nn.Embedding(9, 5), torch.nn.Embedding(8, 5)
    ids = torch.tensor([[1, 4, 8], [0, 0, 2]])  # (B=2, T=3)
    got = ex.embed_with_positions(ids, tok.weight.detach(), pos.weight.detach(), past_length=past_length)
    positions = torch.tensor([[past_length + t for t in range(3)]] * 2)  # (B, T), one row per sequence
    expected = (tok(ids) + pos(positions)).detach()
    expect_close(got, expected, exercise="2.2",
                 case=f"T=3, past_length={past_length}: positions {past_length}..{past_length + 2}")


@pytest.mark.parametrize("num_positions, dim, base", [(10, 8, 10000.0), (6, 16, 100.0)])
def test_2_3_sinusoidal_encoding(ex, num_positions, dim, base):
    got = ex.sinusoidal_encoding(num_positions, dim, base)
    expected = torch.tensor([
        [math.sin(pos / base ** (j / dim)) if j % 2 == 0 else math.cos(pos / base ** ((j - 1) / dim))
         for j in range(dim)]
        for pos in range(num_positions)
    ])  # one entry at a time, straight from the paper's formula
    expect_close(got, expected, exercise="2.3", case=f"num_positions={num_positions}, dim={dim}, base={base:g}")


@pytest.mark.parametrize("head_dim, rope_theta", [(8, 10000.0), (16, 500000.0)])
def test_2_4_rope_inv_freq(ex, head_dim, rope_theta):
    got = ex.rope_inv_freq(head_dim, rope_theta)
    expected = torch.tensor([rope_theta ** (-2 * i / head_dim) for i in range(head_dim // 2)])
    expect_close(got, expected, exercise="2.4", case=f"head_dim={head_dim}, rope_theta={rope_theta:g}")


def _angles(position_ids: torch.Tensor, head_dim: int, rope_theta: float) -> torch.Tensor:
    inv_freq = torch.tensor([rope_theta ** (-2 * i / head_dim) for i in range(head_dim // 2)], dtype=torch.float64)
    return position_ids.double()[:, None] * inv_freq  # (T, D/2)


def _complex_rope(pairs: torch.Tensor, position_ids: torch.Tensor, rope_theta: float) -> torch.Tensor:
    """Rotating the pair (a, b) by angle t is multiplying a + ib by e^{it}. ``pairs``: (..., T, D/2) complex."""
    angles = _angles(position_ids, 2 * pairs.shape[-1], rope_theta)
    return pairs * torch.polar(torch.ones_like(angles), angles)


CASES = [("positions 0..5", torch.arange(6), 10000.0), ("positions 7..12", torch.arange(7, 13), 10000.0),
         ("rope_theta=500000", torch.arange(6), 500000.0)]


@pytest.mark.parametrize("case, position_ids, rope_theta", CASES)
def test_2_5_rope_interleaved_is_complex_multiplication(ex, case, position_ids, rope_theta):
    x = torch.randn(2, 3, 6, 8, generator=torch.Generator().manual_seed(3))  # (B, H, T, D)
    got = ex.rope_interleaved(x, position_ids, rope_theta)
    pairs = torch.view_as_complex(x.double().reshape(2, 3, 6, 4, 2))  # pair i = (x[2i], x[2i+1])
    expected = torch.view_as_real(_complex_rope(pairs, position_ids, rope_theta)).flatten(-2)
    expect_close(got, expected, exercise="2.5", case=f"{case}, vs (x[2i] + i x[2i+1]) * e^(i p inv_freq[i])")


@pytest.mark.parametrize("case, position_ids, rope_theta", CASES)
def test_2_6_rope_rotate_half_is_complex_multiplication(ex, case, position_ids, rope_theta):
    x = torch.randn(2, 3, 6, 8, generator=torch.Generator().manual_seed(4))  # (B, H, T, D)
    got = ex.rope_rotate_half(x, position_ids, rope_theta)
    pairs = torch.complex(x[..., :4].double(), x[..., 4:].double())  # pair i = (x[i], x[i + D/2])
    rotated = _complex_rope(pairs, position_ids, rope_theta)
    expected = torch.cat((rotated.real, rotated.imag), dim=-1)
    expect_close(got, expected, exercise="2.6", case=f"{case}, vs (x[i] + i x[i+D/2]) * e^(i p inv_freq[i])")


def test_2_6_rope_score_depends_only_on_distance(ex):
    g = torch.Generator().manual_seed(5)
    q, k = torch.randn(1, 1, 1, 8, generator=g), torch.randn(1, 1, 1, 8, generator=g)
    positions = [(0, 0), (3, 1), (7, 5), (12, 10), (2, 9), (20, 27)]  # (m, n) pairs, several at the same distance
    got = torch.stack([
        (ex.rope_rotate_half(q, torch.tensor([m])) * ex.rope_rotate_half(k, torch.tensor([n]))).sum()
        for m, n in positions
    ])
    qc = torch.complex(q[0, 0, 0, :4].double(), q[0, 0, 0, 4:].double())
    kc = torch.complex(k[0, 0, 0, :4].double(), k[0, 0, 0, 4:].double())
    expected = torch.stack([
        (qc * kc.conj() * torch.polar(torch.ones(4, dtype=torch.float64), _angles(torch.tensor([m - n]), 8, 1e4)[0]))
        .sum().real for m, n in positions
    ])  # Re(sum q k* e^{i (m - n) w}): a function of m - n alone
    expect_close(got, expected, exercise="2.6",
                 case="q at position m . k at position n must equal a function of m - n; pairs " + str(positions))


def test_2_6_layouts_agree_after_permuting_coordinates(ex):
    x = torch.randn(1, 2, 5, 8, generator=torch.Generator().manual_seed(6))
    perm = torch.tensor([0, 2, 4, 6, 1, 3, 5, 7])  # interleaved pair i = (2i, 2i+1) -> rotate-half pair (i, i+4)
    positions = torch.arange(5)
    got = ex.rope_rotate_half(x[..., perm], positions)
    expected = ex.rope_interleaved(x, positions)[..., perm]
    expect_close(got, expected, exercise="2.6",
                 case="rope_rotate_half(x[..., perm]) == rope_interleaved(x)[..., perm], perm = evens then odds")
