import math

import pytest
import torch

from minitransformer.layers import (
    RotaryEmbedding,
    apply_rope_interleaved,
    permute_qk_weight_for_rotate_half,
    rope_inv_freq,
)


def _rope_by_complex_numbers(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Independent reference: interleaved pairs as complex numbers multiplied by e^{i p w}."""
    D = x.shape[-1]
    freqs = torch.tensor([theta ** (-2 * i / D) for i in range(D // 2)], dtype=torch.float64)
    angles = positions.double()[:, None] * freqs  # (T, D/2)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], D // 2, 2).contiguous())
    rotated = z * torch.polar(torch.ones_like(angles), angles)
    return torch.view_as_real(rotated).reshape(x.shape).float()


@pytest.mark.parametrize("theta", [10000.0, 500000.0])
def test_interleaved_equals_complex_multiplication(theta):
    x = torch.randn(2, 3, 7, 8)
    rope = RotaryEmbedding(8, rope_theta=theta, layout="interleaved")
    q, _ = rope(x, x, torch.arange(7))
    torch.testing.assert_close(q, _rope_by_complex_numbers(x, torch.arange(7), theta), atol=1e-5, rtol=0)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_scores_depend_only_on_distance(layout):
    rope = RotaryEmbedding(16, layout=layout)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(pq, pk):
        rq, _ = rope(q, q, torch.tensor([pq]))
        rk, _ = rope(k, k, torch.tensor([pk]))
        return (rq * rk).sum()

    torch.testing.assert_close(score(5, 2), score(13, 10), atol=1e-5, rtol=0)
    assert not torch.allclose(score(5, 2), score(5, 4), atol=1e-3)


def test_rotate_half_with_permuted_weights_gives_same_scores_as_interleaved():
    """Why converters permute q/k rows: interleaved RoPE on W equals rotate-half RoPE on permuted W."""
    torch.manual_seed(0)
    C, H, D, T = 32, 4, 8, 6
    w_q, w_k = torch.randn(H * D, C), torch.randn(H * D, C)
    x = torch.randn(1, T, C)
    pos = torch.arange(T)

    def scores(wq, wk, layout):
        rope = RotaryEmbedding(D, layout=layout)
        q = (x @ wq.T).view(1, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = (x @ wk.T).view(1, T, H, D).transpose(1, 2)  # (B, H, T, D)
        q, k = rope(q, k, pos)
        return q @ k.transpose(-1, -2)

    interleaved = scores(w_q, w_k, "interleaved")
    half_permuted = scores(permute_qk_weight_for_rotate_half(w_q, H), permute_qk_weight_for_rotate_half(w_k, H), "half")
    half_unpermuted = scores(w_q, w_k, "half")
    torch.testing.assert_close(half_permuted, interleaved, atol=1e-4, rtol=1e-5)
    assert (half_unpermuted - interleaved).abs().max() > 1e-2  # without the permutation they differ


def test_linear_scaling_divides_frequencies():
    plain = rope_inv_freq(16, 10000.0)
    torch.testing.assert_close(rope_inv_freq(16, 10000.0, {"rope_type": "linear", "factor": 4.0}), plain / 4)


def test_llama3_scaling_keeps_high_and_scales_low_frequencies():
    cfg = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
           "original_max_position_embeddings": 8192}
    plain, scaled = rope_inv_freq(128, 500000.0), rope_inv_freq(128, 500000.0, cfg)
    wavelen = 2 * math.pi / plain
    high = wavelen < 8192 / 4
    low = wavelen > 8192 / 1
    torch.testing.assert_close(scaled[high], plain[high])
    torch.testing.assert_close(scaled[low], plain[low] / 8)
    mid = ~high & ~low
    assert torch.all(scaled[mid] <= plain[mid]) and torch.all(scaled[mid] >= plain[mid] / 8)


def test_unknown_scaling_and_odd_head_dim_error():
    with pytest.raises(ValueError, match="rope_scaling type 'yarn2'"):
        rope_inv_freq(8, 10000.0, {"rope_type": "yarn2", "factor": 2.0})
    with pytest.raises(ValueError, match="even head_dim"):
        RotaryEmbedding(7)
    with pytest.raises(ValueError, match="layout"):
        RotaryEmbedding(8, layout="zigzag")


def test_interleaved_apply_matches_pairwise_rotation():
    x = torch.randn(1, 1, 1, 4)
    cos, sin = torch.tensor([[[0.0, 1.0]]]), torch.tensor([[[1.0, 0.0]]])  # rotate pair 0 by 90 degrees
    out = apply_rope_interleaved(x, cos, sin)
    expected = torch.stack([-x[..., 1], x[..., 0], x[..., 2], x[..., 3]], dim=-1)
    torch.testing.assert_close(out, expected)
