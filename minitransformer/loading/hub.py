"""From a hub id or a local path to a directory holding ``config.json`` and the weights.

The hub cache (``$HF_HOME/hub``, or ``$HF_HUB_CACHE``) looks like::

    models--openai-community--gpt2/
        refs/main                      # text file: the commit hash "main" points to
        blobs/<sha256>                 # the file contents, named by hash
        snapshots/<commit>/config.json # links into blobs/, one folder per commit

``huggingface_hub.snapshot_download`` finds (or downloads) the snapshot of a revision and returns
its folder. It reads ``HF_HOME`` and ``HF_HUB_OFFLINE`` when it is imported; we read them again at
every call, so changing them in a running program (or a test) takes effect.
"""

from __future__ import annotations

import os
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}
WEIGHT_PATTERNS = ["*.json", "*.safetensors"]
BIN_PATTERNS = ["*.json", "*.bin"]


def hub_cache_dir() -> Path:
    """``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return Path(home).expanduser() / "hub"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def resolve_checkpoint_dir(path_or_repo_id: str | os.PathLike, revision: str | None = None) -> Path:
    """A local directory as is; otherwise a hub id (``"org/name"``) resolved through huggingface_hub.

    Raises:
        FileNotFoundError: a path that does not exist, or a hub id that is neither cached nor
            downloadable (the message says which, and what to do).
    """
    path = Path(path_or_repo_id).expanduser()
    if path.is_dir():
        if revision is not None:
            raise ValueError(f"revision={revision!r} applies to hub ids; {path} is a local directory")
        return path
    if path.exists():
        raise NotADirectoryError(f"{path} is a file: pass the directory that holds config.json and the weights")
    text = str(path_or_repo_id)
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or os.sep != "/" and os.sep in text:
        raise FileNotFoundError(f"no such directory: {path}")
    return _snapshot(text, revision)


def _snapshot(repo_id: str, revision: str | None) -> Path:
    folder = hub_snapshot(repo_id, revision, WEIGHT_PATTERNS)
    if not any(folder.glob("*.safetensors")):
        folder = hub_snapshot(repo_id, revision, BIN_PATTERNS)  # older repos only have pytorch_model.bin
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{repo_id!r} resolved to {folder}, which has no config.json")
    return folder


def hub_snapshot(repo_id: str, revision: str | None, patterns: list[str]) -> Path:
    """The snapshot folder of a hub repository with its files that match ``patterns``, cached or downloaded.

    Used for the weights here and for the tokenizer files by ``minitransformer.tokenizers``.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    cache_dir, offline = hub_cache_dir(), hub_offline()
    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir,
                                      local_files_only=offline, allow_patterns=patterns))
    except HFValidationError as err:
        raise FileNotFoundError(f"{repo_id!r} is neither a local directory nor a valid hub id ({err})") from err
    except LocalEntryNotFoundError as err:
        where = f"revision {revision!r} of " if revision else ""
        hint = ("HF_HUB_OFFLINE is set, so nothing is downloaded: unset it, or download first with "
                f"`hf download {repo_id}`" if offline else "check the id and your network")
        raise FileNotFoundError(f"{where}{repo_id!r} is not in the hub cache at {cache_dir}; {hint}") from err
