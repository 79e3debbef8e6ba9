"""Assertions whose failure messages teach: which exercise, which case, what was expected, what came back."""

from __future__ import annotations

from typing import NoReturn

import torch

from minitransformer.testing import tolerance


class ExerciseNotDone(NotImplementedError):
    """What a stub raises: a ``NotImplementedError`` that knows its exercise, so the grader can say "not started"."""

    def __init__(self, exercise: str, hint: str):
        super().__init__(f"Exercise {exercise} is not done yet. Hint: {hint}")
        self.exercise = exercise
        self.hint = hint


def todo(exercise: str, hint: str) -> NoReturn:
    """What every stub calls: raise :class:`ExerciseNotDone` with the exercise number and a hint."""
    raise ExerciseNotDone(exercise, hint)


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


def _digits(x: float, y: float) -> int:
    """The fewest significant digits (6 or more) at which ``x`` and ``y`` print differently."""
    for digits in range(6, 18):
        if f"{x:.{digits}g}" != f"{y:.{digits}g}":
            return digits
    return 17


def _close(a: torch.Tensor, b: torch.Tensor, atol: float) -> bool:
    """Within ``atol`` everywhere, NaN matching NaN (a known mistake may well produce NaN rows)."""
    return a.shape == b.shape and bool(torch.isclose(a, b, rtol=0.0, atol=atol, equal_nan=True).all())


def expect_close(actual, expected: torch.Tensor, *, exercise: str, case: str, atol: float | None = None,
                 mistakes: dict[str, torch.Tensor] | None = None) -> None:
    """Fail unless ``actual`` has ``expected``'s shape and values within the fp32 tolerance (or ``atol``).

    ``mistakes`` maps an explanation (what the student did, and what to do instead) to the result that
    mistake produces, computed by the check. When ``actual`` is not ``expected`` but is one of these,
    the failure message is that explanation: "your attention equals softmax(QK^T) V without the
    1/sqrt(D) scale" teaches more than "values differ by up to 0.3".
    """
    expect_shape(actual, tuple(expected.shape), exercise=exercise, case=case)
    if actual.dtype == torch.bool or expected.dtype == torch.bool:
        expect_equal(actual, expected, exercise=exercise, case=case)
        return
    atol = tolerance(torch.float32).atol if atol is None else atol
    a, e = actual.detach().double(), expected.detach().double()
    diff = (a - e).abs().nan_to_num(0.0)
    nan_where_none = bool(torch.isnan(a).any() and not torch.isnan(e).any())
    if diff.max().item() <= atol and not nan_where_none:
        return
    for explanation, wrong in (mistakes or {}).items():
        wrong = wrong.detach().double()
        if _close(a, wrong, atol) and not _close(e, wrong, atol):
            raise AssertionError(f"{_where(exercise, case)}: {explanation}\n"
                                 f"  expected starts {_preview(e)}\n  yours starts    {_preview(a)}")
    if nan_where_none:
        raise AssertionError(
            f"{_where(exercise, case)}: your result holds NaN ({int(torch.isnan(a).sum())} values) where none "
            f"are expected. Expected {_preview(e)}; got {_preview(a)}."
        )
    idx = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    want, got = e[idx].item(), a[idx].item()
    digits = _digits(want, got)
    lines = [
        f"{_where(exercise, case)}: {int((diff > atol).sum())} of {diff.numel()} values differ by more than "
        f"{atol:g}; the largest difference is {abs(got - want):.3g}, at index {idx}: expected "
        f"{want:.{digits}g}, got {got:.{digits}g}.",
        f"  expected starts {_preview(e)}",
        f"  yours starts    {_preview(a)}",
    ]
    if _preview(e) == _preview(a):
        lines.append(f"  (these print the same: the values differ below 4 digits; look at index {idx} above)")
    raise AssertionError("\n".join(lines))


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
