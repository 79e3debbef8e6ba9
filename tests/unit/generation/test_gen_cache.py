"""The KV cache: its size formula, grouped-query heads, growth, and cached forwards equal to uncached ones."""

from __future__ import annotations

import pytest
import torch

from minitransformer.generation import DynamicCache, StaticCache, cache_nbytes, expected_cache_nbytes
from minitransformer.generation.cache import LayerCache
from minitransformer.models.gpt2 import GPT2, GPT2Config
from minitransformer.models.llama import Llama, LlamaConfig, MistralConfig
from minitransformer.models.t5 import T5, T5Config
from minitransformer.testing import assert_close

LLAMA = dict(vocab_size=50, hidden_size=32, intermediate_size=40, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.2)


def tiny(family: str):
    torch.manual_seed(0)
    if family == "gpt2":
        return GPT2(GPT2Config(vocab_size=50, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                               initializer_range=0.2)).eval()
    if family == "llama":
        return Llama(LlamaConfig(**LLAMA)).eval()
    if family == "mistral":  # a window shorter than the sequences: the cache must respect it too
        return Llama(MistralConfig(**LLAMA, sliding_window=5)).eval()
    return T5(T5Config(vocab_size=50, d_model=32, d_kv=8, d_ff=40, num_layers=2, num_heads=4,
                       relative_attention_num_buckets=8, relative_attention_max_distance=12)).eval()


@pytest.mark.parametrize("batch,prompt,steps", [(1, 5, 0), (3, 7, 4), (2, 1, 9)])
def test_cache_nbytes_is_2_layers_batch_hkv_tokens_headdim_bytes(batch, prompt, steps):
    model = tiny("llama")  # 3 layers, Hkv = 2 (not H = 4), D = 8
    ids = torch.randint(0, 50, (batch, prompt + steps))
    with torch.no_grad():
        out = model(ids[:, :prompt], use_cache=True)
        for t in range(prompt, prompt + steps):
            model(ids[:, t:t + 1], past_key_values=out.past_key_values)
    cache = out.past_key_values
    assert cache[0].key.shape == (batch, 2, prompt + steps, 8)  # Hkv heads are stored, not H
    assert cache_nbytes(cache) == 2 * 3 * batch * 2 * (prompt + steps) * 8 * 4
    assert cache_nbytes(cache) == expected_cache_nbytes(3, batch, 2, prompt + steps, 8, torch.float32)


def test_static_cache_nbytes_counts_every_slot():
    cache = StaticCache(4, 2, 3, 16, max_cache_len=20, dtype=torch.bfloat16)
    assert cache_nbytes(cache) == expected_cache_nbytes(4, 2, 3, 20, 16, torch.bfloat16) == 2 * 4 * 2 * 3 * 20 * 16 * 2


def test_layer_cache_grows_like_concatenation():
    layer, keys = LayerCache(), []
    g = torch.Generator().manual_seed(0)
    for T in (3, 1, 1, 5, 1, 7, 1):  # forces the buffer to grow several times
        k = torch.randn(2, 2, T, 4, generator=g)
        keys.append(k)
        got, _ = layer.update(k, -k)
        assert torch.equal(got, torch.cat(keys, dim=2))
    layer.reorder(torch.tensor([1, 0]))
    assert torch.equal(layer.key, torch.cat(keys, dim=2)[[1, 0]])
    layer.crop(4)
    assert torch.equal(layer.value, -torch.cat(keys, dim=2)[[1, 0], :, :4])


def test_static_cache_overflow_names_max_cache_len():
    cache = StaticCache(1, 1, 1, 4, max_cache_len=3)
    cache.prepare(3)
    cache.advance(3)
    with pytest.raises(ValueError, match="max_cache_len=3"):
        cache.prepare(1)


@pytest.mark.parametrize("family", ["gpt2", "llama", "mistral"])
@pytest.mark.parametrize("kind", ["dynamic", "static"])
def test_cached_steps_equal_full_forward(family, kind):
    """Prefill 4 tokens, then feed one at a time: every step's logits equal the uncached forward's."""
    model = tiny(family)
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # left padding in row 1
    with torch.no_grad():
        full = model(ids, attention_mask=mask).logits  # (B, 12, V)
        if kind == "dynamic":
            cache = DynamicCache(len(model.model.layers if family != "gpt2" else model.transformer.h))
        else:
            layers = model.model.layers if family != "gpt2" else model.transformer.h
            attn = layers[0].self_attn
            cache = StaticCache(len(layers), 2, attn.num_kv_heads, attn.head_dim, max_cache_len=12)
        pieces, start = [], 0
        for end in (4, *range(5, 13)):
            if kind == "static":
                cache.prepare(end - start)
            pieces.append(model(ids[:, start:end], attention_mask=mask[:, :end], past_key_values=cache).logits)
            if kind == "static":
                cache.advance(end - start)
            start = end
    real = mask.bool()
    assert_close(torch.cat(pieces, dim=1)[real], full[real], what=f"{family} {kind} cache")


def test_t5_cached_decode_equals_full_decode_and_projects_cross_kv_once():
    model = tiny("t5")
    src = torch.randint(2, 50, (2, 9), generator=torch.Generator().manual_seed(2))
    src_mask = torch.ones_like(src)
    src_mask[0, -3:] = 0
    tgt = torch.randint(2, 50, (2, 6), generator=torch.Generator().manual_seed(3))
    calls = []
    hooks = [layer.cross_attn.k_proj.register_forward_hook(lambda *_: calls.append(1))
             for layer in model.decoder.layers]
    with torch.no_grad():
        enc = model.encode(src, src_mask).last_hidden_state
        full = model.decode(tgt, enc, src_mask).logits
        calls.clear()
        out = model.decode(tgt[:, :2], enc, src_mask, use_cache=True)
        pieces = [out.logits]
        for t in range(2, 6):
            pieces.append(model.decode(tgt[:, t:t + 1], enc, src_mask, past_key_values=out.past_key_values).logits)
        assert len(calls) == len(model.decoder.layers)  # the encoder's keys: projected by the first step only
        calls.clear()
        model.generate(src, src_mask, max_new_tokens=8, eos_token_id=[])
        assert len(calls) == len(model.decoder.layers)  # once per generation, not once per token
    for h in hooks:
        h.remove()
    assert_close(torch.cat(pieces, dim=1), full, what="T5 cached decode")
