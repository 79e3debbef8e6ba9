"""Pictures of what a model does. Needs matplotlib (``pip install 'minitransformer[viz]'``).

Every function returns its matplotlib figure. In a notebook it shows inline, in a script
``plt.show()`` opens it in a window; it is written to a file only when you pass ``path``. The
backend is matplotlib's own choice (inline in Jupyter, a window on a desktop, Agg with no display,
or whatever ``MPLBACKEND`` says): nothing here switches it, so your own plots keep showing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _pyplot():
    try:
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
    path: str | Path | None = None,
    title: str | None = None,
    key_tokens: Sequence[str] | None = None,
) -> Figure:
    """Draw one layer and head's attention as a heatmap labelled with the tokens.

    Args:
        attentions: ``output.attentions`` of a model run with ``output_attentions=True``
            (tuple of (B, H, T, S)), or a single (B, H, T, S) or (T, S) tensor.
        tokens: labels of the T queries (and of the keys, unless ``key_tokens`` is given, e.g. for
            cross attention).
        layer, head, batch_index: which map to draw.
        path: also write the figure there (a PNG, or any format matplotlib knows by the suffix).
        title: the figure's title (default: the layer and head).

    Returns:
        The figure. A notebook shows it at the end of the cell; assign it (``fig = plot_attention(...)``)
        so that a last-line call is not shown twice (once as the cell's value). A script or program
        that only writes files closes it (``plt.close(fig)``).

    Example:
        >>> import torch
        >>> probs = torch.softmax(torch.randn(1, 2, 3, 3), dim=-1)  # (B, H, T, S)
        >>> fig = plot_attention(probs, ["a", "b", "c"], head=1)
        >>> fig.axes[0].get_title()
        'layer 0, head 1'
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
    if path is not None:
        fig.savefig(Path(path), dpi=100, bbox_inches="tight")
    return fig
