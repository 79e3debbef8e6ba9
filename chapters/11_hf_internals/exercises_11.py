"""Chapter 11 exercises: the files behind ``from_pretrained``, read by hand.

Fill in each function, then grade yourself:

    minitransformer check 11          # or: pytest chapters/11_hf_internals
    minitransformer.check("11")       # the same, from a notebook (it reads this file afresh)
    from exercises_11 import ...      # your functions, in this folder's notebook

Use the standard library (json, struct, pathlib), numpy and torch; not safetensors, huggingface_hub
or transformers: they are what your answers are checked against.
"""

from __future__ import annotations

from pathlib import Path

import torch

from minitransformer.exercises import todo


def read_safetensors_header(path: str | Path) -> dict:
    """Exercise 11.1: the JSON header of a ``.safetensors`` file, as a dict.

    The file starts with 8 bytes: the header's length N, an unsigned 64-bit little-endian integer.
    The next N bytes are JSON: ``{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
    ..., "__metadata__": {"format": "pt"}}`` (``__metadata__`` is optional). Return it as parsed.
    """
    todo("11.1", "with open(path, 'rb') as f: n = struct.unpack('<Q', f.read(8))[0]; json.loads(f.read(n))")


def load_tensor(path: str | Path, name: str) -> torch.Tensor:
    """Exercise 11.2: one tensor of a ``.safetensors`` file, from its raw bytes.

    ``data_offsets`` [begin, end) count from the first byte AFTER the header (8 + N). The bytes are
    little-endian, row-major. Support the dtypes F32, F16, BF16, I64 (and I32, U8, BOOL if you like).
    numpy has no bfloat16: read BF16 as int16 ('<i2') and reinterpret the bits with ``.view(torch.bfloat16)``.
    A name that is not in the file: raise KeyError listing the names that are.
    """
    todo("11.2", "header = read_safetensors_header(path); seek to 8 + N + begin; read end - begin bytes; "
                 "np.frombuffer(raw, dtype='<f4' / '<f2' / '<i8' / '<i2' for BF16); torch.from_numpy(a.copy()); "
                 ".reshape(shape)")


def shard_for(index_path: str | Path, tensor_name: str) -> str:
    """Exercise 11.3: the file name of the shard that holds ``tensor_name``.

    ``index_path`` is a ``model.safetensors.index.json``: ``{"metadata": {"total_size": ...},
    "weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors", ...}}``.
    A name that is not in it: raise KeyError naming it.
    """
    todo("11.3", "json.loads(Path(index_path).read_text())['weight_map'][tensor_name]")


def hub_cache_path(hf_home: str | Path, repo_id: str, revision: str = "main") -> Path:
    """Exercise 11.4: the snapshot folder of ``repo_id`` at ``revision`` in a hub cache.

    The cache is ``<hf_home>/hub/models--<org>--<name>/`` ("/" in the id becomes "--"), holding:
        refs/<revision>          a text file: the 40-hex-digit commit a branch or tag points to
        snapshots/<commit>/      the files of that commit (links into blobs/)
    ``revision`` is a branch or tag name (read its ref) or a commit hash itself (use it directly).
    Raise FileNotFoundError (saying what is missing) if the ref or the snapshot folder is not there.
    """
    todo("11.4", "repo = Path(hf_home) / 'hub' / ('models--' + repo_id.replace('/', '--')); "
                 "commit = (repo / 'refs' / revision).read_text().strip() unless revision is a commit; "
                 "repo / 'snapshots' / commit")


def pick_class(config: dict, registry: dict[str, dict[str, type]]) -> type:
    """Exercise 11.5: the class that loads a checkpoint, chosen from its ``config.json``.

    ``registry`` maps a ``model_type`` to ``{architecture name: class}``; the first entry of each is
    its default. ``config["model_type"]`` picks the family; then the first name in
    ``config["architectures"]`` (it may be missing) that the family knows picks the class, else the default.
    Unknown or missing model_type: raise ValueError listing the supported model types.
    """
    todo("11.5", "family = registry[config['model_type']]; for name in config.get('architectures') or []: ...; "
                 "else next(iter(family.values()))")


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Exercise 11.6: write a ``.safetensors`` file by hand that the ``safetensors`` library reads back.

    Header entries: dtype ("F32", "F16", "BF16", "I64"), shape (a list), data_offsets [begin, end),
    the tensors' bytes laid end to end with no gaps; ``metadata`` (str -> str) goes under
    "__metadata__". Pad the JSON with spaces to a multiple of 8 bytes (so the data is aligned), then
    write the 8-byte little-endian length, the JSON, and the bytes.
    """
    todo("11.6", "raw bytes of a tensor: t.contiguous().view(torch.uint8).numpy().tobytes() (little-endian "
                 "machine); struct.pack('<Q', len(header_bytes))")
