"""Checks for chapter 9. The references are independent of your code: ``torch.cat`` of the steps and
the full (uncached) forward of the library's GPT-2 and LLaMA, the tensors of transformers' own
``DynamicCache``, transformers' ``generate`` and logits processors on a tiny random GPT-2, and
hand-computed values. Nothing is downloaded."""

from __future__ import annotations

import pytest
import torch

import minitransformer
from minitransformer.exercises import expect_close, expect_equal, expect_shape
from minitransformer.models import GPT2, GPT2Config, Llama, LlamaConfig
from minitransformer.models.base import positions_from_attention_mask

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see the fixture

V = 61


@pytest.fixture(scope="module")
def hf():
    """A tiny random GPT-2 built by transformers: weights large enough that greedy decoding wanders."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=V, n_positions=64, n_embd=16, n_layer=2, n_head=4,
                                     initializer_range=0.3, bos_token_id=None, eos_token_id=None,
                                     attn_implementation="eager")
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def ours(hf, tmp_path_factory):
    """The same checkpoint, saved by transformers and loaded by minitransformer."""
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    hf.save_pretrained(folder)
    return minitransformer.from_pretrained(folder)


def _ids(B: int, T: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


class _StudentCache:
    """What the models need from a whole-model cache: one layer cache per block and the length."""

    def __init__(self, ex, num_layers: int):
        self.layers = [ex.KVCache() for _ in range(num_layers)]

    def __getitem__(self, layer: int):
        return self.layers[layer]

    def get_seq_length(self) -> int:
        return self.layers[0].get_seq_length()


class _CountingModel:
    """Wraps a model and records the length T of the input_ids of every forward."""

    def __init__(self, model):
        self.model, self.lengths = model, []

    def __call__(self, input_ids, *args, **kwargs):
        self.lengths.append(input_ids.shape[1])
        return self.model(input_ids, *args, **kwargs)

    forward = __call__


# 9.1 ------------------------------------------------------------------------------------------


def test_9_1_update_appends_along_the_sequence_axis(ex):
    g = torch.Generator().manual_seed(2)
    steps = [(torch.randn(2, 3, T, 4, generator=g), torch.randn(2, 3, T, 4, generator=g)) for T in (5, 1, 1, 2)]
    cache = ex.KVCache()
    for i, _ in enumerate(steps):
        k_all, v_all = cache.update(*steps[i])
        S = sum(k.shape[2] for k, _ in steps[:i + 1])
        case = f"after update {i + 1} (T = {[k.shape[2] for k, _ in steps[:i + 1]]}), B=2 Hkv=3 D=4"
        expect_shape(k_all, (2, 3, S, 4), exercise="9.1", case=f"{case}: keys (B, Hkv, S, D)")
        expect_close(k_all, torch.cat([k for k, _ in steps[:i + 1]], dim=2), exercise="9.1",
                     case=f"{case}: keys vs torch.cat of every step's keys along dim 2", atol=0.0)
        expect_close(v_all, torch.cat([v for _, v in steps[:i + 1]], dim=2), exercise="9.1",
                     case=f"{case}: values vs torch.cat of every step's values along dim 2", atol=0.0)
        expect_equal(cache.get_seq_length(), S, exercise="9.1", case=f"{case}: get_seq_length()")


@pytest.mark.parametrize("family", ["gpt2", "llama (GQA, H=4, Hkv=2)"])
def test_9_1_cached_logits_equal_the_uncached_forward(ex, family):
    torch.manual_seed(3)
    if family == "gpt2":
        model = GPT2(GPT2Config(vocab_size=V, n_positions=32, n_embd=16, n_layer=2, n_head=4,
                                initializer_range=0.3)).eval()
    else:
        model = Llama(LlamaConfig(vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                  initializer_range=0.3)).eval()
    ids = _ids(2, 12, seed=4)
    cache = _StudentCache(ex, len(model.transformer.h if family == "gpt2" else model.model.layers))
    with torch.no_grad():
        full = model(ids).logits  # (B, 12, V): every position at once, no cache
        prefill = model(ids[:, :6], past_key_values=cache).logits  # (B, 6, V)
        expect_close(prefill, full[:, :6], exercise="9.1", case=f"{family}: prefill of 6 tokens into your caches",
                     atol=1e-5)
        for t in range(6, 12):
            step = model(ids[:, t:t + 1], past_key_values=cache).logits[:, 0]  # (B, V)
            expect_close(step, full[:, t], exercise="9.1", atol=1e-5,
                         case=f"{family}: token {t} fed alone with your caches vs the full forward's position {t}")


# 9.2 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, args, expected", [
    ("GPT-2 124M, 1024 tokens, float32", (12, 1, 12, 1024, 64, torch.float32), 75_497_472),
    ("Llama-3-8B, 4096 tokens, bfloat16", (32, 1, 8, 4096, 128, torch.bfloat16), 536_870_912),
    ("Llama-3-8B, batch 4, 4096 tokens, float16", (32, 4, 8, 4096, 128, torch.float16), 2_147_483_648),
])
def test_9_2_cache_size_by_hand(ex, name, args, expected):
    got = ex.cache_size_bytes(*args)
    expect_equal(got, expected, exercise="9.2",
                 case=f"{name} (computed by hand: 2 x layers x B x Hkv x S x D x bytes)")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("family", ["gpt2", "llama (GQA, H=4, Hkv=2)"])
def test_9_2_cache_size_equals_transformers_cache_tensors(ex, family, dtype):
    torch.manual_seed(5)
    if family == "gpt2":
        config = transformers.GPT2Config(vocab_size=V, n_positions=32, n_embd=16, n_layer=3, n_head=4)
        model, layers, kv_heads, head_dim = transformers.GPT2LMHeadModel(config), 3, 4, 4
    else:
        config = transformers.LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=32, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
        model, layers, kv_heads, head_dim = transformers.LlamaForCausalLM(config), 2, 2, 8
    model = model.to(dtype).eval()
    with torch.no_grad():
        cache = model(_ids(3, 7, seed=6), use_cache=True).past_key_values
    actual = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values))
    got = ex.cache_size_bytes(layers, 3, kv_heads, 7, head_dim, dtype)
    expect_equal(got, actual, exercise="9.2",
                 case=f"{family}, {dtype}, B=3, 7 tokens: bytes of transformers' DynamicCache after a forward")


# 9.3 ------------------------------------------------------------------------------------------


def test_9_3_mask_and_position_by_hand(ex):
    mask = torch.tensor([[0, 0, 1, 1],  # left-padded: two real tokens, so the next one is at position 2
                         [1, 1, 1, 1],
                         [0, 0, 0, 1]])
    new_mask, positions = ex.decode_step_inputs(mask)
    expect_equal(new_mask, torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 1, 1]]), exercise="9.3",
                 case="new_mask: the old mask with a 1 appended for the new token")
    expect_equal(positions, torch.tensor([[2], [4], [1]]), exercise="9.3",
                 case="positions (B, 1): the number of real tokens before the new one")


def test_9_3_left_padded_batch_equals_each_row_alone(ex, hf, ours):
    rows = [_ids(1, 6, seed=7), _ids(1, 3, seed=8), _ids(1, 1, seed=9)]
    P, new = 6, 8
    ids = torch.cat([torch.cat([torch.zeros(1, P - r.shape[1], dtype=torch.long), r], dim=1) for r in rows])
    mask = torch.cat([torch.cat([torch.zeros(1, P - r.shape[1], dtype=torch.long), torch.ones_like(r)], dim=1)
                      for r in rows])  # (3, 6), left padding
    with torch.no_grad():
        positions = positions_from_attention_mask(mask, P, mask.device)  # a forward does not count them itself
        out = ours(ids, attention_mask=mask, position_ids=positions, use_cache=True)  # prefill
        cache, tokens = out.past_key_values, ids
        for _ in range(new):
            next_id = out.logits[:, -1].argmax(dim=-1, keepdim=True)  # (3, 1)
            tokens = torch.cat([tokens, next_id], dim=1)
            mask, positions = ex.decode_step_inputs(mask)
            out = ours(next_id, attention_mask=mask, position_ids=positions, past_key_values=cache)
    for b, row in enumerate(rows):
        with torch.no_grad():
            alone = hf.generate(row, attention_mask=torch.ones_like(row), max_new_tokens=new, do_sample=False)
        expect_equal(tokens[b:b + 1, P:], alone[:, row.shape[1]:], exercise="9.3",
                     case=f"row {b} (prompt of {row.shape[1]}, {P - row.shape[1]} pads) decoded with your mask and "
                          "positions vs transformers' generate on that row alone")


# 9.4 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["minitransformer GPT2", "transformers GPT2LMHeadModel"])
@pytest.mark.parametrize("B, T, new", [(2, 5, 12), (1, 1, 8)])
def test_9_4_matches_transformers_generate(ex, hf, ours, which, B, T, new):
    ids = _ids(B, T, seed=10)
    with torch.no_grad():
        expected = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=False)
    assert expected[:, T:].unique().numel() > 2, "the reference model should not repeat one token forever"
    got = ex.greedy_generate_with_cache(ours if which.startswith("mini") else hf, ids, new)
    expect_equal(got, expected, exercise="9.4",
                 case=f"{which}, B={B}, prompt of {T}, {new} new tokens, token for token vs generate(do_sample=False)")


def test_9_4_equals_the_uncached_loop_and_feeds_one_token_per_step(ex, ours):
    ids, new = _ids(2, 7, seed=11), 10
    with torch.no_grad():  # the reference: chapter 7's loop, the whole sequence every step
        expected = ids
        for _ in range(new):
            expected = torch.cat([expected, ours(expected).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    counting = _CountingModel(ours)
    got = ex.greedy_generate_with_cache(counting, ids, new)
    expect_equal(got, expected, exercise="9.4", case="B=2, prompt of 7, 10 new tokens vs the uncached loop")
    lengths = counting.lengths
    if not lengths or lengths[0] != 7 or any(T != 1 for T in lengths[1:]) or len(lengths) > new + 1:
        raise AssertionError(
            f"Exercise 9.4, case 'forward lengths': expected the prompt once (T=7), then T=1 per new token "
            f"({new} or {new + 1} forwards in all); your forwards had T = {lengths}. Pass only the new token "
            "with past_key_values=... after the first forward."
        )


# 9.5 ------------------------------------------------------------------------------------------


def _hf_filter(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    ids = torch.zeros(logits.shape[0], 1, dtype=torch.long)  # the warpers ignore the input ids
    if top_k is not None:
        logits = TopKLogitsWarper(top_k)(ids, logits.clone())
    if top_p is not None:
        logits = TopPLogitsWarper(top_p)(ids, logits.clone())
    return logits


def _expect_filtered(got: torch.Tensor, expected: torch.Tensor, case: str) -> None:
    expect_shape(got, tuple(expected.shape), exercise="9.5", case=case)
    expect_equal(torch.isneginf(got), torch.isneginf(expected), exercise="9.5",
                 case=f"{case}: which tokens are filtered (True = -inf)")
    kept = ~torch.isneginf(expected)
    expect_close(got[kept], expected[kept], exercise="9.5", case=f"{case}: the kept logits are unchanged")


@pytest.mark.parametrize("top_k, top_p", [(5, None), (None, 0.9), (None, 0.3), (10, 0.8), (1, 0.95)])
def test_9_5_matches_transformers_warpers(ex, top_k, top_p):
    logits = 2.0 * torch.randn(4, 50, generator=torch.Generator().manual_seed(12))
    got = ex.top_k_top_p_filter(logits.clone(), top_k=top_k, top_p=top_p)
    _expect_filtered(got, _hf_filter(logits, top_k, top_p),
                     f"B=4 V=50, top_k={top_k}, top_p={top_p}, vs TopKLogitsWarper then TopPLogitsWarper")


def test_9_5_ties_and_a_dominant_token(ex):
    logits = torch.tensor([[3.0, 1.0, 1.0, 0.0, -1.0],  # top_k=2: the tie with the 2nd is kept (3 tokens)
                           [9.0, 0.0, 0.0, 0.0, 0.0]])  # top_p: the first token alone has p > 0.99
    got = ex.top_k_top_p_filter(logits.clone(), top_k=2, top_p=None)
    _expect_filtered(got, _hf_filter(logits, 2, None), "top_k=2 with a tie at the 2nd place")
    got = ex.top_k_top_p_filter(logits.clone(), top_k=None, top_p=0.5)
    _expect_filtered(got, _hf_filter(logits, None, 0.5), "top_p=0.5: row 1's top token alone is enough")


# 9.6 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("penalty", [1.3, 0.7])
def test_9_6_matches_transformers_processor(ex, penalty):
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    logits = 2.0 * torch.randn(3, 20, generator=torch.Generator().manual_seed(13))
    previous = torch.tensor([[1, 4, 4, 7, 19],  # 4 twice: penalised once
                             [0, 0, 0, 0, 0],
                             [3, 5, 8, 13, 2]])
    expected = RepetitionPenaltyLogitsProcessor(penalty)(previous, logits.clone())
    got = ex.apply_repetition_penalty(logits.clone(), previous, penalty)
    expect_close(got, expected, exercise="9.6",
                 case=f"penalty={penalty}, B=3 V=20, vs transformers' RepetitionPenaltyLogitsProcessor")


def test_9_6_by_hand(ex):
    logits = torch.tensor([[2.0, -2.0, 1.0, -1.0]])
    got = ex.apply_repetition_penalty(logits, torch.tensor([[0, 1, 1]]), 2.0)
    expect_close(got, torch.tensor([[1.0, -4.0, 1.0, -1.0]]), exercise="9.6",
                 case="token 0 (logit 2 -> 2 / 2) and token 1 (-2 -> -2 x 2, once though seen twice); 2, 3 unseen")
