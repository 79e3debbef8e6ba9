"""The two errors loading raises: :class:`LoadingError` and its config-file kind, :class:`ConfigError`.

Both say which file (or which key) is wrong and what to do about it, so that a bad checkpoint never
ends in a traceback from deep inside a layer, nor in a model that loads and then computes garbage.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


class LoadingError(RuntimeError):
    """A checkpoint that cannot be loaded, and why.

    Two kinds of problem, two ways to build it:

    - the weights and the model disagree: ``LoadingError(missing, unexpected, mismatched, where=...)``
      lists every missing key, unexpected key, shape mismatch (and ``wrong_dtype`` tensor) by name, at once;
    - one file cannot be used (invalid JSON, truncated safetensors, a path leading out of the checkpoint):
      ``LoadingError.in_file(path, problem, fix)``.

    Attributes:
        missing, unexpected, mismatched, wrong_dtype: the lists above (empty for a file problem).
        path: the file at fault, for a file problem (else None).
    """

    def __init__(self, missing: Iterable[str] = (), unexpected: Iterable[str] = (),
                 mismatched: Iterable[str] = (), where: str = "", *, wrong_dtype: Iterable[str] = (),
                 message: str | None = None):
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        self.wrong_dtype = list(wrong_dtype)
        self.path: Path | None = None
        super().__init__(message if message is not None else self._disagreement(where))

    @classmethod
    def in_file(cls, path: str | os.PathLike, problem: str, fix: str) -> LoadingError:
        """``"<path> <problem>. <fix>."``: one file of the checkpoint is wrong, and what to do.

        Example:
            >>> raise LoadingError.in_file("ckpt/config.json", "is not JSON", "Fix it")  # doctest: +SKIP
            LoadingError: ckpt/config.json is not JSON. Fix it.
        """
        error = cls(message=f"{path} {problem}. {fix}.")
        error.path = Path(path)
        return error

    def _disagreement(self, where: str) -> str:
        lines = [f"the checkpoint{(' ' + where) if where else ''} does not fit the model:"]
        for title, items in (
            ("missing weights (the model needs them, the checkpoint lacks them)", self.missing),
            ("unexpected weights (in the checkpoint, no place in the model)", self.unexpected),
            ("shape mismatches", self.mismatched),
            ("wrong dtypes (a floating-point weight stored as integers, booleans or complex numbers)",
             self.wrong_dtype),
        ):
            if items:
                lines.append(f"  {len(items)} {title}:")
                lines.extend(f"    {item}" for item in items)
        if self.wrong_dtype:
            lines.append("Integer, boolean or complex tensors are not float weights (a quantized checkpoint "
                         "or a broken export): save the checkpoint again in float32, bfloat16 or float16.")
        lines.append("Check that config.json matches the weights (model_type, sizes, number of layers), "
                     "or that the family's WeightMap in minitransformer/loading/maps/ covers these names.")
        return "\n".join(lines)


class ConfigError(LoadingError, ValueError):
    """``config.json`` holds something a model cannot be built from: an unknown ``model_type``,
    ``n_head: 0``, ``"architectures": "GPT2LMHeadModel"`` (a string, not a list)...

    Both a :class:`LoadingError` (the checkpoint cannot be loaded) and a ``ValueError`` (a bad value),
    so either ``except`` catches it. The message starts with the path of ``config.json``.
    """
