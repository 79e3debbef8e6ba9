"""Auto classes: the model class picked from the checkpoint's ``model_type`` and the task you ask for.

    from minitransformer.loading import AutoModelForSequenceClassification
    model = AutoModelForSequenceClassification.from_pretrained("google-bert/bert-base-uncased")
    # our BertForSequenceClassification; its classifier (absent from that checkpoint) is newly initialised

As in transformers, the class comes from ``config.json``'s ``model_type`` and the Auto kind, not from its
``architectures``: ``AutoModel`` on a BertForMaskedLM checkpoint gives the plain encoder (:class:`BERT`),
the masked-LM head's weights dropped. Which kind builds which architecture is declared per family in
``registry.py`` (``Family.auto``); a kind a family lacks is an error that lists the kinds it has.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from torch import nn

from minitransformer.loading.core import build_config, from_pretrained, read_family
from minitransformer.loading.hub import resolve_checkpoint_dir
from minitransformer.loading.registry import get_family


class AutoConfig:
    """``AutoConfig.from_pretrained(path)``: the checkpoint's config as our typed dataclass (values checked)."""

    @staticmethod
    def from_pretrained(path_or_repo_id: str | os.PathLike, *, revision: str | None = None) -> Any:
        """Read ``config.json`` of a local directory or hub id into the family's config dataclass.

        Raises:
            ConfigError: an unknown ``model_type`` (the supported ones listed) or a value no model can be
                built with, by field.
            FileNotFoundError: no such directory, or a hub id that is not cached (offline).
        """
        directory = resolve_checkpoint_dir(path_or_repo_id, revision)
        family, config_dict, config_path = read_family(directory)
        return build_config(family, config_dict, config_path)[2]


class _AutoModelBase:
    """The shared behaviour: the subclass names its Auto ``kind``, the family says which class that is."""

    kind: ClassVar[str]

    def __init__(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} is not built directly: use {type(self).__name__}.from_pretrained"
                        f"(path) or {type(self).__name__}.from_config(config)")

    @classmethod
    def model_class_for(cls, model_type: str) -> type:
        """Our class this Auto kind builds for ``model_type``.

        Raises:
            ValueError: an unknown ``model_type``, or a family without this kind (the kinds it has listed).
        """
        return get_family(model_type).auto_class(cls.kind)

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | os.PathLike, *, revision: str | None = None,
                        **kwargs) -> nn.Module:
        """Load the checkpoint into this kind's class for its ``model_type`` (``dtype``, ``device``: as
        :func:`~minitransformer.loading.from_pretrained`). A task head the checkpoint lacks is newly
        initialised and reported; one it has that the class lacks is dropped and reported.

        Raises:
            ValueError: the family has no class of this kind (the kinds it has are listed).
            ConfigError, LoadingError, FileNotFoundError: as :func:`~minitransformer.loading.from_pretrained`.
        """
        directory = resolve_checkpoint_dir(path_or_repo_id, revision)
        family, _, _ = read_family(directory)
        return from_pretrained(directory, model_class=family.auto_class(cls.kind), **kwargs)

    @classmethod
    def from_config(cls, config: Any, **kwargs) -> nn.Module:
        """A fresh model of this kind for ``config`` (one of our config dataclasses), randomly initialised
        by the class's own ``__init__``; ``kwargs`` go to it (``attn_implementation="math"``...)."""
        model_type = getattr(config, "model_type", None)
        return cls.model_class_for(model_type)(config, **kwargs)


class AutoModel(_AutoModelBase):
    """The base model, without a task head (BERT: :class:`~minitransformer.models.bert.BERT`)."""

    kind = "AutoModel"


class AutoModelForCausalLM(_AutoModelBase):
    """A decoder with its language-model head (GPT-2, LLaMA, Mistral, Qwen2)."""

    kind = "AutoModelForCausalLM"


class AutoModelForMaskedLM(_AutoModelBase):
    """An encoder with its masked-LM head (BERT)."""

    kind = "AutoModelForMaskedLM"


class AutoModelForSequenceClassification(_AutoModelBase):
    """An encoder with a classifier on the pooled output (BERT)."""

    kind = "AutoModelForSequenceClassification"


class AutoModelForSeq2SeqLM(_AutoModelBase):
    """An encoder-decoder with its LM head (T5)."""

    kind = "AutoModelForSeq2SeqLM"
