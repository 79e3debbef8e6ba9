"""The tolerance policy: how close two tensors must be to count as equal.

Every comparison in the tests, the parity suite and the chapter checks takes its tolerance from
:data:`TOLERANCES` through :func:`tolerance` or :func:`assert_close`, so the policy lives in one place.
``docs/tolerances.md`` explains each number.

The numbers are *max abs diff* bounds (``atol``) plus a relative part (``rtol``), checked as
``|actual - expected| <= atol + rtol * |expected|`` elementwise, as ``torch.testing`` does.

``atol`` is stated for values of size 1. Rounding errors are a few ulps *of the numbers summed*,
so a tensor whose values are much larger (T5's logits, with no attention scaling and an untied head)
is compared with ``relative_to_max=True``: the bound becomes ``atol * max(1, max|expected|)``, the
same number of ulps at the values' own size. The element's own size (``rtol``) is not the right
measure: a logit near 0 computed from terms of size 30 carries the error of size-30 sums.

:func:`seed_weights` gives a model weights drawn from its own seeded generator, so that a test does
not depend on how the reference library happens to initialise a model (which changes between
releases).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


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
    relative_to_max: bool = False,
    what: str = "tensor",
) -> None:
    """Assert two tensors agree under the policy for ``dtype``/``device`` (defaults: ``actual``'s).

    ``relative_to_max``: scale ``atol`` by ``max(1, max|expected|)``, for tensors of large values
    (see the module docstring). The error names ``what``, the shapes, the max abs diff and the bound
    it broke.
    """
    if tuple(actual.shape) != tuple(expected.shape):
        raise AssertionError(f"{what}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
    tol = tolerance(dtype or actual.dtype, device or actual.device)
    atol = tol.atol if atol is None else atol
    rtol = tol.rtol if rtol is None else rtol
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    if relative_to_max:
        finite = e[torch.isfinite(e)]
        atol *= max(1.0, finite.abs().max().item() if finite.numel() else 1.0)
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


def seed_weights(model: nn.Module, seed: int = 0, std: float | Callable[[str], float] = 0.2,
                 norm_std: float = 0.2) -> nn.Module:
    """Overwrite every parameter of ``model`` with seeded random values, in place; returns ``model``.

    Matrices (and biases) get N(0, ``std``), or N(0, ``std(name)``) where a family needs a scale per
    parameter (T5 has no attention scaling: its init scales the projections instead); 1-D ``weight``
    parameters, the norms' gains, get 1 + N(0, ``norm_std``), so that a swapped or missing norm shows. Each parameter draws from its own
    generator, seeded by ``seed`` and the parameter's name: the values depend on neither the order in
    which a library registers its modules nor its own initialisation, so a test that builds a model
    with a reference library (transformers) tests the same weights on every release. Tied parameters
    stay tied (they are one tensor, written once).

    Example:
        >>> a = seed_weights(nn.Linear(3, 2), seed=1)
        >>> b = seed_weights(nn.Linear(3, 2), seed=1)
        >>> torch.equal(a.weight, b.weight)
        True
    """
    with torch.no_grad():
        for name, p in model.named_parameters():
            generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
            values = torch.randn(p.shape, generator=generator, dtype=torch.float32)
            if p.dim() == 1 and name.endswith("weight"):
                values = 1.0 + norm_std * values
            else:
                values = (std(name) if callable(std) else std) * values
            p.copy_(values.to(p.dtype))
    return model
