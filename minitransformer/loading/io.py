"""Reading checkpoint files: safetensors (single or sharded) and, as a last resort, ``.bin``.

A ``.safetensors`` file is an 8-byte header length, a JSON header (name -> dtype, shape, byte
offsets) and the raw bytes. ``safe_open`` memory-maps it: ``get_tensor`` returns a tensor backed by
the file, and the operating system reads pages only when they are touched.

A sharded checkpoint splits the tensors over several files; ``model.safetensors.index.json`` maps
each name to its file (``{"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}``).

``.bin`` files are pickles: unpickling can run arbitrary code, so they are opened only with
``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers.

Every file is found through :func:`checkpoint_file`, which refuses a name (from an index) or a
symbolic link that leads out of the checkpoint directory; every failure names the file and says what to
do (a :class:`LoadingError`), instead of a raw ``JSONDecodeError`` or ``SafetensorError``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import mmap
import pickle
import re
import sys
import zipfile
from pathlib import Path, PureWindowsPath
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from minitransformer.loading.errors import LoadingError

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN = "pytorch_model.bin"
BIN_INDEX = "pytorch_model.bin.index.json"

_DOWNLOAD_AGAIN = ("Download it again (from the hub: delete it from the cache first, or pass "
                   "force_download=True to huggingface_hub), or save the model again")


def checkpoint_file(directory: str | Path, name: str, named_in: str | Path | None = None) -> Path:
    """``directory / name``, refusing a name or a symbolic link that leads out of the checkpoint.

    The files of a checkpoint name each other (a shard index names its shards), and none of those
    names may reach a file elsewhere on the machine: ``"../x.safetensors"``, ``"/etc/x"`` and a
    symbolic link pointing out of the directory are all refused. The one exception is a hub snapshot,
    whose files are links into its repository's ``blobs/`` folder
    (``snapshots/<commit>/config.json -> ../../blobs/<sha256>``, as huggingface_hub lays out its cache).

    Args:
        directory: the checkpoint directory.
        name: a file name inside it, as a checkpoint file wrote it (``/`` or ``\\`` separated).
        named_in: the file that named ``name`` (the index), for the error message.

    Raises:
        LoadingError: ``name`` leads outside ``directory``; the message names it and ``named_in``.
    """
    directory = Path(directory)
    source = Path(named_in) if named_in is not None else directory
    windows = PureWindowsPath(name) if isinstance(name, str) else None  # splits on "/" and "\\" alike
    if windows is None or not name or windows.anchor or ".." in windows.parts:
        raise LoadingError.in_file(
            source, f"names {name!r}, which is not a file inside the checkpoint directory {directory}",
            "Every file a checkpoint names must sit in its own directory: fix the name, or move that file in")
    path = directory / name
    try:
        real = path.resolve()
    except (OSError, RuntimeError) as err:  # a loop of symbolic links
        raise LoadingError.in_file(path, f"cannot be resolved ({err})", "Replace the link by the file") from err
    if not any(real.is_relative_to(root) for root in _allowed_roots(directory)):
        what = f"names {name!r}, which" if named_in is not None else "is a symbolic link that"
        raise LoadingError.in_file(
            source if named_in is not None else path,
            f"{what} leads to {real}, outside the checkpoint directory {directory}",
            f"Copy the file into {directory} instead of linking to it")
    return path


def _allowed_roots(directory: Path) -> list[Path]:
    """Where the files of ``directory`` may really be: itself, and for a hub snapshot its repo's blobs."""
    real = directory.resolve()
    roots = [real]
    blobs = real.parent.parent / "blobs"
    if real.parent.name == "snapshots" and blobs.is_dir():
        roots.append(blobs.resolve())
    return roots


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold an object (``{...}``): ``config.json``, a shard index.

    Raises:
        LoadingError: not UTF-8 text, not valid JSON (with line and column), or not an object.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise LoadingError.in_file(path, f"is not UTF-8 text ({err.reason} at byte {err.start})",
                                   _DOWNLOAD_AGAIN) from err
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        problem = f"is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}"
        raise LoadingError.in_file(path, problem, f"Fix it there by hand. {_DOWNLOAD_AGAIN}") from err
    if not isinstance(value, dict):
        raise LoadingError.in_file(path, f"holds a JSON {type(value).__name__}, where an object ({{...}}) "
                                         "is expected", _DOWNLOAD_AGAIN)
    return value


def read_index(directory: Path, index_name: str) -> tuple[list[Path], dict[str, Any]]:
    """The shard files an ``*.index.json`` names (sorted, each through :func:`checkpoint_file`), its metadata.

    Raises:
        LoadingError: invalid JSON, no ``weight_map`` object, an entry that is not a file name or that
            leads out of the checkpoint.
        FileNotFoundError: shards the index names that are not there.
    """
    index_path = checkpoint_file(directory, index_name)
    index = read_json_object(index_path)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        if weight_map is None:
            found = 'has no "weight_map"'
        elif isinstance(weight_map, dict):
            found = 'has an empty "weight_map"'
        else:
            found = f'has a "weight_map" that is a JSON {type(weight_map).__name__}'
        raise LoadingError.in_file(index_path, f"{found}, where an object naming each tensor's shard file is "
                                               'expected ({"lm_head.weight": "model-00002-of-00002.safetensors"})',
                                   _DOWNLOAD_AGAIN)
    not_names = [f"{key!r}: {value!r}" for key, value in weight_map.items() if not isinstance(value, str)]
    if not_names:
        raise LoadingError.in_file(index_path, 'has "weight_map" entries that are not file names: '
                                               f"{', '.join(not_names[:5])}", _DOWNLOAD_AGAIN)
    shards = sorted(set(weight_map.values()))
    paths = [checkpoint_file(directory, shard, named_in=index_path) for shard in shards]
    absent = [s for s, path in zip(shards, paths) if not path.is_file()]
    if absent:
        raise FileNotFoundError(f"{index_path} names shards that are not there: {absent}; "
                                "download the missing files (or the whole checkpoint) again")
    metadata = index.get("metadata")
    return paths, metadata if isinstance(metadata, dict) else {}


def find_weight_files(directory: str | Path) -> list[Path]:
    """The weight files of a checkpoint directory, safetensors preferred."""
    return _find_weights(Path(directory))[0]


def _find_weights(directory: Path) -> tuple[list[Path], dict[str, Any]]:
    """(weight files, the index's metadata or {})."""
    for single, index in ((SAFETENSORS, SAFETENSORS_INDEX), (BIN, BIN_INDEX)):
        if checkpoint_file(directory, single).is_file():
            return [directory / single], {}
        if checkpoint_file(directory, index).is_file():
            return read_index(directory, index)
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

    Raises:
        LoadingError: a file that is truncated or corrupt, a ``.bin`` holding something other than
            tensors, a tensor in two shards, a bad shard index (see :func:`read_index`).
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.files, self.index_metadata = _find_weights(self.directory)
        self._file_of: dict[str, Path] = {}
        self._handles: dict[Path, object] = {}
        self._bin: dict[str, torch.Tensor] = {}
        for path in self.files:
            if path.suffix == ".safetensors":
                handle = _open_safetensors(path)
                self._handles[path] = handle
                names = handle.keys()
            else:
                state = _load_bin(path)
                self._bin.update(state)
                names = state.keys()
            for name in names:
                if name in self._file_of:
                    raise LoadingError.in_file(
                        path, f"holds {name!r}, which {self._file_of[name].name} holds too: which one is "
                              "right is unknown", f"{_DOWNLOAD_AGAIN} (each tensor belongs in one shard)")
                self._file_of[name] = path

    def keys(self) -> list[str]:
        """The tensor names, file by file (shards sorted by name), each file's names sorted as
        safetensors lists them: the order transformers reads them in."""
        return list(self._file_of)

    def __contains__(self, name: str) -> bool:
        return name in self._file_of

    def file_of(self, name: str) -> Path:
        """The file that holds tensor ``name``."""
        return self._file_of[name]

    def get(self, name: str) -> torch.Tensor:
        """One tensor, memory-mapped (no copy until it is written to or converted)."""
        if name not in self._file_of:
            raise KeyError(f"{name!r} is not in the checkpoint at {self.directory}")
        if name in self._bin:
            return self._bin[name]
        try:
            return self._handles[self._file_of[name]].get_tensor(name)
        except SafetensorError as err:
            raise LoadingError.in_file(self._file_of[name], f"cannot give tensor {name!r} ({err})",
                                       _DOWNLOAD_AGAIN) from err

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


def _open_safetensors(path: Path):
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except SafetensorError as err:
        raise LoadingError.in_file(path, f"cannot be read as safetensors ({err}): it is truncated or corrupt",
                                   _DOWNLOAD_AGAIN) from err


def _load_bin(path: Path) -> dict[str, torch.Tensor]:
    """A ``.bin`` state dict, unpickled with ``weights_only=True``: tensors and plain containers only."""
    try:
        # mmap=True: the tensors stay in the file until touched, as with safetensors. Only the zip format
        # (torch >= 1.6) can be mapped; older files are read whole, as transformers does.
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        # torch's message suggests weights_only=False, which is exactly what must not be done with a
        # file from elsewhere; keep only its reason ("Unsupported global: GLOBAL fractions.Fraction ...").
        found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. |\n|$)", str(err), re.DOTALL)
        reason = found.group(1).strip() if found else str(err)
        raise LoadingError.in_file(
            path, f"cannot be unpickled with weights_only=True ({reason}): it holds objects other than "
                  "tensors, or it is corrupt",
            "Unpickling anything else could run code: ask its author for a model.safetensors or convert it "
            "with a tool you trust; if it is corrupt, download it again") from err
    except PermissionError:
        raise  # the file is fine, its permissions are not: the OS message says so
    except (RuntimeError, EOFError, OSError) as err:
        raise LoadingError.in_file(path, f"cannot be read by torch.load ({err}): it is truncated or corrupt",
                                   _DOWNLOAD_AGAIN) from err
    if not isinstance(state, dict):
        raise LoadingError.in_file(path, f"holds a {type(state).__name__}, where a state dict "
                                         "(name -> tensor) is expected",
                                   "Save the model's state_dict(), not the model or a list")
    not_tensors = [f"{k!r} ({type(v).__name__})" for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise LoadingError.in_file(
            path, f"holds entries that are not tensors: {', '.join(not_tensors[:5])}",
            "A training checkpoint ({'state_dict': ..., 'optimizer': ...}) is not a model checkpoint: save "
            "model.state_dict() alone")
    return state


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
