"""Pictures of what a model does. Needs matplotlib (``pip install 'minitransformer[viz]'``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("plotting needs matplotlib: pip install 'minitransformer[viz]'") from err
    return plt


def select_head(attentions, layer: int = 0, head: int = 0, batch_index: int = 0) -> torch.Tensor:
    """One (T, S) map out of a model's ``attentions`` (a tuple of (B, H, T, S)), one (B, H, T, S), or a (T, S)."""
    if isinstance(attentions, (tuple, list)):
        if not -len(attentions) <= layer < len(attentions):
            raise IndexError(f"layer={layer} but the model returned {len(attentions)} layers of attention")
        attentions = attentions[layer]
    if attentions is None:
        raise ValueError("no attention probabilities: run the model with output_attentions=True")
    if attentions.dim() == 4:
        B, H = attentions.shape[:2]
        if not 0 <= batch_index < B or not 0 <= head < H:
            raise IndexError(f"batch_index={batch_index}, head={head} outside (B={B}, H={H})")
        attentions = attentions[batch_index, head]
    if attentions.dim() != 2:
        raise ValueError(f"expected (T, S) attention for one head, got shape {tuple(attentions.shape)}")
    return attentions


def plot_attention(
    attentions,
    tokens: Sequence[str],
    *,
    layer: int = 0,
    head: int = 0,
    batch_index: int = 0,
    path: str | Path = "attention.png",
    title: str | None = None,
    key_tokens: Sequence[str] | None = None,
) -> Path:
    """Draw one layer and head's attention as a heatmap labelled with the tokens, saved as a PNG.

    Args:
        attentions: ``output.attentions`` of a model run with ``output_attentions=True``
            (tuple of (B, H, T, S)), or a single (B, H, T, S) or (T, S) tensor.
        tokens: labels of the T queries (and of the keys, unless ``key_tokens`` is given, e.g. for
            cross attention).
        layer, head, batch_index: which map to draw.
        path: where to write the PNG.

    Returns:
        The path written.
    """
    weights = select_head(attentions, layer, head, batch_index).detach().float().cpu()
    T, S = weights.shape
    key_tokens = tokens if key_tokens is None else key_tokens
    if len(tokens) != T or len(key_tokens) != S:
        raise ValueError(f"got {len(tokens)} query labels and {len(key_tokens)} key labels for a ({T}, {S}) map")
    plt = _pyplot()
    size = max(3.5, 0.3 * max(T, S))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(weights.numpy(), cmap="viridis", vmin=0.0, vmax=max(float(weights.max()), 1e-6))
    ax.set_xticks(range(S), list(key_tokens), rotation=90, fontsize=8)
    ax.set_yticks(range(T), list(tokens), fontsize=8)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(title or f"layer {layer}, head {head}")
    fig.colorbar(im, ax=ax, fraction=0.046, label="probability")
    path = Path(path)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
