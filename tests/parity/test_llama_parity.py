"""LLaMA (and Mistral, Qwen2): our model, loaded from tiny transformers checkpoints with seeded weights, equals
``*ForCausalLM`` in fp32, with eager attention on the transformers side."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # for the shared helpers in decoder_parity.py (importlib mode)

transformers = pytest.importorskip("transformers")

from decoder_parity import Recorder, check_no_leakage, check_padded_batch_equals_single, compare_full  # noqa: E402

from minitransformer.loading import from_pretrained  # noqa: E402
from minitransformer.models import Llama, LlamaConfig  # noqa: E402
from minitransformer.models.base import positions_from_attention_mask  # noqa: E402
from minitransformer.testing import assert_close, seed_weights  # noqa: E402

pytestmark = pytest.mark.parity

VOCAB = 101
LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 16}
# name -> (transformers config class, overrides)
CONFIGS = {
    "mha_untied": ("LlamaConfig", dict(num_key_value_heads=4)),
    "gqa_tied_theta": ("LlamaConfig", dict(num_key_value_heads=2, tie_word_embeddings=True, rope_theta=500.0)),
    "mqa_linear_scaling": ("LlamaConfig", dict(num_key_value_heads=1,
                                                rope_scaling={"rope_type": "linear", "factor": 4.0})),
    "llama3_scaling": ("LlamaConfig", dict(num_key_value_heads=2, rope_theta=5e5, rope_scaling=LLAMA3_SCALING)),
    "biases_head_dim": ("LlamaConfig", dict(num_key_value_heads=2, attention_bias=True, mlp_bias=True, head_dim=16)),
    "qwen2": ("Qwen2Config", dict(num_key_value_heads=2, tie_word_embeddings=True)),
    "mistral_window": ("MistralConfig", dict(num_key_value_heads=2, sliding_window=5, head_dim=8)),
}


def tiny_hf_llama(kind: str = "LlamaConfig", seed: int = 0, **overrides):
    kwargs = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=64, bos_token_id=0, eos_token_id=0,
                  initializer_range=0.1, attn_implementation="eager")
    kwargs.update(overrides)
    config = getattr(transformers, kind)(**kwargs)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    # Seeded weights, not transformers' init: N(0, 0.1) (the initializer_range above) for matrices and
    # biases, norm gains 1 + N(0, 0.1), so that a mix-up between norm weights and biases shows.
    return seed_weights(model, seed=seed, std=0.1, norm_std=0.1)


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request, tmp_path_factory):
    kind, overrides = CONFIGS[request.param]
    hf = tiny_hf_llama(kind, **overrides)
    directory = tmp_path_factory.mktemp(f"llama-{request.param}")
    hf.save_pretrained(directory)
    return from_pretrained(directory), hf


def test_loads_our_class(pair):
    ours, hf = pair
    assert isinstance(ours, Llama) and not ours.training
    assert ours.config.model_type == hf.config.model_type
    assert (ours.lm_head.weight is ours.model.embed_tokens.weight) == hf.config.tie_word_embeddings


def test_logits_hidden_states_attentions(pair):
    ours, hf = pair
    ids = torch.randint(0, VOCAB, (3, 24), generator=torch.Generator().manual_seed(1))  # past 16: llama3's
    compare_full(ours, hf, ids, what=hf.config.model_type)                               # scaling band, the window


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_equals_one_by_one(pair, side):
    ours, hf = pair
    sequences = [list(range(5, 14)), [20, 21, 22], [30, 31, 32, 33, 34, 35]]
    check_padded_batch_equals_single(ours, hf, sequences, pad_id=0, side=side)


def test_padded_batch_against_transformers_with_mask(pair):
    """A left-padded batch, with the same arguments as transformers: default positions (0 .. T-1 whatever
    the mask says) and positions that count real tokens only (what generate passes). RoPE sees only
    differences of positions, so the real tokens agree with each other either way."""
    ours, hf = pair
    ids = torch.tensor([[0, 0, 3, 4, 5, 6], [6, 7, 8, 9, 10, 11]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    real = mask.bool()  # the padding queries see no key at all: their outputs are not defined
    positions = positions_from_attention_mask(mask, 6, ids.device)
    with torch.no_grad():
        by_default = ours(ids, attention_mask=mask).logits
        counted = ours(ids, attention_mask=mask, position_ids=positions).logits
        assert_close(by_default[real], hf(ids, attention_mask=mask).logits[real], what="default positions")
        hf_counted = hf(ids, attention_mask=mask, position_ids=positions).logits
    assert_close(counted[real], hf_counted[real], what="mask-based positions")
    assert_close(by_default[real], counted[real], what="RoPE: shifting every position changes nothing")


def test_no_leakage(pair):
    ours, _ = pair
    check_no_leakage(ours, VOCAB, T=10)


def test_components(pair):
    """RoPE tables, norms, attention, MLP and whole blocks, each fed what the HF module was fed."""
    ours, hf = pair
    ids = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(2))
    T = ids.shape[1]
    modules = {"embed": hf.model.embed_tokens, "norm": hf.model.norm}
    for i, layer in enumerate(hf.model.layers):
        modules |= {f"l{i}": layer, f"l{i}.in_norm": layer.input_layernorm, f"l{i}.attn": layer.self_attn,
                    f"l{i}.post_norm": layer.post_attention_layernorm, f"l{i}.mlp": layer.mlp}
    rec = Recorder(modules)
    positions = torch.arange(T)[None]  # (1, T)
    with torch.no_grad():
        hf(ids)
        rec.remove()
        assert_close(ours.model.embed_tokens(ids), rec.output("embed"), what="token embedding")
        x = rec.output("embed")
        hf_cos, hf_sin = hf.model.rotary_emb(x, positions)  # (1, T, D) in rotate-half layout
        cos, sin = ours.model.rotary_emb.cos_sin(positions, x.dtype)  # (1, T, D/2)
        assert_close(torch.cat((cos, cos), -1), hf_cos, what="RoPE cos")
        assert_close(torch.cat((sin, sin), -1), hf_sin, what="RoPE sin")
        mask = ours.build_mask(None, T, device=ids.device)  # (1, 1, T, T)
        for i, layer in enumerate(ours.model.layers):
            assert_close(layer.attn_norm(rec.input(f"l{i}.in_norm")), rec.output(f"l{i}.in_norm"),
                         what=f"layer {i} input_layernorm")
            out, _ = layer.self_attn(rec.input(f"l{i}.attn"), attn_mask=mask, position_ids=positions)
            assert_close(out, rec.output(f"l{i}.attn"), what=f"layer {i} attention")
            assert_close(layer.mlp_norm(rec.input(f"l{i}.post_norm")), rec.output(f"l{i}.post_norm"),
                         what=f"layer {i} post_attention_layernorm")
            assert_close(layer.mlp(rec.input(f"l{i}.mlp")), rec.output(f"l{i}.mlp"), what=f"layer {i} SwiGLU")
            out, _, _ = layer(rec.input(f"l{i}"), attn_mask=mask, position_ids=positions)
            assert_close(out, rec.output(f"l{i}"), what=f"layer {i}")
        assert_close(ours.model.norm(rec.input("norm")), rec.output("norm"), what="final norm")


def test_too_long_sequence_names_max_position_embeddings(pair):
    ours, _ = pair
    with pytest.raises(ValueError, match="max_position_embeddings"):
        ours(torch.zeros(1, 65, dtype=torch.long))


def test_out_of_vocabulary_id_errors_before_indexing(pair):
    ours, _ = pair
    with pytest.raises(IndexError, match="vocab"):
        ours(torch.tensor([[3, -1]]))


def test_trains_from_random_init():
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32))
    ids = torch.randint(0, VOCAB, (4, 16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = model(ids, labels=ids).loss.item()
    for _ in range(20):
        loss = model(ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 2
