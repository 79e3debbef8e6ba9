"""Checks for chapter 0. Each compares your code with torch's own function or a formula computed another way."""

from __future__ import annotations

import pytest
import torch

from minitransformer.exercises import expect_close, expect_equal, expect_shape


def test_0_1_outer_sum(ex):
    a = torch.tensor([0.0, 10.0, 20.0])
    b = torch.tensor([1.0, 2.0, 3.0, 4.0])
    got = ex.outer_sum(a, b)
    expect_shape(got, (3, 4), exercise="0.1", case="a (3,), b (4,): rows follow a, columns follow b")
    expected = torch.stack([a[i] + b for i in range(3)])  # row i is a[i] + b, built one row at a time
    expect_close(got, expected, exercise="0.1", case="a=[0, 10, 20], b=[1, 2, 3, 4]")


@pytest.mark.parametrize("case", ["small values", "large values (1000s)", "dim=0"])
def test_0_2_stable_softmax(ex, case):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 6, generator=g)
    dim = -1
    if case == "large values (1000s)":
        x = x * 10 + 1000.0  # exp(1000) overflows float32: the naive formula gives inf / inf = NaN
    elif case == "dim=0":
        dim = 0
    got = ex.stable_softmax(x, dim=dim)
    expect_close(got, torch.softmax(x, dim=dim), exercise="0.2", case=f"{case}, vs torch.softmax")


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 1, 7, 2)])
def test_0_3_batched_matmul(ex, shape):
    B, N, K, M = shape
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(B, N, K, generator=g), torch.randn(B, K, M, generator=g)
    got = ex.batched_matmul(a, b)
    expect_close(got, torch.bmm(a, b), exercise="0.3", case=f"a {(B, N, K)} @ b {(B, K, M)}, vs torch.bmm")


def test_0_4_split_heads(ex):
    x = torch.arange(2 * 3 * 12, dtype=torch.float32).reshape(2, 3, 12)  # B=2, T=3, C=12
    got = ex.split_heads(x, 4)
    expect_shape(got, (2, 4, 3, 3), exercise="0.4", case="B=2 T=3 C=12 split into H=4 heads of D=3")
    expected = torch.empty(2, 4, 3, 3)
    for h in range(4):
        expected[:, h] = x[:, :, h * 3:(h + 1) * 3]  # head h owns columns 3h, 3h+1, 3h+2
    expect_close(got, expected, exercise="0.4", case="head h holds columns h*D .. (h+1)*D - 1")


@pytest.mark.parametrize(
    "name, f, df",
    [
        ("sum(x**3)", lambda x: (x**3).sum(), lambda x: 3 * x**2),
        ("sum(sin(x) * x)", lambda x: (x.sin() * x).sum(), lambda x: x.cos() * x + x.sin()),
        ("norm(x)", lambda x: x.norm(), lambda x: x / x.norm()),
    ],
)
def test_0_5_gradient(ex, name, f, df):
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    got = ex.gradient(f, x)
    expect_close(got, df(x), exercise="0.5", case=f"d/dx {name}, vs the derivative worked out by hand")
    expect_equal(x.requires_grad or x.grad is not None, False, exercise="0.5",
                 case="the x passed in is left alone (no requires_grad, no .grad)")


@pytest.mark.parametrize("bias", [True, False])
def test_0_6_linear_matches_nn_linear(ex, bias):
    torch.manual_seed(3)
    ref = torch.nn.Linear(5, 7, bias=bias)
    ours = ex.Linear(5, 7, bias=bias)
    names = {name: tuple(p.shape) for name, p in ours.named_parameters()}
    expected_names = {"weight": (7, 5), **({"bias": (7,)} if bias else {})}
    expect_equal(names, expected_names, exercise="0.6", case=f"parameter names and shapes, bias={bias}")
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 5)
    expect_close(ours(x), ref(x), exercise="0.6", case=f"x (2, 3, 5), bias={bias}, weights copied from nn.Linear")


def test_0_6_linear_gradients(ex):
    torch.manual_seed(4)
    ref, ours = torch.nn.Linear(4, 3), ex.Linear(4, 3)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(6, 4)
    ref(x).pow(2).sum().backward()
    ours(x).pow(2).sum().backward()
    expect_close(ours.weight.grad, ref.weight.grad, exercise="0.6", case="gradient of weight, vs nn.Linear")
    expect_close(ours.bias.grad, ref.bias.grad, exercise="0.6", case="gradient of bias, vs nn.Linear")
