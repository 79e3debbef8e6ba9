import pytest
import torch

from minitransformer.testing import TOLERANCES, assert_close, max_abs_diff, tolerance


def test_policy_covers_every_dtype_and_device():
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for device in ("cpu", "cuda"):
            tol = tolerance(dtype, device)
            assert tol.atol > 0 and tol.why
    assert tolerance(torch.float32).atol == 1e-5
    assert len(TOLERANCES) == 6
    with pytest.raises(KeyError, match="no tolerance for dtype=torch.float64"):
        tolerance(torch.float64)


def test_assert_close_passes_within_and_fails_outside_with_a_useful_message():
    x = torch.zeros(3, 4)
    assert_close(x + 5e-6, x)
    with pytest.raises(AssertionError, match=r"logits: max abs diff 2\.000e-05 breaks atol=1e-05"):
        assert_close(x + 2e-5, x, what="logits")
    with pytest.raises(AssertionError, match=r"shape \(3, 4\) != expected \(4, 3\)"):
        assert_close(x, x.T)
    assert_close(x.bfloat16() + 0.01, x.bfloat16())  # bf16 gets its own, looser bound
    with pytest.raises(AssertionError, match="NaN"):
        assert_close(torch.full((2,), float("nan")), torch.zeros(2))
    assert max_abs_diff(torch.ones(2), torch.zeros(2)) == 1.0


def test_relative_to_max_scales_the_bound_with_the_values():
    big = torch.tensor([30.0, 0.01, -20.0])
    assert_close(big + 2e-4, big, relative_to_max=True)  # 2e-4 <= 1e-5 * 30
    with pytest.raises(AssertionError, match=r"breaks atol=0\.0003"):
        assert_close(big + 4e-4, big, relative_to_max=True)
    with pytest.raises(AssertionError):
        assert_close(big + 2e-4, big)  # without it: the plain 1e-5
    small = torch.tensor([0.5, -0.2])
    with pytest.raises(AssertionError, match=r"breaks atol=1e-05"):
        assert_close(small + 2e-5, small, relative_to_max=True)  # values below 1 keep the plain bound


def test_seed_weights_depend_on_names_and_seed_only():
    from torch import nn

    from minitransformer.testing import seed_weights

    def build(order):
        m = nn.Module()
        for name in order:
            setattr(m, name, nn.Linear(3, 3) if name != "norm" else nn.LayerNorm(3))
        return m

    a = seed_weights(build(["q", "norm", "k"]), seed=3)
    torch.manual_seed(123)  # the global RNG and the construction order do not matter
    b = seed_weights(build(["k", "q", "norm"]), seed=3)
    for name in ("q.weight", "q.bias", "k.weight", "norm.weight", "norm.bias"):
        assert torch.equal(a.get_parameter(name), b.get_parameter(name)), name
    assert not torch.equal(a.q.weight, a.k.weight)
    assert (a.norm.weight - 1).abs().max() < 1.0 and a.norm.weight.std() > 0  # gains near 1, not all 1
    c = seed_weights(build(["q", "norm", "k"]), seed=4)
    assert not torch.equal(a.q.weight, c.q.weight)
    tied = nn.Module()
    tied.emb, tied.head = nn.Embedding(5, 3), nn.Linear(3, 5, bias=False)
    tied.head.weight = tied.emb.weight
    seed_weights(tied)
    assert tied.head.weight is tied.emb.weight
