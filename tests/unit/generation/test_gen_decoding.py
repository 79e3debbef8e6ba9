"""generate() without transformers: bad input, EOS and padding, stop strings, streaming, speculative
decoding, the static cache under torch.compile, and the fused activations the fast path uses."""

from __future__ import annotations

import pytest
import torch

from minitransformer.generation import (
    TextIteratorStreamer,
    TextStreamer,
    speculative_generate,
    stream_text,
)
from minitransformer.layers.mlp import ACTIVATIONS, FUSED_ACTIVATIONS
from minitransformer.models.gpt2 import GPT2, GPT2Config
from minitransformer.models.llama import Llama, LlamaConfig
from minitransformer.models.t5 import T5, T5Config

V = 40


def gpt2(seed: int = 0, n_layer: int = 2) -> GPT2:
    torch.manual_seed(seed)
    return GPT2(GPT2Config(vocab_size=V, n_positions=32, n_embd=32, n_layer=n_layer, n_head=4,
                           initializer_range=0.3, eos_token_id=3)).eval()


def llama(seed: int = 0, layers: int = 2) -> Llama:
    torch.manual_seed(seed)
    return Llama(LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=40, num_hidden_layers=layers,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=48,
                             initializer_range=0.3)).eval()


class Letters:
    """A toy tokenizer: id i is the letter chr(97 + i % 26)."""

    def decode(self, ids, **_) -> str:
        return "".join(chr(97 + i % 26) for i in ids)


PROMPT = torch.tensor([[5, 9, 12, 7]])


@pytest.mark.parametrize("kwargs,argument", [
    (dict(max_new_tokens=29), "max_new_tokens"),  # 4 + 29 > n_positions = 32
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(max_new_tokens=5, do_sample=True, top_p=0.0), "top_p"),
    (dict(max_new_tokens=5, do_sample=True, top_p=1.5), "top_p"),
    (dict(max_new_tokens=5, do_sample=True, temperature=0.0), "temperature"),
    (dict(max_new_tokens=5, do_sample=True, temperature=-1.0), "temperature"),
    (dict(max_new_tokens=5, do_sample=True, top_k=0), "top_k"),
    (dict(max_new_tokens=5, num_beams=0), "num_beams"),
    (dict(max_new_tokens=5, eos_token_id=V), "eos_token_id"),
    (dict(max_new_tokens=5, eos_token_id=[1, -2]), "eos_token_id"),
    (dict(max_new_tokens=5, pad_token_id=V + 3), "pad_token_id"),
    (dict(max_new_tokens=5, repetition_penalty=0.0), "repetition_penalty"),
    (dict(max_new_tokens=5, compile=True, cache_implementation="dynamic"), "compile"),
    (dict(max_new_tokens=5, early_stopping="sometimes"), "early_stopping"),
    (dict(max_new_tokens=5, stop_strings="x"), "tokenizer"),
])
def test_bad_arguments_raise_errors_naming_them(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        gpt2().generate(PROMPT, **kwargs)


def test_max_new_tokens_up_to_the_context_is_fine():
    assert gpt2().generate(PROMPT, max_new_tokens=28, eos_token_id=[]).shape == (1, 32)


def test_temperature_zero_is_fine_for_greedy():
    model = gpt2()
    assert torch.equal(model.generate(PROMPT, max_new_tokens=5, temperature=0.0), model.generate(PROMPT, max_new_tokens=5))


def test_finished_rows_get_padding_and_generation_stops_when_all_finish():
    model = gpt2()
    ids = torch.tensor([[5, 9, 12, 7], [1, 2, 3, 4]])
    free = model.generate(ids, max_new_tokens=12, eos_token_id=[])
    eos = int(free[0, 6])  # row 0's third new token
    out = model.generate(ids, max_new_tokens=12, eos_token_id=eos, pad_token_id=0)
    first = (out[0, 4:] == eos).nonzero()[0, 0] + 4
    assert torch.all(out[0, first + 1:] == 0), "after its EOS a row holds pad_token_id"
    assert torch.equal(out[0, :first + 1], free[0, :first + 1])
    single = model.generate(ids[:1], max_new_tokens=12, eos_token_id=eos)
    assert single.shape[1] == first + 1, "one row: generation ends at its EOS"


def test_stop_strings_stop_a_row_and_the_stop_text_is_kept():
    model, tok = gpt2(), Letters()
    free = model.generate(PROMPT, max_new_tokens=15, eos_token_id=[])
    text = tok.decode(free[0, 4:].tolist())
    stop = text[5:7]  # two letters generated at new positions 5-6 (or earlier, if they appeared before)
    out = model.generate(PROMPT, max_new_tokens=15, eos_token_id=[], pad_token_id=0, stop_strings=[stop], tokenizer=tok)
    generated = tok.decode(out[0, 4:].tolist())
    assert generated.endswith(stop) and stop not in generated[:-1]
    assert torch.equal(out[0], free[0, :out.shape[1]])


def test_text_streamers_emit_exactly_the_generated_text():
    model, tok = gpt2(), Letters()
    pieces = []

    class Collect(TextStreamer):
        def on_text(self, text, stream_end=False):
            pieces.append(text)

    out = model.generate(PROMPT, max_new_tokens=10, eos_token_id=[], streamer=Collect(tok))
    expected = tok.decode(out[0, 4:].tolist())
    assert "".join(pieces) == expected and len(pieces) >= 10
    assert "".join(stream_text(model, tok, PROMPT, max_new_tokens=10, eos_token_id=[])) == expected
    streamer = TextIteratorStreamer(tok)
    with pytest.raises(ValueError, match="batch size 1"):
        model.generate(torch.cat([PROMPT, PROMPT]), max_new_tokens=3, streamer=streamer)


def test_stream_text_raises_the_generation_error():
    with pytest.raises(ValueError, match="top_p"):
        list(stream_text(gpt2(), Letters(), PROMPT, max_new_tokens=3, do_sample=True, top_p=2.0))


@pytest.mark.parametrize("draft_kind", ["same", "shallow", "unrelated"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_speculative_greedy_equals_target_alone(draft_kind, k):
    target = llama(0, layers=3)
    if draft_kind == "same":
        draft = target
    elif draft_kind == "shallow":  # the target's first layer, norm and head: a plausible cheap draft
        draft = llama(0, layers=1)
        draft.load_state_dict({n: p for n, p in target.state_dict().items() if n in draft.state_dict()})
    else:
        draft = llama(7, layers=1)
    expected = target.generate(PROMPT, max_new_tokens=20, eos_token_id=[])
    out = speculative_generate(target, draft, PROMPT, max_new_tokens=20, num_draft_tokens=k, eos_token_id=[])
    assert torch.equal(out.sequences, expected)
    assert 0.0 <= out.acceptance_rate <= 1.0
    if draft_kind == "same":
        assert out.acceptance_rate == 1.0 and out.target_forwards == -(-20 // (k + 1))


def test_speculative_stops_at_eos_like_generate():
    target, draft = llama(0), llama(3, layers=1)
    free = target.generate(PROMPT, max_new_tokens=12, eos_token_id=[])
    eos = int(free[0, 9])
    expected = target.generate(PROMPT, max_new_tokens=12, eos_token_id=eos)
    assert torch.equal(speculative_generate(target, draft, PROMPT, max_new_tokens=12, eos_token_id=eos).sequences,
                       expected)


@pytest.mark.parametrize("model_fn", [gpt2, llama], ids=["gpt2", "llama"])
def test_static_decode_step_traces_as_one_graph_and_matches(model_fn):
    """torch.compile with fullgraph=True fails on any graph break; recompiling at a later step fails too."""
    import torch._dynamo

    model = model_fn()
    ids = torch.tensor([[5, 9, 12, 7], [0, 2, 8, 30]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
    expected = model.generate(ids, mask, max_new_tokens=10, eos_token_id=[])
    torch._dynamo.reset()
    with torch._dynamo.config.patch(error_on_recompile=True):
        got = model.generate(ids, mask, max_new_tokens=10, eos_token_id=[], cache_implementation="static",
                             compile={"backend": "eager", "fullgraph": True})
    assert torch.equal(got, expected)


@pytest.mark.slow
def test_static_decode_step_compiles_with_inductor_and_matches():
    model = llama()
    ids = torch.tensor([[5, 9, 12, 7]])
    expected = model.generate(ids, max_new_tokens=8, eos_token_id=[])
    got = model.generate(ids, max_new_tokens=8, eos_token_id=[], cache_implementation="static", compile=True)
    assert torch.equal(got, expected)


def test_t5_generate_starts_with_decoder_start_and_static_cache_agrees():
    torch.manual_seed(0)
    model = T5(T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=40, num_layers=2, num_heads=4,
                        decoder_start_token_id=0)).eval()
    out = model.generate(PROMPT, max_new_tokens=6, eos_token_id=[])
    assert out.shape == (1, 7) and int(out[0, 0]) == 0
    assert torch.equal(model.generate(PROMPT, max_new_tokens=6, eos_token_id=[], cache_implementation="static"), out)
    with pytest.raises(ValueError, match="compile"):  # compile needs the static cache, for T5 as for the others
        model.generate(PROMPT, max_new_tokens=6, compile=True, cache_implementation="dynamic")


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_fused_activations_equal_the_written_out_ones(name):
    x = torch.linspace(-8, 8, 1001)
    torch.testing.assert_close(FUSED_ACTIVATIONS[name](x), ACTIVATIONS[name](x), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("kwargs,arguments", [
    (dict(do_sample=True, num_return_sequences=0), ["num_return_sequences"]),
    (dict(do_sample=True, num_return_sequences=2.0), ["num_return_sequences"]),
    (dict(do_sample=True, num_return_sequences="2"), ["num_return_sequences"]),
    (dict(num_return_sequences=2), ["num_return_sequences", "do_sample"]),  # greedy has one answer, as transformers says
    (dict(num_beams=3, num_return_sequences=4), ["num_return_sequences=4", "num_beams=3"]),
    (dict(num_beams=2, do_sample=True, num_return_sequences=3), ["num_return_sequences=3", "num_beams=2"]),
])
def test_bad_num_return_sequences_raise_errors_naming_them(kwargs, arguments):
    with pytest.raises(ValueError) as error:
        gpt2().generate(PROMPT, max_new_tokens=5, **kwargs)
    for argument in arguments:
        assert argument in str(error.value)


def test_streamer_needs_num_return_sequences_1():
    with pytest.raises(ValueError, match="num_return_sequences"):
        gpt2().generate(PROMPT, max_new_tokens=3, do_sample=True, num_return_sequences=2,
                        streamer=TextStreamer(Letters()))


def test_beam_num_return_sequences_are_the_best_hypotheses_grouped_per_input():
    model = gpt2()
    ids = torch.tensor([[5, 9, 12, 7], [1, 2, 3, 4]])
    kw = dict(max_new_tokens=8, num_beams=3, eos_token_id=[])
    best = model.generate(ids, **kw)  # (2, 12)
    out = model.generate(ids, num_return_sequences=3, **kw)  # (6, 12)
    assert out.shape == (6, 12)
    assert torch.equal(out[::3], best), "row b * R is input b's best hypothesis"
    assert torch.equal(out[:, :4], ids.repeat_interleave(3, dim=0))
    assert len({tuple(row) for row in out[:3].tolist()}) == 3, "an input's hypotheses differ"


@pytest.mark.parametrize("family", ["gpt2", "t5"])
def test_sampled_num_return_sequences_equal_the_inputs_repeated(family):
    """R samples of every input are the rows of the input repeated R times (repeat_interleave), drawn alike."""
    if family == "t5":
        torch.manual_seed(0)
        model = T5(T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=40, num_layers=2, num_heads=4,
                            decoder_start_token_id=0)).eval()
    else:
        model = gpt2()
    ids = torch.tensor([[5, 9, 12, 7], [0, 0, 3, 4]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    kw = dict(max_new_tokens=6, do_sample=True, eos_token_id=[])
    out = model.generate(ids, mask, num_return_sequences=3, generator=torch.Generator().manual_seed(4), **kw)
    repeated = model.generate(ids.repeat_interleave(3, dim=0), mask.repeat_interleave(3, dim=0),
                              generator=torch.Generator().manual_seed(4), **kw)
    assert out.shape[0] == 6 and torch.equal(out, repeated)
