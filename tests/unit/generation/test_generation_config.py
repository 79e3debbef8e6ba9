"""GenerationConfig: the one list of generate's options, its checks, precedence, and unknown options."""

from __future__ import annotations

import json

import pytest
import torch

from minitransformer.generation import GenerateOutput, GenerationConfig, UnknownGenerationOption, generate
from minitransformer.generation.config import UNSUPPORTED
from minitransformer.models.gpt2 import GPT2, GPT2Config
from minitransformer.models.t5 import T5Config

V = 40
PROMPT = torch.tensor([[5, 9, 12, 7]])


@pytest.fixture(scope="module")
def gpt2() -> GPT2:
    torch.manual_seed(0)
    return GPT2(GPT2Config(vocab_size=V, n_positions=32, n_embd=32, n_layer=2, n_head=4, initializer_range=0.3,
                           eos_token_id=3)).eval()


def resolve(prompt_length: int = 4, max_positions: int | None = 32, **options) -> GenerationConfig:
    return GenerationConfig(**options).resolve(GPT2Config(vocab_size=V, eos_token_id=3), prompt_length, max_positions)


# --- checks -------------------------------------------------------------------------------------

@pytest.mark.parametrize("options,argument", [
    (dict(), "max_new_tokens"),  # neither max_new_tokens nor max_length
    (dict(max_length=4), "max_length"),  # no room after the prompt of 4
    (dict(max_length=40), "max_new_tokens"),  # past the context of 32
    (dict(max_new_tokens=3, min_new_tokens=-1), "min_new_tokens"),
    (dict(max_new_tokens=3, min_length=1.5), "min_length"),
    (dict(max_new_tokens=3, do_sample=True, min_p=1.5), "min_p"),
    (dict(max_new_tokens=3, do_sample="yes"), "do_sample"),
    (dict(max_new_tokens=3, no_repeat_ngram_size=-1), "no_repeat_ngram_size"),
    (dict(max_new_tokens=3, bad_words_ids=[5]), "bad_words_ids"),
    (dict(max_new_tokens=3, bad_words_ids=[[]]), "bad_words_ids"),
    (dict(max_new_tokens=3, bad_words_ids=[[1, V]]), "bad_words_ids"),
    (dict(max_new_tokens=3, forced_eos_token_id=V), "forced_eos_token_id"),
    (dict(max_new_tokens=3, forced_bos_token_id=-1), "forced_bos_token_id"),
    (dict(max_new_tokens=3, return_dict_in_generate=1), "return_dict_in_generate"),
    (dict(max_new_tokens=3, cache_implementation="paged"), "cache_implementation"),
    (dict(max_new_tokens=3, stop_strings=[""]), "stop_strings"),
    (dict(max_new_tokens=3, do_sample=True, top_k=0), "top_k=None"),  # transformers' "no top-k", said ours
    (dict(max_new_tokens=3, num_beams=2, return_dict_in_generate=True, output_scores=True), "output_scores"),
])
def test_each_check_names_its_argument(options, argument):
    with pytest.raises(ValueError, match=argument):
        resolve(**options)


def test_resolve_fills_the_model_defaults_and_keeps_the_original():
    config = GenerationConfig(max_length=10, min_length=6)
    c = config.resolve(GPT2Config(vocab_size=V, eos_token_id=3), 4, 32)
    assert (c.max_new_tokens, c.max_length, c.min_new_tokens, c.min_length) == (6, 10, 2, 6)
    assert (c.eos_token_id, c.pad_token_id, c.num_beams, c.temperature, c.cache_implementation) == \
        ([3], 3, 1, 1.0, "dynamic")
    assert config.max_new_tokens is None and config.eos_token_id is None  # resolve returns a new config


def test_both_max_lengths_warn_and_max_new_tokens_wins():
    with pytest.warns(UserWarning, match="max_new_tokens"):
        c = resolve(max_new_tokens=3, max_length=20)
    assert (c.max_new_tokens, c.max_length) == (3, 7)


def test_min_new_tokens_wins_over_min_length():
    with pytest.warns(UserWarning, match="min_new_tokens"):
        c = resolve(max_new_tokens=9, min_new_tokens=2, min_length=9)
    assert (c.min_new_tokens, c.min_length) == (2, 6)


def test_t5_counts_the_decoder_start_and_takes_its_id():
    config = T5Config(vocab_size=V, d_model=16, d_kv=4, d_ff=20, num_layers=1, num_heads=2, decoder_start_token_id=0,
                      eos_token_id=1, pad_token_id=0)
    c = GenerationConfig(max_length=6).resolve(config, 1, None)
    assert (c.max_new_tokens, c.decoder_start_token_id, c.eos_token_id) == (5, 0, [1])
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        GenerationConfig(max_new_tokens=3, decoder_start_token_id=V).resolve(config, 1, None)


# --- unknown and unsupported options ------------------------------------------------------------

@pytest.mark.parametrize("name,closest", [("max_new_token", "max_new_tokens"), ("temprature", "temperature"),
                                          ("topk", "top_k"), ("num_beam", "num_beams")])
def test_an_unknown_option_names_the_closest_one(gpt2, name, closest):
    with pytest.raises(UnknownGenerationOption, match=f"did you mean '{closest}'"):
        gpt2.generate(PROMPT, max_new_tokens=3, **{name: 1})
    with pytest.raises(TypeError, match=name):  # a TypeError, as Python's own for a bad keyword
        generate(gpt2, PROMPT, max_new_tokens=3, **{name: 1})


@pytest.mark.parametrize("name,equivalent", [
    ("assistant_model", "speculative_generate"),
    ("num_beam_groups", "num_beams"),
    ("diversity_penalty", "num_beams"),
    ("penalty_alpha", "do_sample=True"),
    ("typical_p", "top_p"),
    ("epsilon_cutoff", "min_p"),
    ("output_attentions", "output_attentions=True"),
    ("logits_processor", "process_logits"),
    ("stopping_criteria", "stop_strings"),
])
def test_an_unsupported_transformers_option_names_our_equivalent(gpt2, name, equivalent):
    with pytest.raises(UnknownGenerationOption, match="not supported") as error:
        gpt2.generate(PROMPT, max_new_tokens=3, **{name: 0.5})
    assert equivalent in str(error.value)


def test_unsupported_names_are_no_options():
    assert not set(UNSUPPORTED) & set(GenerationConfig.options())


# --- precedence ---------------------------------------------------------------------------------

def test_merge_kwargs_over_argument_over_model_over_defaults():
    model = GenerationConfig(max_new_tokens=20, do_sample=True, top_p=0.9, temperature=0.6)
    argument = GenerationConfig(max_new_tokens=10, do_sample=False)
    merged = GenerationConfig.merge(model, argument, max_new_tokens=5)
    assert merged.max_new_tokens == 5  # kwargs
    assert merged.do_sample is False  # the argument sets it, even to the default value
    assert (merged.top_p, merged.temperature) == (0.9, 0.6)  # only the model's config sets them
    assert merged.num_beams is None  # nobody: the default, filled in by resolve
    assert GenerationConfig.merge(None, None, top_k=4).top_k == 4


def test_model_generation_config_may_be_absent_none_a_dict_or_ours(gpt2):
    expected = gpt2.generate(PROMPT, max_new_tokens=6, no_repeat_ngram_size=1)
    for default in (None, {"max_new_tokens": 6, "no_repeat_ngram_size": 1},
                    GenerationConfig(max_new_tokens=6, no_repeat_ngram_size=1)):
        gpt2.generation_config = default
        try:
            if default is None:
                assert torch.equal(gpt2.generate(PROMPT, max_new_tokens=6, no_repeat_ngram_size=1), expected)
            else:
                assert torch.equal(gpt2.generate(PROMPT), expected)
                assert gpt2.generate(PROMPT, max_new_tokens=2).shape == (1, 6)  # kwargs win
        finally:
            del gpt2.generation_config


def test_return_dict_holds_one_score_per_new_token(gpt2):
    out = generate(gpt2, PROMPT, max_new_tokens=5, eos_token_id=[], return_dict_in_generate=True,
                   output_scores=True, output_logits=True)
    assert isinstance(out, GenerateOutput) and out.sequences.shape == (1, 9)
    assert len(out.scores) == len(out.logits) == 5 and out.scores[0].shape == (1, V)
    assert torch.equal(torch.stack(out.scores).argmax(-1)[:, 0], out.sequences[0, 4:])
    assert generate(gpt2, PROMPT, max_new_tokens=2, return_dict_in_generate=True).scores is None


def test_min_new_tokens_bans_eos_then_lets_it_through(gpt2):
    free = gpt2.generate(PROMPT, max_new_tokens=8, eos_token_id=[])
    eos = int(free[0, 5])  # the second new token
    assert gpt2.generate(PROMPT, max_new_tokens=8, eos_token_id=eos).shape[1] == 6
    late = gpt2.generate(PROMPT, max_new_tokens=8, eos_token_id=eos, min_new_tokens=4)
    assert eos not in late[0, 4:8].tolist()


# --- reading and writing ------------------------------------------------------------------------

def test_from_dict_keeps_unknown_keys_and_to_dict_round_trips():
    saved = {"max_length": 64, "do_sample": True, "temperature": 0.6, "top_p": 0.9, "eos_token_id": [1, 2],
             "bos_token_id": 1, "transformers_version": "5.24.0", "_from_model_config": True}
    config = GenerationConfig.from_dict(json.loads(json.dumps(saved)))
    assert (config.max_length, config.do_sample, config.temperature, config.eos_token_id) == (64, True, 0.6, [1, 2])
    assert config.extra == {"bos_token_id": 1, "transformers_version": "5.24.0", "_from_model_config": True}
    d = config.to_dict()
    assert {k: v for k, v in d.items() if v is not None} == saved
    assert GenerationConfig.from_dict(d) == config
    assert GenerationConfig.from_dict(json.loads(json.dumps(d))) == config


def test_every_field_is_an_option_with_a_default():
    import dataclasses

    fields = [f for f in dataclasses.fields(GenerationConfig) if f.name != "extra"]
    assert [f.name for f in fields] == GenerationConfig.options()
    assert all(f.default is None and "default" in f.metadata for f in fields)
