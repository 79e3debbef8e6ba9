"""Reference solutions for chapter 11: the file formats behind ``from_pretrained``, read by hand.

The library itself reads these files through ``safetensors`` and ``huggingface_hub``
(``loading/io.py``, ``loading/hub.py``); these functions show what those do underneath.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import torch

# safetensors dtype -> (numpy dtype of the raw bytes, torch dtype to view them as)
DTYPES: dict[str, tuple[str, torch.dtype]] = {
    "F64": ("<f8", torch.float64), "F32": ("<f4", torch.float32), "F16": ("<f2", torch.float16),
    "BF16": ("<i2", torch.bfloat16),  # numpy has no bfloat16: read 16-bit words, reinterpret in torch
    "I64": ("<i8", torch.int64), "I32": ("<i4", torch.int32), "I16": ("<i2", torch.int16),
    "I8": ("i1", torch.int8), "U8": ("u1", torch.uint8), "BOOL": ("?", torch.bool),
}
SAFETENSORS_DTYPE = {torch_dtype: name for name, (_, torch_dtype) in DTYPES.items()}


def _header_and_start(path: str | Path) -> tuple[dict, int]:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))  # u64, little-endian: the header's length in bytes
        header = json.loads(f.read(n))
    return header, 8 + n  # the data starts right after the header


def read_safetensors_header(path: str | Path) -> dict:
    return _header_and_start(path)[0]


def load_tensor(path: str | Path, name: str) -> torch.Tensor:
    header, data_start = _header_and_start(path)
    if name not in header or name == "__metadata__":
        names = sorted(k for k in header if k != "__metadata__")
        raise KeyError(f"{name!r} is not in {path}; it holds {names}")
    entry = header[name]
    if entry["dtype"] not in DTYPES:
        raise ValueError(f"dtype {entry['dtype']} of {name!r} is not supported; known: {sorted(DTYPES)}")
    np_dtype, torch_dtype = DTYPES[entry["dtype"]]
    begin, end = entry["data_offsets"]
    with open(path, "rb") as f:
        f.seek(data_start + begin)
        raw = f.read(end - begin)
    array = np.frombuffer(raw, dtype=np_dtype).copy()  # copy: frombuffer's array is read-only
    tensor = torch.from_numpy(array)
    if entry["dtype"] == "BF16":
        tensor = tensor.view(torch.bfloat16)  # the same 16 bits, read as bfloat16
    return tensor.reshape(entry["shape"]).to(torch_dtype)


def shard_for(index_path: str | Path, tensor_name: str) -> str:
    weight_map = json.loads(Path(index_path).read_text())["weight_map"]
    if tensor_name not in weight_map:
        raise KeyError(f"{tensor_name!r} is not in {index_path} ({len(weight_map)} tensors listed)")
    return weight_map[tensor_name]


_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def hub_cache_path(hf_home: str | Path, repo_id: str, revision: str = "main") -> Path:
    repo = Path(hf_home) / "hub" / ("models--" + repo_id.replace("/", "--"))
    if _COMMIT.match(revision):
        commit = revision  # already a commit: no ref to follow
    else:
        ref = repo / "refs" / revision
        if not ref.is_file():
            raise FileNotFoundError(f"no ref {revision!r} for {repo_id} at {ref}: is it in this cache?")
        commit = ref.read_text().strip()
    snapshot = repo / "snapshots" / commit
    if not snapshot.is_dir():
        raise FileNotFoundError(f"{repo_id} revision {revision!r} points to commit {commit}, "
                                f"but {snapshot} does not exist")
    return snapshot


def pick_class(config: dict, registry: dict[str, dict[str, type]]) -> type:
    model_type = config.get("model_type")
    if model_type not in registry:
        what = "config.json has no model_type" if model_type is None else f"model_type {model_type!r} is not supported"
        raise ValueError(f"{what}; supported model types: {', '.join(sorted(registry))}")
    family = registry[model_type]
    for name in config.get("architectures") or []:
        if name in family:
            return family[name]
    return next(iter(family.values()))  # the family's default


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    chunks, offset = [], 0
    for name, tensor in tensors.items():
        if tensor.dtype not in SAFETENSORS_DTYPE:
            raise ValueError(f"{name!r} has dtype {tensor.dtype}, which safetensors has no name for")
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": SAFETENSORS_DTYPE[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # pad to a multiple of 8: the data then starts aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in chunks:
            f.write(raw)
