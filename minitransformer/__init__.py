"""minitransformer: every part of a transformer, from scratch, proven equal to HuggingFace.

    import minitransformer as mt
    mt.layers.MultiHeadAttention(...)             # the shared layers
    mt.models.GPT2(mt.models.GPT2Config.from_name("gpt2-tiny"))
    model = mt.from_pretrained("path/or/hub-id")  # or mt.AutoModelForCausalLM.from_pretrained(...)
    model.generate(ids, max_new_tokens=20)        # see mt.generation
    tok = mt.load_tokenizer("path/or/hub-id")     # see mt.tokenizers
    mt.check("3.1")                               # grade exercise 3.1 from a notebook, as `minitransformer check 3.1`

The submodules (``layers``, ``models``, ``tokenizers``, ``generation``, ``loading``, ``training``,
``lora``, ``quantization``, ``viz``, ``testing``, ``exercises``), the Auto classes, ``quantize`` and
``model_memory`` and ``check`` are reachable from here; each is imported the
first time it is used, so ``import minitransformer`` stays quick.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

SUBMODULES = ("layers", "models", "tokenizers", "generation", "loading", "training", "lora", "quantization", "viz",
              "testing", "exercises")
#: Names exported from a submodule, imported on first use: name -> submodule.
LAZY_NAMES = {
    "AutoConfig": "loading",
    "AutoModel": "loading",
    "AutoModelForCausalLM": "loading",
    "AutoModelForMaskedLM": "loading",
    "AutoModelForSequenceClassification": "loading",
    "AutoModelForSeq2SeqLM": "loading",
    "save_pretrained": "loading",
    "GenerationConfig": "generation",
    "quantize": "quantization",
    "model_memory": "quantization",
    "check": "exercises.course",
}

__all__ = ["__version__", "from_pretrained", "load_tokenizer", *SUBMODULES, *LAZY_NAMES]


def __getattr__(name: str) -> Any:
    """``minitransformer.models``, ``minitransformer.AutoModel``...: imported when first asked for."""
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in LAZY_NAMES:
        return getattr(importlib.import_module(f"{__name__}.{LAZY_NAMES[name]}"), name)
    raise AttributeError(f"module 'minitransformer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
