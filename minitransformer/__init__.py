"""minitransformer: every part of a transformer, from scratch, proven equal to HuggingFace.

Layers live in :mod:`minitransformer.layers`, tokenizers in :mod:`minitransformer.tokenizers`.
"""

from __future__ import annotations

__version__ = "0.1.0"


def load_tokenizer(path_or_repo_id: str, **kwargs):
    """Load our from-scratch tokenizer from a directory, a file, or a hub id (see ``minitransformer.tokenizers``)."""
    from minitransformer.tokenizers import load_tokenizer as _load

    return _load(path_or_repo_id, **kwargs)


def from_pretrained(path_or_repo_id: str, *, dtype=None, device=None, revision=None, **kwargs):
    """Load a HuggingFace checkpoint (config.json + safetensors) into our model class, in eval mode.

    ``path_or_repo_id`` is a local directory or a hub id resolved through ``huggingface_hub``
    (honouring ``HF_HOME``, ``HF_HUB_OFFLINE`` and ``revision``). See ``minitransformer.loading``.
    """
    from minitransformer.loading import from_pretrained as _from_pretrained

    return _from_pretrained(path_or_repo_id, dtype=dtype, device=device, revision=revision, **kwargs)
