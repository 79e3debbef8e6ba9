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
