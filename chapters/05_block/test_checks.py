"""Checks for chapter 5. References: torch.nn.LayerNorm, torch.nn.RMSNorm, F.gelu, F.silu with
F.linear, and torch.nn.TransformerEncoderLayer with the same weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from minitransformer.exercises import expect_close


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("case, offset, eps", [("x ~ N(0, 1)", 0.0, 1e-5), ("eps=1e-12 (BERT)", 0.0, 1e-12),
                                               ("x around 20: variance as mean((x - mean)^2)", 20.0, 1e-5)])
def test_5_1_layer_norm_matches_torch(ex, case, offset, eps):
    x = torch.randn(2, 5, 16, generator=_gen(0)) + offset
    ref = torch.nn.LayerNorm(16, eps=eps)
    with torch.no_grad():
        ref.weight.copy_(torch.randn(16, generator=_gen(1)))
        ref.bias.copy_(torch.randn(16, generator=_gen(2)))
    got = ex.layer_norm(x, ref.weight.detach(), ref.bias.detach(), eps)
    expect_close(got, ref(x).detach(), exercise="5.1", case=f"{case}, vs torch.nn.LayerNorm")


@pytest.mark.parametrize("eps", [1e-6, 1e-5])
def test_5_2_rms_norm_matches_torch(ex, eps):
    x = torch.randn(2, 5, 16, generator=_gen(3)) * 3
    ref = torch.nn.RMSNorm(16, eps=eps)
    with torch.no_grad():
        ref.weight.copy_(torch.randn(16, generator=_gen(4)))
    got = ex.rms_norm(x, ref.weight.detach(), eps)
    expect_close(got, ref(x).detach(), exercise="5.2", case=f"eps={eps:g}, vs torch.nn.RMSNorm")


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_5_3_gelu_matches_torch(ex, approximate):
    x = torch.cat([torch.linspace(-8, 8, 161), torch.randn(40, generator=_gen(5))])
    got = ex.gelu(x, approximate=approximate)
    expect_close(got, F.gelu(x, approximate=approximate), exercise="5.3",
                 case=f"approximate={approximate!r} on [-8, 8], vs F.gelu")


def test_5_4_swiglu(ex):
    C, I = 8, 12
    g = _gen(6)
    x = torch.randn(2, 3, C, generator=g)
    w_gate, w_up = torch.randn(I, C, generator=g) / C**0.5, torch.randn(I, C, generator=g) / C**0.5
    w_down = torch.randn(C, I, generator=g) / I**0.5
    got = ex.swiglu(x, w_gate, w_up, w_down)
    expected = F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down)
    expect_close(got, expected, exercise="5.4", case=f"C={C}, I={I}, vs F.linear and F.silu")


@pytest.mark.parametrize("norm_first", [True, False])
def test_5_5_residual(ex, norm_first):
    torch.manual_seed(7)
    sublayer, norm = torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
    x = torch.randn(2, 4, 8) * 3 + 1
    got = ex.residual(x, sublayer, norm, norm_first)
    expected = x + sublayer(norm(x)) if norm_first else norm(x + sublayer(x))
    name = "pre-norm: x + sublayer(norm(x))" if norm_first else "post-norm: norm(x + sublayer(x))"
    expect_close(got, expected.detach(), exercise="5.5", case=name)


def test_5_5_post_norm_output_is_normalised(ex):
    x = torch.randn(3, 16) * 5 + 2
    got = ex.residual(x, torch.tanh, torch.nn.LayerNorm(16, elementwise_affine=False), norm_first=False)
    expect_close(got.mean(-1), torch.zeros(3), exercise="5.5", atol=1e-5,
                 case="post-norm: every output row has mean 0 (the norm comes last)")
    expect_close(got.var(-1, correction=0), torch.ones(3), exercise="5.5", atol=1e-3,
                 case="post-norm: every output row has variance 1 (the norm comes last)")


@pytest.mark.parametrize("norm_first, activation, masked", [
    (False, "relu", False), (True, "relu", False), (False, "gelu", True), (True, "gelu", True),
])
def test_5_6_encoder_block_matches_torch(ex, norm_first, activation, masked):
    torch.manual_seed(8)
    C, H, I, T = 16, 4, 32, 5
    ref = torch.nn.TransformerEncoderLayer(C, H, dim_feedforward=I, dropout=0.0, activation=activation,
                                           batch_first=True, norm_first=norm_first).eval()
    with torch.no_grad():  # non-trivial norms, so that a swapped norm1/norm2 shows
        for norm in (ref.norm1, ref.norm2):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(0.0, 0.5)
    x = torch.randn(2, T, C)
    allowed = torch.ones(T, T, dtype=torch.bool).tril() if masked else None
    with torch.no_grad():
        expected = ref(x, src_mask=None if allowed is None else ~allowed)  # torch's bool mask: True = blocked
        got = ex.encoder_block(x, ref.state_dict(), H, norm_first=norm_first, activation=activation,
                               attn_mask=allowed)
    kind = "pre-norm (norm_first=True)" if norm_first else "post-norm (norm_first=False)"
    expect_close(got, expected, exercise="5.6",
                 case=f"{kind}, {activation}, {'causal mask' if masked else 'no mask'}, "
                      "vs torch.nn.TransformerEncoderLayer")
