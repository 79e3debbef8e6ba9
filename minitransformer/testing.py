"""The tolerance policy: how close two tensors must be to count as equal.

Every comparison in the tests, the parity suite and the chapter checks takes its tolerance from
:data:`TOLERANCES` through :func:`tolerance` or :func:`assert_close`, so the policy lives in one place.
``docs/tolerances.md`` explains each number.

The numbers are *max abs diff* bounds (``atol``) plus a relative part (``rtol``), checked as
``|actual - expected| <= atol + rtol * |expected|`` elementwise, as ``torch.testing`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    why: str


# (dtype, device type) -> Tolerance. Device "cpu" or "cuda".
TOLERANCES: dict[tuple[torch.dtype, str], Tolerance] = {
    # fp32 has a 24-bit mantissa (eps 1.2e-7). Two implementations of the same maths differ
    # only in the order of their sums: a few ulps per op, far below 1e-5 after a whole model.
    (torch.float32, "cpu"): Tolerance(1e-5, 0.0, "fp32: reordered sums cost a few ulps (eps 1.2e-7)"),
    # On CUDA, matmuls may use TF32 (10-bit mantissa) unless disabled, and fused kernels
    # reorder reductions more aggressively.
    (torch.float32, "cuda"): Tolerance(1e-4, 1e-4, "fp32 on CUDA: TF32 matmuls and fused kernels"),
    # bf16 keeps 8 mantissa bits (eps 7.8e-3): one rounding of a value near 1 moves it by up to 4e-3.
    (torch.bfloat16, "cpu"): Tolerance(2e-2, 2e-2, "bf16: eps 7.8e-3, a few roundings per op"),
    (torch.bfloat16, "cuda"): Tolerance(2e-2, 2e-2, "bf16: eps 7.8e-3, a few roundings per op"),
    # fp16 keeps 11 mantissa bits (eps 9.8e-4) but a narrow range.
    (torch.float16, "cpu"): Tolerance(5e-3, 5e-3, "fp16: eps 9.8e-4, a few roundings per op"),
    (torch.float16, "cuda"): Tolerance(5e-3, 5e-3, "fp16: eps 9.8e-4, a few roundings per op"),
}

#: Tighter bound for a single op against its direct reference (e.g. our SDPA against torch's).
SINGLE_OP_FP32_ATOL = 1e-6


def tolerance(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> Tolerance:
    """The tolerance for comparing tensors of ``dtype`` computed on ``device``."""
    device_type = torch.device(device).type
    key = (dtype, "cuda" if device_type == "cuda" else "cpu")
    if key not in TOLERANCES:
        raise KeyError(
            f"no tolerance for dtype={dtype} on {device_type}; known: "
            f"{sorted({str(d) for d, _ in TOLERANCES})}. Add one to minitransformer.testing.TOLERANCES."
        )
    return TOLERANCES[key]


def max_abs_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest elementwise ``|actual - expected|``, computed in fp64."""
    return (actual.detach().double() - expected.detach().double()).abs().max().item()


def assert_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    what: str = "tensor",
) -> None:
    """Assert two tensors agree under the policy for ``dtype``/``device`` (defaults: ``actual``'s).

    The error names ``what``, the shapes, the max abs diff and the bound it broke.
    """
    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"{what}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    tol = tolerance(dtype or actual.dtype, device or actual.device)
    atol = tol.atol if atol is None else atol
    rtol = tol.rtol if rtol is None else rtol
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    if torch.isnan(a).any() != torch.isnan(e).any() or not torch.equal(torch.isnan(a), torch.isnan(e)):
        raise AssertionError(f"{what}: NaN pattern differs ({int(torch.isnan(a).sum())} NaN in actual, "
                             f"{int(torch.isnan(e).sum())} expected)")
    ok = torch.isnan(e) | ((a - e).abs() <= atol + rtol * e.abs())
    if not bool(ok.all()):
        diff = (a - e).abs().nan_to_num(0.0)
        idx = tuple(int(i) for i in torch.nonzero(~ok)[0])
        raise AssertionError(
            f"{what}: max abs diff {diff.max().item():.3e} breaks atol={atol:g} rtol={rtol:g} "
            f"({int((~ok).sum())} of {ok.numel()} elements); first at index {idx}: "
            f"actual {a[idx].item():.6g}, expected {e[idx].item():.6g}"
        )
