"""``minitransformer demo``: a tour of the layers on a built-in sentence, with nothing to download.

text -> byte ids -> token + sinusoidal position vectors -> two pre-norm causal blocks -> logits,
with the shape at every stage, and two proofs run live: the from-scratch attention equals torch's
fused kernel, and a changed future token does not reach earlier positions.
"""

from __future__ import annotations

import torch
from torch import nn

from minitransformer.layers import (
    DecoderBlock,
    LayerNorm,
    SinusoidalPositionEncoding,
    TokenEmbedding,
    decoder_mask,
)
from minitransformer.testing import max_abs_diff

DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog."


class TinyDecoder(nn.Module):
    """A 2-layer decoder over bytes (V = 256), built only from minitransformer.layers."""

    def __init__(self, hidden_size: int = 64, num_heads: int = 4, num_layers: int = 2, max_positions: int = 512):
        super().__init__()
        self.embed = TokenEmbedding(256, hidden_size)
        self.positions = SinusoidalPositionEncoding(max_positions, hidden_size)
        self.blocks = nn.ModuleList(
            DecoderBlock.standard(hidden_size, num_heads, 4 * hidden_size, cross_attention=False, norm_first=True,
                                  activation="gelu")
            for _ in range(num_layers)
        )
        self.final_norm = LayerNorm(hidden_size)

    def set_backend(self, backend: str) -> None:
        for block in self.blocks:
            block.self_attn.attn_implementation = backend

    def forward(self, ids: torch.Tensor, output_attentions: bool = False):
        T = ids.shape[1]
        x = self.embed(ids) + self.positions(torch.arange(T))  # (B, T, C)
        mask = decoder_mask(None, T)  # (1, 1, T, T)
        attentions = []
        for block in self.blocks:
            x, w, _ = block(x, attn_mask=mask, output_attentions=output_attentions)
            attentions.append(w)
        x = self.final_norm(x)
        logits = x @ self.embed.weight.T  # tied head: (B, T, V)
        return logits, attentions


def run_demo(text: str = DEFAULT_TEXT, plot: str | None = None, seed: int = 0) -> dict[str, float]:
    """Run the tour and return the measured figures (printed as it goes)."""
    torch.manual_seed(seed)
    ids = torch.tensor([list(text.encode("utf-8"))])  # (1, T)
    if ids.shape[1] < 2:
        raise ValueError("the demo needs a text of at least 2 bytes; pass --text with a longer sentence")
    model = TinyDecoder().eval()
    print(f"text: {text!r}")
    print(f"byte ids: shape {tuple(ids.shape)} (B, T), first ids {ids[0, :8].tolist()}")
    with torch.no_grad():
        logits, attentions = model(ids, output_attentions=True)
        print(f"logits: shape {tuple(logits.shape)} (B, T, V)")
        print(f"attention probabilities per layer: shape {tuple(attentions[0].shape)} (B, H, T, S)")

        model.set_backend("math")
        math_logits, _ = model(ids)
        model.set_backend("sdpa")
        sdpa_logits, _ = model(ids)
        diff = max_abs_diff(math_logits, sdpa_logits)
        print(f"from-scratch attention vs torch fused SDPA: max abs diff {diff:.2e} (bound 1e-5)")

        changed = ids.clone()
        changed[0, -1] = (changed[0, -1] + 1) % 256
        other, _ = model(changed)
        leaked = max_abs_diff(other[:, :-1], sdpa_logits[:, :-1])
        print(f"changing the last byte moves earlier logits by {leaked:.1e} (must be 0: causal mask)")

    if plot:
        import matplotlib.pyplot as plt

        from minitransformer.viz import plot_attention

        labels = [chr(b) if 32 <= b < 127 else "?" for b in ids[0].tolist()]
        fig = plot_attention(attentions, labels, layer=0, head=0, path=plot, title="layer 0, head 0 (random weights)")
        plt.close(fig)  # written to the file; a command opens no window
        print(f"wrote {plot}")
    ok = diff <= 1e-5 and leaked == 0.0
    print("demo OK" if ok else "demo FAILED")
    return {"math_vs_sdpa": diff, "leak": leaked, "ok": float(ok)}
