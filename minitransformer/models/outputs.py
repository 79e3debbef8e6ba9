"""What a model's forward returns: one dataclass for every family, fields named as in transformers."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ModelOutput:
    """Fields a family does not produce stay None.

    hidden_states: (embedding output, layer 1 output, ..., last layer output), each (B, T, C),
        when ``output_hidden_states=True`` (as in transformers, the last one is after the final norm
        for pre-norm models).
    attentions: one (B, H, T, S) probability tensor per layer when ``output_attentions=True``.
    """

    logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    cross_attentions: tuple[torch.Tensor, ...] | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    encoder_attentions: tuple[torch.Tensor, ...] | None = None
    past_key_values: object | None = None
    loss: torch.Tensor | None = None
