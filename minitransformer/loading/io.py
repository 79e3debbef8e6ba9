"""Reading checkpoint files: safetensors (single or sharded) and, as a last resort, ``.bin``.

A ``.safetensors`` file is an 8-byte header length, a JSON header (name -> dtype, shape, byte
offsets) and the raw bytes. ``safe_open`` memory-maps it: ``get_tensor`` returns a tensor backed by
the file, and the operating system reads pages only when they are touched.

A sharded checkpoint splits the tensors over several files; ``model.safetensors.index.json`` maps
each name to its file (``{"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}``).

``.bin`` files are pickles: unpickling can run arbitrary code, so they are opened only with
``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import mmap
import sys
from pathlib import Path

import torch
from safetensors import safe_open

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"


def find_weight_files(directory: str | Path) -> list[Path]:
    """The weight files of a checkpoint directory, safetensors preferred."""
    directory = Path(directory)
    for single, index in ((SAFETENSORS, SAFETENSORS_INDEX), (BIN, BIN_INDEX)):
        if (directory / single).is_file():
            return [directory / single]
        if (directory / index).is_file():
            shards = sorted(set(json.loads((directory / index).read_text())["weight_map"].values()))
            absent = [s for s in shards if not (directory / s).is_file()]
            if absent:
                raise FileNotFoundError(f"{directory / index} names shards that are not there: {absent}")
            return [directory / s for s in shards]
    present = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    raise FileNotFoundError(
        f"no weights in {directory}: expected {SAFETENSORS}, {SAFETENSORS_INDEX}, {BIN} or {BIN_INDEX}; "
        f"found {present}"
    )


class Checkpoint:
    """The tensors of a checkpoint directory as a lazy name -> tensor mapping.

    Example:
        >>> with Checkpoint("my-gpt2/") as ckpt:           # doctest: +SKIP
        ...     ckpt.get("transformer.wte.weight").shape
        torch.Size([50257, 768])
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.files = find_weight_files(self.directory)
        self._file_of: dict[str, Path] = {}
        self._handles: dict[Path, object] = {}
        self._bin: dict[str, torch.Tensor] = {}
        for path in self.files:
            if path.suffix == ".safetensors":
                handle = safe_open(str(path), framework="pt", device="cpu")
                self._handles[path] = handle
                names = handle.keys()
            else:
                # mmap=True: the tensors stay in the file until touched, as with safetensors.
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                self._bin.update(state)
                names = state.keys()
            for name in names:
                self._file_of[name] = path

    def keys(self) -> list[str]:
        return list(self._file_of)

    def __contains__(self, name: str) -> bool:
        return name in self._file_of

    def get(self, name: str) -> torch.Tensor:
        """One tensor, memory-mapped (no copy until it is written to or converted)."""
        if name not in self._file_of:
            raise KeyError(f"{name!r} is not in the checkpoint at {self.directory}")
        if name in self._bin:
            return self._bin[name]
        return self._handles[self._file_of[name]].get_tensor(name)

    def release(self, tensor: torch.Tensor) -> None:
        """Done with ``tensor`` (a view into a mapped file): let the kernel take its pages back.

        The pages of a memory-mapped file count as this process's memory once read, for as long as
        the file stays mapped. After a tensor has been copied into the model, ``madvise(MADV_PAGEOUT)``
        hands its pages back, so loading holds about one copy of the weights, not two. This never loses
        data: clean file pages are simply read again if touched. Linux only; elsewhere a no-op.
        """
        _page_out(tensor)

    def close(self) -> None:
        # Tensors already returned keep their own mapping alive; this only drops the handles.
        self._handles.clear()
        self._bin.clear()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_MADV_PAGEOUT = 21  # Linux >= 5.4
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None


def _page_out(tensor: torch.Tensor) -> None:
    if _libc is None or tensor.device.type != "cpu" or tensor.numel() == 0:
        return
    span = sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride())) + 1
    start = tensor.data_ptr()
    end = start + span * tensor.element_size()
    first = (start + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE  # whole pages inside the tensor only
    if end - first >= mmap.PAGESIZE:
        length = (end - first) // mmap.PAGESIZE * mmap.PAGESIZE
        _libc.madvise(ctypes.c_void_p(first), ctypes.c_size_t(length), _MADV_PAGEOUT)  # best effort
