"""The fast decode step: ``generate(..., compile=True)``.

A cached decode step of a small model is mostly a stream of weights (one read of every matrix,
``layers/linear.py``) plus many small kernels and Python around it. Compiling the step with
``torch.compile`` removes the Python and fuses the small kernels; what remains is the choice of
matrix-vector kernel, made per shape and per dtype (measured in ``docs/generation.md``):

- up to :data:`~minitransformer.layers.linear.MATVEC_MAX_ROWS` rows (batch 1 to 8 in fp32 and int8,
  batch 1 in bf16): the compiled matrix-vector reduction of ``layers/linear.py``, which streams each
  weight once, int8 as int8;
- more rows in bf16 or fp16 on the CPU: inductor's *freezing*, which treats the weights as constants
  and repacks each one, once, into oneDNN's blocked layout, whose kernels use the CPU's AVX-512 BF16
  and AMX instructions (GPT-2 124M bf16 at batch 8: 307 tokens/s frozen, 155 with the reduction);
- anything else: ``F.linear`` (MKL, oneDNN) inside the compiled graph, the small ops around it fused.

What it costs: compiling takes seconds (about 15 s cold for GPT-2 124M on 2 cores); it is paid once
per process per model and shape, and inductor keeps the generated code on disk
(``TORCHINDUCTOR_CACHE_DIR``, default a ``torchinductor_<user>`` folder in the temp directory), so a
second process starts faster. A frozen model holds its repacked weights as well as its own (bf16:
twice the weight memory) and does not see later changes to them: when its weights change (training,
``load_state_dict``), the next generation notices (:func:`weights_version`) and compiles again.

Where the fast path does not apply (a device other than the CPU or CUDA, or a compiler that fails:
no C++ compiler on the machine, say), the step runs eagerly after a one-line warning.
"""

from __future__ import annotations

import warnings
import weakref

import torch

from minitransformer.layers.linear import MATVEC_MAX_ROWS

#: Devices the compiled step supports; elsewhere generation falls back to eager with a notice.
COMPILE_DEVICES = ("cpu", "cuda")

# model -> (options key, weights version, compiled function), one entry per model and function name
_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def weights_version(model: torch.nn.Module) -> tuple[int, ...]:
    """A fingerprint that changes when any weight is written in place (torch's per-tensor version counter)."""
    return tuple(t._version for t in model.state_dict(keep_vars=True).values())


def compile_options(model: torch.nn.Module, device: torch.device, user: dict | None = None, rows: int = 1) -> dict:
    """``torch.compile`` keyword arguments for a decode step of ``rows`` rows of ``model`` on ``device``.

    Static shapes (``dynamic=False``: a static cache has the same shapes at every step); freezing for
    bf16 and fp16 weights on the CPU where the step does not take the reduction (module docstring:
    freezing would fold the reduction's conversions of the weights to fp32 into fp32 copies).
    ``user``'s keys win: ``compile={...}``.
    """
    options: dict = {"dynamic": False}
    half = model.dtype in (torch.bfloat16, torch.float16)
    if device.type == "cpu" and half and rows > MATVEC_MAX_ROWS.get(model.dtype, 0):
        options["options"] = {"freezing": True}
    return options | (user or {})


def compiled_step(model: torch.nn.Module, fn, device: torch.device, compile: bool | dict, rows: int = 1):
    """``fn`` (the model's forward or ``decode``) compiled for decode steps of ``rows`` rows (the batch),
    or ``fn`` itself with a one-line warning where the fast path does not apply. One compiled function
    per model, ``fn`` name and options is kept for the life of the model, and compiled again only
    when its weights changed under a frozen graph."""
    if device.type not in COMPILE_DEVICES:
        warnings.warn(f"compile=True: the compiled decode step supports {', '.join(COMPILE_DEVICES)}, not "
                      f"{device.type}; decoding eagerly", UserWarning, stacklevel=4)
        return fn
    options = compile_options(model, device, compile if isinstance(compile, dict) else None, rows)
    key = (getattr(fn, "__name__", repr(fn)), repr(sorted(options.items(), key=str)))
    frozen = options.get("options", {}).get("freezing", False)
    version = weights_version(model) if frozen else None
    entries = _COMPILED.setdefault(model, {})
    if key in entries and entries[key][0] == version:
        return entries[key][1]
    if key in entries:  # a frozen graph holds the old weights: compile from the new ones
        torch._dynamo.reset()
    compiled = torch.compile(fn, **options)
    step = EagerFallback(compiled, fn)
    entries[key] = (version, step)
    return step


class EagerFallback:
    """Calls the compiled function; if compiling fails (no C++ compiler, an unsupported op), warns once
    and calls the eager one from then on, instead of a traceback from inside the compiler."""

    def __init__(self, compiled, eager):
        self.compiled, self.eager, self.failed = compiled, eager, False

    def __call__(self, *args, **kwargs):
        if not self.failed:
            try:
                return self.compiled(*args, **kwargs)
            except (torch._dynamo.exc.BackendCompilerFailed, torch._dynamo.exc.InternalTorchDynamoError,
                    OSError) as error:
                self.failed = True
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                warnings.warn(f"compile=True: torch.compile failed ({first_line[:200]}); decoding eagerly",
                              UserWarning, stacklevel=2)
        return self.eager(*args, **kwargs)
