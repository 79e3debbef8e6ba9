"""What every model family shares: a config base class and ``save_pretrained``/``from_pretrained``.

The work itself lives in :mod:`minitransformer.loading`; these are the doors to it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

C = TypeVar("C", bound="Config")
M = TypeVar("M", bound="PreTrainedModel")


@dataclass
class Config:
    """Base of the dataclass configs: field names are those of the family's HF ``config.json``.

    ``from_dict`` takes the fields it knows and keeps the rest in ``extra``, so that ``to_dict``
    gives back everything (token ids, task parameters...) for a faithful round trip.
    """

    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls: type[C], config: dict[str, Any]) -> C:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in config.items() if k in names}
        extra = {k: v for k, v in config.items() if k not in names}
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.extra)
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        return out


class PreTrainedModel(nn.Module):
    """An ``nn.Module`` with ``config``, ``save_pretrained`` and ``from_pretrained``."""

    config: Config

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors`` that transformers loads (see ``loading.save_pretrained``)."""
        from minitransformer.loading import save_pretrained

        return save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls: type[M], path_or_repo_id: str | os.PathLike, **kwargs) -> M:
        """Load a checkpoint into this class (see ``minitransformer.loading.from_pretrained``)."""
        from minitransformer.loading import from_pretrained

        return from_pretrained(path_or_repo_id, model_class=cls, **kwargs)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def positions_from_attention_mask(attention_mask: torch.Tensor | None, seq_len: int,
                                  device: torch.device) -> torch.Tensor:
    """Position of each token, counting real tokens only: (B, T), or (1, T) without a mask.

    With left padding ``[pad, pad, a, b]`` the positions are ``[0, 0, 0, 1]``: ``a`` is at position
    0 as it would be alone, which is what makes a padded batch equal its sequences run one by one.
    """
    if attention_mask is None:
        return torch.arange(seq_len, device=device)[None]  # (1, T)
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
