"""attn_implementation="flash": every family runs its attention through the tiled flash_attention, equal
to the written-out path within 1e-5 (fp32), outputs and gradients, with padding and with a KV cache."""

from __future__ import annotations

import pytest
import torch

from minitransformer.layers.attention import dispatch_attention
from minitransformer.models import BERT, GPT2, T5, BertConfig, GPT2Config, Llama, LlamaConfig, T5Config

NO_DROPOUT = {
    "gpt2": dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),
    "llama": {},
    "bert": dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    "t5": dict(dropout_rate=0.0),
}
FAMILIES = {
    "gpt2": (GPT2, GPT2Config, "gpt2-tiny"),
    "llama": (Llama, LlamaConfig, "llama-tiny"),
    "bert": (BERT, BertConfig, "bert-tiny"),
    "t5": (T5, T5Config, "t5-tiny"),
}


def pair(family: str):
    cls, config_cls, preset = FAMILIES[family]
    config = config_cls.from_name(preset, **NO_DROPOUT[family])
    torch.manual_seed(0)
    math_model = cls(config, attn_implementation="math")
    flash_model = cls(config, attn_implementation="flash")
    flash_model.load_state_dict(math_model.state_dict())
    return math_model, flash_model


def run(model, family, ids, mask):
    if family == "t5":
        return model(ids, attention_mask=mask, decoder_input_ids=ids[:, :5]).logits
    out = model(ids, attention_mask=mask)
    return out.logits if out.logits is not None else out.last_hidden_state


@pytest.mark.parametrize("family", list(FAMILIES))
def test_flash_equals_math_outputs_and_gradients_with_padding(family, monkeypatch):
    import minitransformer.layers.attention as attention

    calls = []
    tiled = attention.flash_attention
    monkeypatch.setattr(attention, "flash_attention", lambda *a, **k: calls.append(1) or tiled(*a, **k))
    math_model, flash_model = pair(family)
    ids = torch.randint(3, 200, (2, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0 if family in ("gpt2", "llama") else 1  # decoders: left padding
    mask[1, -3:] = 0 if family in ("bert", "t5") else 1  # encoders: right padding
    outs, grads = [], []
    for model in (math_model, flash_model):
        model.train()
        out = run(model, family, ids, mask)
        keep = mask.bool() if family != "t5" else torch.ones(2, 5, dtype=torch.bool)
        out[keep].square().mean().backward()
        outs.append(out[keep].detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    layers = {"gpt2": 2, "llama": 2, "bert": 2, "t5": 2 + 2 * 2}[family]  # T5: encoder; decoder self + cross
    assert len(calls) == layers  # the flash model's attention went through the tiles, every layer
    assert (outs[0] - outs[1]).abs().max().item() <= 1e-5
    assert grads[0].keys() == grads[1].keys()
    worst = max((grads[0][n] - grads[1][n]).abs().max().item() for n in grads[0])
    assert worst <= 1e-5, worst


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_flash_generates_the_same_tokens_with_the_cache(family):
    math_model, flash_model = pair(family)
    prompt = torch.randint(3, 200, (1, 6), generator=torch.Generator().manual_seed(2))
    a = math_model.eval().generate(prompt, max_new_tokens=8, do_sample=False)
    b = flash_model.eval().generate(prompt, max_new_tokens=8, do_sample=False)
    assert torch.equal(a, b)


def test_flash_refuses_attention_dropout_and_a_misaligned_causal_flag():
    q = torch.randn(1, 2, 3, 4)
    kv = torch.randn(1, 2, 5, 4)
    with pytest.raises(ValueError, match="no attention dropout"):
        dispatch_attention(q, kv, kv, backend="flash", dropout_p=0.1)
    with pytest.raises(ValueError, match="pass the causal mask instead"):
        dispatch_attention(q, kv, kv, backend="flash", is_causal=True)
    out, weights = dispatch_attention(q, kv, kv, backend="flash", return_weights=True)  # maps: the math path
    assert weights is not None and weights.shape == (1, 2, 3, 5)
