"""Assertions whose failure messages teach: which exercise, which case, what was expected, what came back."""

from __future__ import annotations

from typing import NoReturn

import torch

from minitransformer.testing import tolerance


def todo(exercise: str, hint: str) -> NoReturn:
    """What every stub calls: ``raise NotImplementedError`` with the exercise number and a hint."""
    raise NotImplementedError(f"Exercise {exercise} is not done yet. Hint: {hint}")


def _where(exercise: str, case: str) -> str:
    return f"Exercise {exercise}, case '{case}'"


def _preview(t: torch.Tensor, n: int = 6) -> str:
    flat = t.detach().flatten()[:n].tolist()
    body = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in flat)
    return f"[{body}{', ...' if t.numel() > n else ''}]"


def expect_shape(actual, shape: tuple[int, ...], *, exercise: str, case: str) -> None:
    """Fail unless ``actual`` is a tensor of exactly ``shape``."""
    if not isinstance(actual, torch.Tensor):
        raise AssertionError(f"{_where(exercise, case)}: expected a torch.Tensor, got {type(actual).__name__}")
    if tuple(actual.shape) != tuple(shape):
        raise AssertionError(
            f"{_where(exercise, case)}: expected shape {tuple(shape)}, got {tuple(actual.shape)}. "
            "Check your reshapes and which dimension you reduce over."
        )


def expect_close(actual, expected: torch.Tensor, *, exercise: str, case: str, atol: float | None = None) -> None:
    """Fail unless ``actual`` has ``expected``'s shape and values within the fp32 tolerance (or ``atol``)."""
    expect_shape(actual, tuple(expected.shape), exercise=exercise, case=case)
    if actual.dtype == torch.bool or expected.dtype == torch.bool:
        expect_equal(actual, expected, exercise=exercise, case=case)
        return
    atol = tolerance(torch.float32).atol if atol is None else atol
    a, e = actual.detach().double(), expected.detach().double()
    if torch.isnan(a).any() and not torch.isnan(e).any():
        raise AssertionError(
            f"{_where(exercise, case)}: your result holds NaN ({int(torch.isnan(a).sum())} values) where none "
            f"are expected. Expected {_preview(e)}; got {_preview(a)}."
        )
    diff = (a - e).abs().nan_to_num(0.0)
    if diff.max().item() > atol:
        idx = tuple(int(i) for i in torch.nonzero(diff > atol)[0])
        raise AssertionError(
            f"{_where(exercise, case)}: values differ by up to {diff.max().item():.3g} (allowed {atol:g}). "
            f"At index {idx}: expected {e[idx].item():.6g}, got {a[idx].item():.6g}.\n"
            f"  expected starts {_preview(e)}\n  yours starts    {_preview(a)}"
        )


def expect_equal(actual, expected, *, exercise: str, case: str) -> None:
    """Exact equality, for masks, ids and other discrete results."""
    if isinstance(expected, torch.Tensor):
        expect_shape(actual, tuple(expected.shape), exercise=exercise, case=case)
        if actual.dtype != expected.dtype:
            raise AssertionError(f"{_where(exercise, case)}: expected dtype {expected.dtype}, got {actual.dtype}")
        if not torch.equal(actual, expected):
            idx = tuple(int(i) for i in torch.nonzero(actual != expected)[0])
            raise AssertionError(
                f"{_where(exercise, case)}: {int((actual != expected).sum())} entries differ; at index {idx} "
                f"expected {expected[idx].item()}, got {actual[idx].item()}.\n"
                f"  expected:\n{expected.int() if expected.dtype == torch.bool else expected}\n"
                f"  yours:\n{actual.int() if actual.dtype == torch.bool else actual}"
            )
    elif actual != expected:
        raise AssertionError(f"{_where(exercise, case)}: expected {expected!r}, got {actual!r}")
