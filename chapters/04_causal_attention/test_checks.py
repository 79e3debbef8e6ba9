"""Checks for chapter 4. Masks are compared with ones built entry by entry from their definition;
attention with torch.nn.functional.scaled_dot_product_attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from minitransformer.exercises import expect_close, expect_equal

LEFT_AND_RIGHT_PADDED = torch.tensor([[1, 1, 1, 0, 0],   # right padding: 3 tokens, then 2 pads
                                      [0, 0, 1, 1, 1]])  # left padding: 2 pads, then 3 tokens


def _by_definition(T: int, S: int, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """allowed[b, 0, i, j] = (j <= i + S - T) and attention_mask[b, j] == 1, one entry at a time."""
    B = 1 if attention_mask is None else attention_mask.shape[0]
    allowed = torch.zeros(B, 1, T, S, dtype=torch.bool)
    for b in range(B):
        for i in range(T):
            for j in range(S):
                real = attention_mask is None or int(attention_mask[b, j]) == 1
                allowed[b, 0, i, j] = j <= i + S - T and real
    return allowed


@pytest.mark.parametrize("T, S, case", [(4, None, "T=S=4"), (3, 5, "T=3 queries after 2 cached keys"),
                                        (1, 6, "one new token after 5 cached: sees all 6")])
def test_4_1_causal_mask(ex, T, S, case):
    got = ex.causal_mask(T) if S is None else ex.causal_mask(T, S)
    expect_equal(got, _by_definition(T, S or T)[0, 0], exercise="4.1", case=case)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_4_2_padding_mask(ex, dtype):
    got = ex.padding_mask(LEFT_AND_RIGHT_PADDED.to(dtype))
    expected = torch.zeros(2, 1, 1, 5, dtype=torch.bool)
    for b in range(2):
        for j in range(5):
            expected[b, 0, 0, j] = bool(LEFT_AND_RIGHT_PADDED[b, j] == 1)
    expect_equal(got, expected, exercise="4.2", case=f"attention_mask {LEFT_AND_RIGHT_PADDED.tolist()} ({dtype})")


@pytest.mark.parametrize("T, case", [(5, "T=S=5, right- and left-padded rows"),
                                     (2, "T=2 new queries, S=5 keys")])
def test_4_3_decoder_mask(ex, T, case):
    got = ex.decoder_mask(LEFT_AND_RIGHT_PADDED, T)
    expect_equal(got, _by_definition(T, 5, LEFT_AND_RIGHT_PADDED), exercise="4.3", case=case)


def _softmax_by_hand(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """exp of the allowed scores over their sum, in float64; a row with nothing allowed stays all zero."""
    s = scores.double()
    e = (s - s.amax(dim=-1, keepdim=True)).exp() * mask
    total = e.sum(dim=-1, keepdim=True)
    return torch.where(total > 0, e / total.clamp_min(1e-300), torch.zeros_like(e))


def _scores_and_mask():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 3, 4, 5, generator=g) * 3  # (B, H, T, S)
    mask = torch.rand(2, 1, 4, 5, generator=g) > 0.5  # (B, 1, T, S): broadcast over heads
    mask[0, 0, 0] = True  # a row that sees everything
    mask[1, 0, 2] = False  # a row that sees nothing
    mask[0, 0, 3] = False
    mask[0, 0, 3, 4] = True  # a row that sees exactly one key: probability 1 there
    return scores, mask


def test_4_4_masked_softmax(ex):
    scores, mask = _scores_and_mask()
    got = ex.masked_softmax(scores, mask)
    expect_close(got, _softmax_by_hand(scores, mask), exercise="4.4",
                 case="random mask (B, 1, T, S), with a full row, a one-key row and an empty row")


def test_4_4_fully_masked_row_is_zero(ex):
    scores = torch.randn(3, 4)
    mask = torch.tensor([[True, True, False, False], [False] * 4, [True] * 4])
    got = ex.masked_softmax(scores, mask)
    expect_close(got[1], torch.zeros(4), exercise="4.4",
                 case="row 1 has no allowed key: its probabilities are all 0 (not NaN, not uniform)")


def test_4_4_gradient_has_no_nan(ex):
    scores, mask = _scores_and_mask()
    scores = scores.requires_grad_(True)
    upstream = torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(1))
    (ex.masked_softmax(scores, mask) * upstream).sum().backward()
    by_hand = scores.detach().double().requires_grad_(True)
    (_softmax_by_hand(by_hand, mask) * upstream.double()).sum().backward()
    expect_close(scores.grad, by_hand.grad, exercise="4.4",
                 case="gradient w.r.t. scores, with a fully masked row (must be 0 there, not NaN)")


def _qkv(T: int, S: int, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 2, T, 4, generator=g), torch.randn(2, 2, S, 4, generator=g),
            torch.randn(2, 2, S, 4, generator=g))


@pytest.mark.parametrize("T, padded, case", [(5, False, "T=S=5, no padding"),
                                             (5, True, "T=S=5, left and right padding"),
                                             (2, True, "T=2 queries over S=5 keys, padded")])
def test_4_5_causal_attention_matches_torch(ex, T, padded, case):
    q, k, v = _qkv(T, 5)
    attention_mask = LEFT_AND_RIGHT_PADDED if padded else None
    got = ex.causal_attention(q, k, v, attention_mask)
    allowed = _by_definition(T, 5, attention_mask)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    expected = expected.masked_fill(~allowed.any(-1, keepdim=True), 0.0)  # queries that see nothing: zeros
    expect_close(got, expected, exercise="4.5", case=f"{case}, vs torch's scaled_dot_product_attention")


def test_4_5_no_future_leakage(ex):
    q, k, v = _qkv(6, 6)
    before = ex.causal_attention(q, k, v)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 4], v2[:, :, 4] = 100.0, -100.0  # change the token at position 4 only
    after = ex.causal_attention(q, k2, v2)
    expect_close(after[:, :, :4], before[:, :, :4], exercise="4.5",
                 case="changing token 4 must not change the outputs at positions 0..3")
    assert (after[:, :, 4] - before[:, :, 4]).abs().max() > 1.0, (
        "Exercise 4.5, case 'changing token 4 must change the output at position 4': it did not; "
        "is the query at position i allowed to see key i itself?")


def test_4_5_no_padding_leakage(ex):
    q, k, v = _qkv(5, 5)
    before = ex.causal_attention(q, k, v, LEFT_AND_RIGHT_PADDED)
    k2, v2 = k.clone(), v.clone()
    k2[1, :, :2], v2[1, :, :2] = 50.0, 50.0  # sequence 1's two left pads
    k2[0, :, 3:], v2[0, :, 3:] = 50.0, 50.0  # sequence 0's two right pads
    after = ex.causal_attention(q, k2, v2, LEFT_AND_RIGHT_PADDED)
    expect_close(after[0, :, :3], before[0, :, :3], exercise="4.5",
                 case="changing sequence 0's right pads must not change its real positions 0..2")
    expect_close(after[1, :, 2:], before[1, :, 2:], exercise="4.5",
                 case="changing sequence 1's left pads must not change its real positions 2..4")
