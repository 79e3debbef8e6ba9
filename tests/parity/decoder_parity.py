"""Helpers shared by the GPT-2 and LLaMA parity tests (not a test module).

Everything here is offline: tiny models are built by transformers from a config, given seeded weights
(``minitransformer.testing.seed_weights``, not transformers' own init), saved with ``save_pretrained``
into a temporary directory, and loaded with our ``from_pretrained``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from minitransformer.models.base import positions_from_attention_mask
from minitransformer.testing import assert_close


def save_hf(model: nn.Module, directory: Path, **kwargs) -> Path:
    model.save_pretrained(directory, **kwargs)
    return directory


def compare_full(ours, hf, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 position_ids: torch.Tensor | None = None, what: str = "") -> None:
    """Logits, every hidden state and every attention map within the fp32 tolerance (1e-5)."""
    with torch.no_grad():
        a = ours(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                 output_hidden_states=True, output_attentions=True)
        b = hf(input_ids, attention_mask=attention_mask, position_ids=position_ids,
               output_hidden_states=True, output_attentions=True)
    assert_close(a.logits, b.logits, what=f"{what} logits")
    assert len(a.hidden_states) == len(b.hidden_states), "number of hidden states"
    for i, (x, y) in enumerate(zip(a.hidden_states, b.hidden_states)):
        assert_close(x, y, what=f"{what} hidden_states[{i}]")
    assert len(a.attentions) == len(b.attentions), "number of attention maps"
    for i, (x, y) in enumerate(zip(a.attentions, b.attentions)):
        assert_close(x, y, what=f"{what} attentions[{i}]")


class Recorder:
    """Records the inputs (positional and keyword) and outputs of HF submodules during a forward."""

    def __init__(self, modules: dict[str, nn.Module]):
        self.calls: dict[str, tuple[tuple, dict, object]] = {}
        self.handles = [m.register_forward_hook(self._hook(name), with_kwargs=True) for name, m in modules.items()]

    def _hook(self, name):
        def hook(module, args, kwargs, output):
            self.calls[name] = (args, kwargs, output)
        return hook

    def input(self, name: str) -> torch.Tensor:
        args, kwargs, _ = self.calls[name]
        return args[0] if args else kwargs["hidden_states"]

    def output(self, name: str) -> torch.Tensor:
        out = self.calls[name][2]
        return out[0] if isinstance(out, tuple) else out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def padded_batch(sequences: list[list[int]], pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), each (B, T_max), padded on the left or the right."""
    T = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), T), pad_id)
    mask = torch.zeros(len(sequences), T, dtype=torch.long)
    for b, s in enumerate(sequences):
        sl = slice(T - len(s), T) if side == "left" else slice(0, len(s))
        ids[b, sl] = torch.tensor(s)
        mask[b, sl] = 1
    return ids, mask


def check_padded_batch_equals_single(ours, hf, sequences: list[list[int]], pad_id: int, side: str) -> None:
    """Each real token's logits in a padded batch equal those of its sequence run alone, in ours
    and in transformers (run alone, and as the same padded batch).

    The batch gets positions that count real tokens only, as ``generate`` passes them: a forward
    without ``position_ids`` counts 0 .. T-1 whatever the mask says (as transformers' forward does),
    and a left-padded row's tokens would then sit at later positions than alone.
    """
    ids, mask = padded_batch(sequences, pad_id, side)
    positions = positions_from_attention_mask(mask, ids.shape[1], ids.device)  # (B, T)
    with torch.no_grad():
        batch = ours(ids, attention_mask=mask, position_ids=positions).logits
        hf_batch = hf(ids, attention_mask=mask, position_ids=positions).logits
        for b, s in enumerate(sequences):
            alone = ours(torch.tensor([s])).logits[0]
            reference = hf(torch.tensor([s])).logits[0]
            real = mask[b].bool()
            assert_close(batch[b, real], alone, what=f"{side}-padded row {b} vs alone")
            assert_close(alone, reference, what=f"row {b} alone vs transformers")
            assert_close(batch[b, real], hf_batch[b, real], what=f"{side}-padded row {b} vs transformers' batch")


def check_no_leakage(ours, vocab_size: int, T: int = 8, seed: int = 0) -> None:
    """A future token never changes earlier outputs; a padded token never changes any real output."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (1, T), generator=g)
    with torch.no_grad():
        base = ours(ids, output_hidden_states=True)
        for t in range(1, T):
            changed = ids.clone()
            changed[0, t:] = (changed[0, t:] + 1) % vocab_size  # rewrite the future from t on
            out = ours(changed, output_hidden_states=True)
            for i, (x, y) in enumerate(zip(out.hidden_states, base.hidden_states)):
                assert torch.equal(x[:, :t], y[:, :t]), f"hidden_states[{i}] before {t} saw a future token"
        for side in ("left", "right"):
            mask = torch.ones(1, T, dtype=torch.long)
            pads = slice(0, 3) if side == "left" else slice(T - 3, T)
            mask[0, pads] = 0
            real = mask[0].bool()
            a = ours(ids, attention_mask=mask).logits
            changed = ids.clone()
            changed[0, pads] = (changed[0, pads] + 7) % vocab_size
            b = ours(changed, attention_mask=mask).logits
            assert torch.equal(a[0, real], b[0, real]), f"a {side} padding token changed a real token's logits"
