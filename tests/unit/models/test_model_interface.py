"""The model surface a transformers user expects, and the one interface generation uses.

- ``model.device``, ``model.dtype``, ``num_parameters()``, ``max_positions``;
- named presets, ``GPT2Config.from_name("gpt2")``, with the parameter counts of the real models;
- ``attn_implementation``: the same switch with the same default in every family;
- ``attention_mask`` is HF's 2-D mask only; a ready 4-D mask is ``prepared_mask``;
- a new decoder-only family written in a test file generates with no edit to ``generation/``.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from minitransformer.layers import MLP, DecoderBlock, LayerNorm, MultiHeadAttention, RMSNorm, TokenEmbedding
from minitransformer.layers.kv_cache import DynamicCache, EncoderDecoderCache, StaticCache
from minitransformer.models import BERT, GPT2, T5, BertConfig, GPT2Config, Llama, LlamaConfig, T5Config
from minitransformer.models.base import Config, DecoderOnlyModel, positions_from_attention_mask
from minitransformer.models.outputs import ModelOutput
from minitransformer.testing import assert_close, seed_weights

FAMILIES = {
    "gpt2": (GPT2, GPT2Config, "gpt2-tiny"),
    "llama": (Llama, LlamaConfig, "llama-tiny"),
    "bert": (BERT, BertConfig, "bert-tiny"),
    "t5": (T5, T5Config, "t5-tiny"),
}


def tiny(family: str, **kwargs):
    model_class, config_class, preset = FAMILIES[family]
    model = model_class(config_class.from_name(preset), **kwargs).eval()
    seed_weights(model, seed=0, std=0.2)
    return model


def run(model, ids, mask=None):
    if isinstance(model, T5):
        return model(ids, mask, decoder_input_ids=ids[:, :3]).logits
    out = model(ids, attention_mask=mask)
    return out.last_hidden_state if out.logits is None else out.logits


@pytest.mark.parametrize("family", FAMILIES)
def test_device_dtype_and_parameter_count(family):
    model = tiny(family)
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    assert model.to(torch.bfloat16).dtype == torch.bfloat16
    unique = {id(p): p.numel() for p in model.parameters()}  # a tied head counts once
    assert model.num_parameters() == sum(unique.values())
    model.requires_grad_(False)
    assert model.num_parameters(only_trainable=True) == 0


def test_max_positions_is_the_context_of_each_family():
    assert tiny("gpt2").max_positions == 64 and tiny("llama").max_positions == 64
    assert tiny("t5").max_positions is None


@pytest.mark.parametrize("config_class, name, parameters", [
    (GPT2Config, "gpt2", 124_439_808),  # GPT-2 small, as transformers counts it (the head tied)
    (LlamaConfig, "smollm-135m", 134_515_008),
    (BertConfig, "bert-base-uncased", 109_482_240),
    (BertConfig, "all-MiniLM-L6-v2", 22_713_216),
    (T5Config, "t5-small", 60_506_624),
])
def test_presets_have_the_published_sizes(config_class, name, parameters):
    """The presets build, on the meta device (shapes only), models of the real checkpoints' sizes."""
    model_class = {GPT2Config: GPT2, LlamaConfig: Llama, BertConfig: BERT, T5Config: T5}[config_class]
    with torch.device("meta"):
        model = model_class(config_class.from_name(name))
    assert model.num_parameters() == parameters


@pytest.mark.parametrize("config_class", [GPT2Config, LlamaConfig, BertConfig, T5Config])
def test_every_preset_builds_a_valid_config(config_class):
    assert config_class.presets, f"{config_class.__name__} has no presets"
    for name in config_class.presets:
        config = config_class.from_name(name)
        assert isinstance(config, Config)
        assert config_class.from_dict(config.to_dict()) == config  # and round-trips through config.json


def test_preset_overrides_and_unknown_names():
    assert GPT2Config.from_name("gpt2-tiny", n_layer=1).n_layer == 1
    with pytest.raises(ValueError, match=r"no preset 'gpt-2'.*did you mean 'gpt2'.*gpt2-medium"):
        GPT2Config.from_name("gpt-2")


def test_submodules_are_reachable_after_import_minitransformer():
    code = ("import minitransformer as mt\n"
            "print(mt.models.GPT2.__name__, mt.layers.RMSNorm.__name__, mt.generation.DynamicCache.__name__,\n"
            "      mt.viz.__name__, mt.tokenizers.__name__, mt.loading.__name__, mt.AutoModel.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["GPT2", "RMSNorm", "DynamicCache", "minitransformer.viz", "minitransformer.tokenizers",
                   "minitransformer.loading", "AutoModel"]


def norms_and_attention(model):
    norms = [m for m in model.modules() if isinstance(m, (LayerNorm, RMSNorm))]
    attention = [m for m in model.modules() if isinstance(m, MultiHeadAttention)]
    return norms, attention


@pytest.mark.parametrize("family", FAMILIES)
def test_one_backend_switch_with_the_same_meaning_and_default_everywhere(family):
    """Default "math": every norm and attention written out; "sdpa": every one fused; same function."""
    default, fused = tiny(family), tiny(family, attn_implementation="sdpa")
    norms, attention = norms_and_attention(default)
    assert norms and attention
    assert not any(n.fused for n in norms) and {a.attn_implementation for a in attention} == {"math"}
    norms, attention = norms_and_attention(fused)
    assert all(n.fused for n in norms) and {a.attn_implementation for a in attention} == {"sdpa"}
    eager = tiny(family, attn_implementation="eager")  # transformers' name for the written-out path
    assert {a.attn_implementation for a in norms_and_attention(eager)[1]} == {"math"}
    ids = torch.randint(0, 200, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    with torch.no_grad():
        assert_close(run(fused, ids, mask), run(default, ids, mask), relative_to_max=True,
                     what=f"{family}: sdpa against math")


def test_an_unknown_backend_names_the_choices():
    with pytest.raises(ValueError, match=r"attn_implementation must be one of \('math', 'sdpa', 'flash'\)"):
        GPT2(GPT2Config.from_name("gpt2-tiny"), attn_implementation="flashy")


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_a_4d_attention_mask_is_refused_and_prepared_mask_takes_it(family):
    model = tiny(family)
    ids = torch.randint(0, 200, (2, 6), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    ready = model.build_mask(mask, 6)  # (B, 1, T, T) bool
    with pytest.raises(ValueError, match="prepared_mask="):
        model(ids, attention_mask=ready)
    with pytest.raises(ValueError, match="needs position_ids"):
        model(ids, prepared_mask=ready)
    positions = positions_from_attention_mask(mask, 6, ids.device)
    with torch.no_grad():
        expected = model(ids, attention_mask=mask, position_ids=positions).logits
        got = model(ids, prepared_mask=ready, position_ids=positions).logits
    assert torch.equal(got, expected)


@pytest.mark.parametrize("family", ["gpt2", "llama", "t5"])
def test_new_cache_gives_each_family_its_cache(family):
    model = tiny(family)
    dynamic, static = model.new_cache(), model.new_cache(batch_size=3, max_cache_len=10, static=True)
    if family == "t5":
        assert isinstance(dynamic, EncoderDecoderCache) and not dynamic.is_static and static.is_static
        static = static.self_attention
    else:
        assert isinstance(dynamic, DynamicCache) and isinstance(static, StaticCache)
    kv_heads = {"gpt2": 4, "llama": 2, "t5": 4}[family]  # the tiny presets: Hkv heads of D = 8
    assert static[0].key.shape == (3, kv_heads, 10, 8)
    with pytest.raises(ValueError, match="max_cache_len >= 1"):
        model.new_cache(static=True)


def test_static_cache_owns_its_steps():
    cache = StaticCache(1, batch_size=1, num_key_value_heads=1, head_dim=2, max_cache_len=5)
    with pytest.raises(ValueError, match=r"call cache.prepare\(2\)"):
        cache.step(2)
    cache.prepare(2)
    past, keys = cache.step(2)
    assert past.tolist() == [0] and keys == 5
    mask = torch.ones(1, 1, 2, 2, dtype=torch.bool)
    assert cache.widen_mask(mask)[0, 0].tolist() == [[True, True, False, False, False]] * 2
    cache.advance(2)
    cache.prepare(1)
    assert cache.cache_position.tolist() == [2] and cache.get_seq_length() == 2


class TinyDecoder(DecoderOnlyModel):
    """A decoder-only family written here, from the shared layers: token embedding, no positions at
    all (the causal mask alone orders the tokens), two LayerNorm blocks, a tied head."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        self.config = config
        C = config.n_embd
        self.embed = TokenEmbedding(config.vocab_size, C)
        self.blocks = nn.ModuleList(
            DecoderBlock(MultiHeadAttention(C, config.n_head), MLP(C, 2 * C), LayerNorm(C), LayerNorm(C))
            for _ in range(config.n_layer)
        )
        self.norm = LayerNorm(C)

    @property
    def layers(self) -> nn.ModuleList:
        return self.blocks

    @property
    def max_positions(self) -> int:
        return self.config.n_positions

    def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None,
                use_cache=None, logits_to_keep=0, prepared_mask=None):
        past_key_values, mask, _ = self.prepare_inputs(
            input_ids, attention_mask=attention_mask, prepared_mask=prepared_mask, position_ids=position_ids,
            past_key_values=past_key_values, use_cache=use_cache)
        x = self.embed(input_ids)  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x, _, _ = block(x, attn_mask=mask, cache=None if past_key_values is None else past_key_values[i])
        logits = nn.functional.linear(self.norm(x)[:, -logits_to_keep:], self.embed.weight)  # (B, T, V)
        return ModelOutput(logits=logits, past_key_values=past_key_values)


@pytest.mark.parametrize("cache_implementation", ["dynamic", "static"])
def test_a_new_family_generates_with_no_edit_to_generation(cache_implementation):
    """Generation knows a model only through DecoderOnlyModel: a family it has never seen works, and
    its cached greedy output equals the one recomputed from scratch at every step."""
    model = TinyDecoder(GPT2Config.from_name("gpt2-tiny")).eval()
    seed_weights(model, seed=3, std=0.3)
    ids = torch.tensor([[5, 6, 7, 8], [0, 0, 9, 10]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    cached = model.generate(ids, mask, max_new_tokens=6, cache_implementation=cache_implementation)
    uncached = model.generate(ids, mask, max_new_tokens=6, use_cache=False)
    assert cached.shape == (2, 10) and torch.equal(cached, uncached)
    greedy = ids.clone()
    with torch.no_grad():
        for _ in range(6):  # row 0 has no padding: plain argmax decoding, by hand
            greedy = torch.cat([greedy, model(greedy[:1]).logits[:, -1].argmax(-1, keepdim=True).expand(2, 1)], 1)
    assert torch.equal(cached[0], greedy[0])
