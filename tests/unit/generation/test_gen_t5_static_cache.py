"""T5 with a static self-attention cache: the same logits as the dynamic cache, its size, beam reordering,
and the decode step traced as one graph under torch.compile."""

from __future__ import annotations

import pytest
import torch

from minitransformer.generation import (
    DynamicCache,
    EncoderDecoderCache,
    StaticCache,
    cache_nbytes,
    expected_cache_nbytes,
)
from minitransformer.generation.sessions import EncoderDecoderSession
from minitransformer.models.t5 import T5, T5Config
from minitransformer.testing import assert_close

V, LAYERS, H, D = 40, 2, 4, 8


def tiny_t5() -> T5:
    torch.manual_seed(0)
    return T5(T5Config(vocab_size=V, d_model=32, d_kv=D, d_ff=40, num_layers=LAYERS, num_heads=H,
                       relative_attention_num_buckets=8, relative_attention_max_distance=12)).eval()


def inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An encoder batch of 2 (row 0 padded at the end) and 7 decoder tokens starting with the start id."""
    g = torch.Generator().manual_seed(4)
    src = torch.randint(2, V, (2, 9), generator=g)
    src_mask = torch.ones_like(src)
    src_mask[0, -3:] = 0
    tgt = torch.randint(2, V, (2, 7), generator=g)
    tgt[:, 0] = 0
    return src, src_mask, tgt


def test_static_session_logits_equal_dynamic_every_step():
    """The relative position bias at the true query positions, the unwritten slots masked: same logits."""
    model, (src, src_mask, tgt) = tiny_t5(), inputs()
    L = tgt.shape[1]
    with torch.no_grad():
        dynamic = EncoderDecoderSession(model, src, src_mask, total_length=L)
        static = EncoderDecoderSession(model, src, src_mask, total_length=L, cache_implementation="static")
        assert static.cache.is_static and not dynamic.cache.is_static
        for pos in range(1, L + 1):  # logits of the token at pos, given tgt[:, :pos]
            expected, got = (s.prefill(tgt) if pos == 1 else s.decode(tgt, pos) for s in (dynamic, static))
            assert_close(got, expected, what=f"static vs dynamic, step {pos}")
    assert static.cache.get_seq_length() == L


def test_static_decode_by_hand_equals_full_decode():
    """Driving T5.decode with a static EncoderDecoderCache directly: prepare(T), forward, advance(T)."""
    model, (src, src_mask, tgt) = tiny_t5(), inputs()
    with torch.no_grad():
        enc = model.encode(src, src_mask).last_hidden_state  # (B, S, C)
        full = model.decode(tgt, enc, src_mask).logits  # (B, 7, V)
        cache = EncoderDecoderCache(LAYERS, self_attention=StaticCache(LAYERS, 2, H, D, max_cache_len=10))
        pieces, start = [], 0
        for end in (3, 4, 5, 6, 7):  # a 3-token prompt, then one token at a time
            cache.self_attention.prepare(end - start)
            pieces.append(model.decode(tgt[:, start:end], enc, src_mask, past_key_values=cache).logits)
            cache.self_attention.advance(end - start)
            start = end
    assert cache.get_seq_length() == 7
    assert_close(torch.cat(pieces, dim=1), full, what="T5 static-cache decode")


def test_static_decode_without_prepare_says_what_to_call():
    model, (src, src_mask, tgt) = tiny_t5(), inputs()
    cache = EncoderDecoderCache(LAYERS, self_attention=StaticCache(LAYERS, 2, H, D, max_cache_len=10))
    enc = model.encode(src, src_mask).last_hidden_state
    with pytest.raises(ValueError, match=r"prepare\(2\)"):
        model.decode(tgt[:, :2], enc, src_mask, past_key_values=cache)


def test_self_attention_cache_must_have_one_layer_per_block():
    with pytest.raises(ValueError, match="num_layers=2"):
        EncoderDecoderCache(2, self_attention=StaticCache(3, 1, H, D, max_cache_len=4))


def test_cache_nbytes_is_static_self_attention_plus_cross_attention():
    model, (src, src_mask, tgt) = tiny_t5(), inputs()
    K, L = 3, 12  # 3 beams per input: 6 rows; 1 start token + 11 new tokens
    with torch.no_grad():
        session = EncoderDecoderSession(model, src, src_mask, num_beams=K, total_length=L,
                                        cache_implementation="static")
        session.prefill(tgt.repeat_interleave(K, dim=0))
    rows, S_enc = 2 * K, src.shape[1]
    self_part = expected_cache_nbytes(LAYERS, rows, H, L, D)  # every slot, allocated up front
    cross_part = expected_cache_nbytes(LAYERS, rows, H, S_enc, D)  # the encoder's keys, projected once
    assert cache_nbytes(session.cache.self_attention) == self_part
    assert cache_nbytes(session.cache) == self_part + cross_part == 2 * LAYERS * rows * H * (L + S_enc) * D * 4


def test_static_cache_reorders_like_the_dynamic_one():
    """Beam search moves rows between beams: after the same reorder, both caches give the same logits."""
    model, (src, src_mask, tgt) = tiny_t5(), inputs()
    K, L = 3, tgt.shape[1]
    tokens = tgt.repeat_interleave(K, dim=0)  # (6, L)
    tokens[:, 1:] = torch.randint(2, V, (6, L - 1), generator=torch.Generator().manual_seed(5))  # beams differ
    index = torch.tensor([2, 2, 0, 4, 3, 3])  # each row continues a row of the same input
    with torch.no_grad():
        sessions = [EncoderDecoderSession(model, src, src_mask, num_beams=K, total_length=L, cache_implementation=kind)
                    for kind in ("dynamic", "static")]
        for session in sessions:
            session.prefill(tokens)
            for pos in (2, 3, 4):
                session.decode(tokens, pos)
            session.reorder(index)
        moved = tokens.clone()
        moved[:, :4] = tokens[index, :4]  # the tokens follow their cache rows
        expected, got = (session.decode(moved, 5) for session in sessions)
        reference = EncoderDecoderSession(model, src, src_mask, num_beams=K, use_cache=False).decode(moved, 5)
    assert_close(got, expected, what="static cache after reorder")
    assert_close(got, reference, what="static cache after reorder vs no cache")


def test_dynamic_cache_is_the_default_self_attention():
    cache = EncoderDecoderCache(LAYERS, capacity=8)
    assert isinstance(cache.self_attention, DynamicCache) and not cache.is_static


def test_t5_static_decode_step_traces_as_one_graph_and_matches():
    """fullgraph=True fails on any graph break, error_on_recompile on a step that retraces (beam search too)."""
    import torch._dynamo

    model, (src, src_mask, _) = tiny_t5(), inputs()
    expected = model.generate(src, src_mask, max_new_tokens=8, num_beams=3, eos_token_id=[])
    torch._dynamo.reset()
    with torch._dynamo.config.patch(error_on_recompile=True):
        got = model.generate(src, src_mask, max_new_tokens=8, num_beams=3, eos_token_id=[],
                             cache_implementation="static", compile={"backend": "eager", "fullgraph": True})
    assert torch.equal(got, expected)


@pytest.mark.slow
def test_t5_static_decode_step_compiles_with_inductor_and_matches():
    model, (src, src_mask, _) = tiny_t5(), inputs()
    expected = model.generate(src, src_mask, max_new_tokens=8, eos_token_id=[])
    got = model.generate(src, src_mask, max_new_tokens=8, eos_token_id=[], cache_implementation="static", compile=True)
    assert torch.equal(got, expected)
