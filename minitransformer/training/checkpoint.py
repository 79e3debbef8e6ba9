"""Resumable checkpoints: everything a run needs to go on exactly where it stopped, and no pickle.

A checkpoint is a folder ``checkpoints/step-0000100/``:

    model.safetensors      the weights (our parameter names)
    optimizer.safetensors  every tensor of the optimizer's state (Adam's moments, step counts)
    rng.safetensors        torch's CPU (and CUDA) generator states, numpy's key
    state.json             the rest: step, data position, the optimizer's hyperparameters, python's
                           and numpy's RNG counters, the model config, the tokenizer's fingerprint,
                           the training config, early-stopping state
    manifest.json          size and sha256 of each file above, written last

Tensors go through safetensors and everything else through JSON: loading a checkpoint runs no code
(a pickle can). A nested state (the optimizer's ``state_dict()``) is split by :func:`split_tensors`
into a JSON skeleton that names its tensors, and joined back by :func:`join_tensors`.

Written atomically: into ``checkpoints/.tmp-step-.../``, every file fsynced, then the folder renamed
into place (``os.replace``), so a crash leaves either the whole checkpoint or none. On loading, the
manifest is checked; a truncated or corrupt checkpoint is skipped, with a warning, for the one before.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json")
STEP_DIR = re.compile(r"^step-(\d{7,})$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed: corrupt, missing, or of another model or tokenizer."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read: ``model`` and ``optimizer`` states, ``rng``, ``state`` (JSON)."""

    path: Path
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    state: dict[str, Any]


# ---------------------------------------------------------------------------------- tensors <-> JSON


def split_tensors(obj: Any, prefix: str = "t") -> tuple[Any, dict[str, torch.Tensor]]:
    """(JSON-able skeleton, {name: tensor}) of a nest of dicts, lists, tuples, numbers and tensors.

    Each tensor becomes ``{"__tensor__": name}``; a dict with non-string keys (an optimizer state is
    keyed by parameter index) becomes ``{"__keys__": [...], "__values__": [...]}`` so its keys keep
    their type.

    Example:
        >>> split_tensors({"step": 3, "m": torch.zeros(2)})
        ({'step': 3, 'm': {'__tensor__': 't.m'}}, {'t.m': tensor([0., 0.])})
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(x: Any, name: str) -> Any:
        if isinstance(x, torch.Tensor):
            tensors[name] = x.detach().cpu().contiguous()
            return {"__tensor__": name}
        if isinstance(x, dict):
            if all(isinstance(k, str) for k in x):
                return {k: walk(v, f"{name}.{k}") for k, v in x.items()}
            keys = list(x)
            return {"__keys__": keys, "__values__": [walk(x[k], f"{name}.{k}") for k in keys]}
        if isinstance(x, (list, tuple)):
            return [walk(v, f"{name}.{i}") for i, v in enumerate(x)]
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(f"cannot store {type(x).__name__} at {name} in a checkpoint (tensors, numbers, "
                        "strings, lists and dicts only)")

    return walk(obj, prefix), tensors


def join_tensors(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of :func:`split_tensors`."""
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__keys__" in skeleton:
            return {k: join_tensors(v, tensors) for k, v in zip(skeleton["__keys__"], skeleton["__values__"])}
        return {k: join_tensors(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [join_tensors(v, tensors) for v in skeleton]
    return skeleton


# ---------------------------------------------------------------------------------- random states


def rng_state() -> dict[str, Any]:
    """Every generator a training step may draw from: torch (CPU, each GPU), numpy's global, python's ``random``."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(np_keys.astype(np.int64)),
             "numpy": [np_kind, int(np_pos), int(np_has_gauss), float(np_gauss)],
             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back what :func:`rng_state` returned (after a JSON round trip: lists for tuples)."""
    torch.set_rng_state(state["torch"])
    kind, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------- writing


def step_dir_name(step: int) -> str:
    return f"step-{step:07d}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(root: str | Path, step: int, *, model: dict[str, torch.Tensor], optimizer: dict[str, Any],
                    state: dict[str, Any], keep: int | None = 3) -> Path:
    """Write checkpoint ``root/step-XXXXXXX`` atomically, then delete all but the newest ``keep``.

    Args:
        root: the ``checkpoints/`` folder (made if absent).
        step: the number of optimizer steps done.
        model: the full state dict (CPU tensors; a tied matrix may appear under both names).
        optimizer: ``optimizer.state_dict()`` (or any nest of tensors and JSON values).
        state: JSON values: whatever else resuming needs. The RNG states are added here.
        keep: how many checkpoints to keep (None: all).

    Returns:
        The checkpoint's folder.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()

    # safetensors refuses two names on one storage (a tied head): give each its own copy.
    save_file({k: v.detach().cpu().clone().contiguous() for k, v in model.items()}, str(tmp / "model.safetensors"))
    opt_skeleton, opt_tensors = split_tensors(optimizer, "optimizer")
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    rng_skeleton, rng_tensors = split_tensors(rng_state(), "rng")
    save_file(rng_tensors, str(tmp / "rng.safetensors"))
    doc = {"step": step, **state, "optimizer": opt_skeleton, "rng": rng_skeleton}
    (tmp / "state.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    manifest = {name: {"bytes": (tmp / name).stat().st_size, "sha256": _sha256(tmp / name)} for name in FILES}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for name in (*FILES, "manifest.json"):
        _fsync(tmp / name)
    _fsync(tmp)

    if final.exists():  # the same step written again (a run resumed from it): replace it whole
        old = root / f".old-{final.name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    _fsync(root)
    if keep is not None:
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: str | Path) -> list[Path]:
    """The ``step-XXXXXXX`` folders of ``root``, oldest first (unfinished ``.tmp-`` folders are not listed)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and STEP_DIR.match(p.name)]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def remove_unfinished(root: str | Path) -> None:
    """Delete the ``.tmp-`` folders a killed run left behind."""
    root = Path(root)
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and p.name.startswith((".tmp-", ".old-")):
                shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------------------------- reading


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and verify one checkpoint folder.

    Raises:
        CheckpointError: a file missing, or not of the size and sha256 the manifest recorded
            (truncated or corrupt), or unreadable.
    """
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise CheckpointError(f"checkpoint {path} is incomplete: no manifest.json")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupt: manifest.json is not JSON ({err})") from err
    for name in FILES:
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {name} is missing")
        want = manifest.get(name, {})
        size = file.stat().st_size
        if size != want.get("bytes"):
            raise CheckpointError(f"checkpoint {path} is truncated: {name} has {size} bytes, "
                                  f"the manifest says {want.get('bytes')}")
        if _sha256(file) != want.get("sha256"):
            raise CheckpointError(f"checkpoint {path} is corrupt: {name} does not match its sha256")
    try:
        doc = json.loads((path / "state.json").read_text(encoding="utf-8"))
        model = load_file(str(path / "model.safetensors"))
        optimizer = join_tensors(doc.pop("optimizer"), load_file(str(path / "optimizer.safetensors")))
        rng = join_tensors(doc.pop("rng"), load_file(str(path / "rng.safetensors")))
    except Exception as err:  # a file that passed its checksum but does not parse: written by something else
        raise CheckpointError(f"checkpoint {path} cannot be read: {err}") from err
    return Checkpoint(path=path, step=int(doc["step"]), model=model, optimizer=optimizer, rng=rng, state=doc)


def latest_checkpoint(root: str | Path) -> Checkpoint | None:
    """The newest checkpoint of ``root`` that loads; broken newer ones are skipped with one warning.

    Returns:
        None when ``root`` holds no checkpoint at all.

    Raises:
        CheckpointError: checkpoints exist but none loads (each one's problem listed, and what to do).
    """
    problems = []
    for path in reversed(list_checkpoints(root)):
        try:
            checkpoint = load_checkpoint(path)
        except CheckpointError as err:
            problems.append(str(err))
            continue
        if problems:  # warned only when there is something to fall back to; else the error says it all
            warnings.warn(f"{'; '.join(problems)}; resuming from {path.name}, the newest complete checkpoint",
                          stacklevel=2)
        return checkpoint
    if problems:
        raise CheckpointError(f"no checkpoint in {root} can be resumed: {'; '.join(problems)}; train into a "
                              f"new --out (or delete {root} to train this one again from step 0)")
    return None


def check_compatible(checkpoint: Checkpoint, model_config: dict[str, Any], tokenizer: str | None) -> None:
    """Refuse to resume a checkpoint of another model or another tokenizer.

    Args:
        model_config: ``model.config.to_dict()`` of the model about to be loaded.
        tokenizer: its tokenizer's fingerprint (``data.tokenizer_fingerprint``), or None if none.

    Raises:
        CheckpointError: naming the tokenizer, or else the config fields that differ. The tokenizer
            is checked first: another tokenizer changes ``vocab_size`` too, and is the cause to name.
    """
    if checkpoint.state.get("tokenizer") != tokenizer:
        raise CheckpointError(f"checkpoint {checkpoint.path} was trained with another tokenizer "
                              f"(fingerprint {str(checkpoint.state.get('tokenizer'))[:12]} vs now {str(tokenizer)[:12]}); "
                              "resume with the same --tokenizer, or train into a new --out")
    saved = checkpoint.state.get("model_config", {})
    wanted = json.loads(json.dumps(model_config))  # as JSON would give it back: tuples become lists
    differ = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    if differ:
        shown = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {wanted.get(k)!r}" for k in differ[:4])
        raise CheckpointError(f"checkpoint {checkpoint.path} is of another model ({shown}); "
                              "resume with the same --model, or train into a new --out")
