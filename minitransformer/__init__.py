"""minitransformer: every part of a transformer, from scratch, proven equal to HuggingFace.

Layers live in :mod:`minitransformer.layers`, tokenizers in :mod:`minitransformer.tokenizers`.
"""

from __future__ import annotations

__version__ = "0.1.0"


def load_tokenizer(path_or_repo_id: str, **kwargs):
    """Load our from-scratch tokenizer from a directory, a file, or a hub id (see ``minitransformer.tokenizers``)."""
    from minitransformer.tokenizers import load_tokenizer as _load

    return _load(path_or_repo_id, **kwargs)
