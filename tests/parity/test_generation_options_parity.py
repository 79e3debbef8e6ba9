"""The generate options people bring from transformers, against transformers' own generate.

Tiny random GPT-2, LLaMA and T5 (seeded weights, fp32, eager attention). Greedy and beam search
must be token-identical; with ``output_scores`` the processed scores of every step must equal
transformers' (same -inf positions, the rest within 1e-5); sampling with the global RNG seeded alike
must draw the same tokens from the same processed distribution.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import minitransformer  # noqa: E402
from minitransformer.generation import GenerateOutput, GenerationConfig, generate  # noqa: E402
from minitransformer.testing import assert_close, seed_weights  # noqa: E402

pytestmark = pytest.mark.parity

V = 99
NEW = 10


def hf_config(family: str):
    if family == "gpt2":
        return transformers.GPT2Config(vocab_size=V, n_positions=48, n_embd=32, n_layer=2, n_head=4,
                                       bos_token_id=1, eos_token_id=2)
    if family == "llama":
        return transformers.LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=48,
                                        bos_token_id=1, eos_token_id=2)
    return transformers.T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=2,
                                 num_heads=4, relative_attention_num_buckets=8, relative_attention_max_distance=12,
                                 decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, initializer_factor=3.0)


HF_CLASS = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "t5": "T5ForConditionalGeneration"}


def load_pair(family: str, directory):
    model = getattr(transformers, HF_CLASS[family])(hf_config(family))
    seed_weights(model, seed={"gpt2": 0, "llama": 1, "t5": 2}[family])  # not transformers' own init
    model.save_pretrained(directory)
    hf = getattr(transformers, HF_CLASS[family]).from_pretrained(directory, attn_implementation="eager").eval()
    return family, hf, minitransformer.from_pretrained(directory)


@pytest.fixture(scope="module", params=["gpt2", "llama", "t5"])
def pair(request, tmp_path_factory):
    """(family, transformers model, our model loaded from its save_pretrained)."""
    return load_pair(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return load_pair("llama", tmp_path_factory.mktemp("llama_only"))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Three prompts, two of them left-padded."""
    ids = torch.randint(3, V, (3, 7), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :1] = 0
    return ids.masked_fill(mask == 0, 0), mask


def new_tokens(family: str, out: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return out[:, 1:] if family == "t5" else out[:, ids.shape[1]:]


def same(ours, hf, ids, mask, **kw):
    """Greedy (unless kw says otherwise) outputs of both, checked token-identical; returns transformers'."""
    expected = hf.generate(ids, attention_mask=mask, **({"do_sample": False} | kw))
    got = ours.generate(ids, attention_mask=mask, **kw)
    assert torch.equal(got, expected), f"ours\n{got}\ntransformers\n{expected}"
    return expected


def assert_scores_equal(ours: tuple, theirs: tuple, what: str) -> None:
    assert len(ours) == len(theirs), f"{what}: {len(ours)} steps, transformers {len(theirs)}"
    for step, (a, b) in enumerate(zip(ours, theirs)):
        assert torch.equal(torch.isinf(a), torch.isinf(b)), f"{what}[{step}]: the -inf positions differ"
        finite = ~torch.isinf(b)
        assert_close(a[finite], b[finite], what=f"{what}[{step}]")


# --- length --------------------------------------------------------------------------------------

def test_max_length_counts_the_prompt(pair):
    family, hf, ours = pair
    ids, mask = batch()
    total = 13 if family != "t5" else 8  # T5: decoder tokens, the start token included
    out = same(ours, hf, ids, mask, max_length=total, eos_token_id=[], pad_token_id=0)
    assert out.shape[1] == total


def test_max_new_tokens_wins_over_max_length_with_a_warning(pair):
    family, hf, ours = pair
    ids, mask = batch()
    kw = dict(max_new_tokens=6, max_length=9, eos_token_id=[], pad_token_id=0)
    expected = hf.generate(ids, attention_mask=mask, do_sample=False, **kw)
    with pytest.warns(UserWarning, match="max_new_tokens"):
        got = ours.generate(ids, attention_mask=mask, **kw)
    assert torch.equal(got, expected)
    assert new_tokens(family, got, ids).shape[1] == 6


def eos_at_step(hf, ids, mask, step: int) -> int:
    """A token greedy decoding produces at ``step`` in row 0: as EOS it would end that row there."""
    free = hf.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False, eos_token_id=[V - 1],
                       pad_token_id=0)
    return int(new_tokens("t5" if hf.config.is_encoder_decoder else "", free, ids)[0, step])


@pytest.mark.parametrize("option", ["min_new_tokens", "min_length"])
def test_min_length_suppresses_eos_until_then(pair, option):
    family, hf, ours = pair
    ids, mask = batch()
    eos = eos_at_step(hf, ids, mask, 1)
    value = 6 if option == "min_new_tokens" else 6 + (1 if family == "t5" else ids.shape[1])
    kw = dict(max_new_tokens=NEW, eos_token_id=eos, pad_token_id=0)
    early = same(ours, hf, ids, mask, **kw)
    late = same(ours, hf, ids, mask, **kw, **{option: value})
    assert not torch.equal(early, late)
    assert eos not in new_tokens(family, late, ids)[0, :6].tolist()


# --- logits processing ---------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram_size(pair, n):
    family, hf, ours = pair
    ids, mask = batch()
    same(ours, hf, ids, mask, max_new_tokens=NEW, no_repeat_ngram_size=n, eos_token_id=[], pad_token_id=0)


def test_no_repeat_ngram_size_and_min_new_tokens_in_beam_search(pair):
    family, hf, ours = pair
    ids, mask = batch()
    same(ours, hf, ids, mask, max_new_tokens=8, num_beams=3, no_repeat_ngram_size=2, eos_token_id=[V - 1],
         pad_token_id=0)
    eos = eos_at_step(hf, ids, mask, 1)
    same(ours, hf, ids, mask, max_new_tokens=8, num_beams=3, min_new_tokens=4, eos_token_id=eos, pad_token_id=0)


def test_bad_words_ids_single_and_multi_token(pair):
    family, hf, ours = pair
    ids, mask = batch()
    free = same(ours, hf, ids, mask, max_new_tokens=NEW, eos_token_id=[], pad_token_id=0)
    generated = new_tokens(family, free, ids)[0].tolist()
    bad = [[generated[0]], generated[2:4], [5, 6, 7]]  # a one-token word, a word it produced, one it never does
    out = same(ours, hf, ids, mask, max_new_tokens=NEW, bad_words_ids=bad, eos_token_id=[], pad_token_id=0)
    assert generated[0] not in new_tokens(family, out, ids).tolist()[0]


def test_forced_bos_and_eos(pair):
    family, hf, ours = pair
    ids, mask = batch()
    kw = dict(max_new_tokens=6, eos_token_id=[V - 1], pad_token_id=0, forced_eos_token_id=V - 1)
    if family == "t5":  # forced BOS acts when the sequence is one token long: T5's decoder start
        kw["forced_bos_token_id"] = 7
    out = same(ours, hf, ids, mask, **kw)
    assert (new_tokens(family, out, ids) == V - 1).any(dim=1).all()  # every row ends with it, at the latest


# --- scores -------------------------------------------------------------------------------------

def test_output_scores_and_logits_greedy(pair):
    family, hf, ours = pair
    ids, mask = batch()
    eos = eos_at_step(hf, ids, mask, 3)  # row 0 finishes early: padding after it, scores all the same
    kw = dict(max_new_tokens=NEW, eos_token_id=eos, pad_token_id=0, repetition_penalty=1.3, no_repeat_ngram_size=2,
              min_new_tokens=2, return_dict_in_generate=True, output_scores=True, output_logits=True)
    expected = hf.generate(ids, attention_mask=mask, do_sample=False, **kw)
    got = ours.generate(ids, attention_mask=mask, **kw)
    assert isinstance(got, GenerateOutput)
    assert torch.equal(got.sequences, expected.sequences)
    assert_scores_equal(got.scores, expected.scores, "scores")
    assert_scores_equal(got.logits, expected.logits, "logits")


@pytest.mark.parametrize("settings", [
    dict(min_p=0.1),
    dict(temperature=0.7, top_k=20, top_p=0.9, min_p=0.05),
    dict(temperature=1.3, min_p=0.2, repetition_penalty=1.2, no_repeat_ngram_size=2),
])
def test_sampling_scores_and_draws_equal_transformers(pair, settings):
    """The global RNG seeded alike: the same processed scores give the same draws."""
    family, hf, ours = pair
    ids, mask = batch()
    kw = dict(max_new_tokens=8, do_sample=True, eos_token_id=[], pad_token_id=0, return_dict_in_generate=True,
              output_scores=True) | settings
    torch.manual_seed(3)
    expected = hf.generate(ids, attention_mask=mask, **({"top_k": 0} | kw))  # top_k=0: no top-k (theirs is 50)
    torch.manual_seed(3)
    got = ours.generate(ids, attention_mask=mask, **kw)
    assert torch.equal(got.sequences, expected.sequences)
    assert_scores_equal(got.scores, expected.scores, "scores")


def test_beam_search_return_dict(llama):
    family, hf, ours = llama
    ids, mask = batch()
    kw = dict(max_new_tokens=6, num_beams=3, eos_token_id=[V - 1], pad_token_id=0, return_dict_in_generate=True)
    expected = hf.generate(ids, attention_mask=mask, do_sample=False, **kw)
    assert torch.equal(ours.generate(ids, attention_mask=mask, **kw).sequences, expected.sequences)
    with pytest.raises(ValueError, match="output_scores"):
        ours.generate(ids, attention_mask=mask, output_scores=True, **kw)


# --- configs ------------------------------------------------------------------------------------

def test_generation_config_argument_ours_or_transformers(pair):
    family, hf, ours = pair
    ids, mask = batch()
    settings = dict(max_new_tokens=7, no_repeat_ngram_size=2, eos_token_id=[V - 1], pad_token_id=0)
    expected = hf.generate(ids, attention_mask=mask, generation_config=transformers.GenerationConfig(**settings))
    assert torch.equal(ours.generate(ids, mask, generation_config=GenerationConfig(**settings)), expected)
    assert torch.equal(ours.generate(ids, mask, generation_config=transformers.GenerationConfig(**settings)), expected)
    assert torch.equal(generate(ours, ids, mask, generation_config=settings), expected)
    # kwargs win over the config, as in transformers
    expected = hf.generate(ids, attention_mask=mask, generation_config=transformers.GenerationConfig(**settings),
                           max_new_tokens=4)
    assert torch.equal(ours.generate(ids, mask, generation_config=GenerationConfig(**settings), max_new_tokens=4),
                       expected)


def test_model_generation_config_is_the_default(llama):
    family, hf, ours = llama
    ids, mask = batch()
    settings = dict(max_new_tokens=5, no_repeat_ngram_size=1, eos_token_id=[V - 1], pad_token_id=0)
    saved = hf.generation_config
    hf.generation_config = transformers.GenerationConfig(**settings)
    try:
        expected = hf.generate(ids, attention_mask=mask)
        expected_override = hf.generate(ids, attention_mask=mask, generation_config=transformers.GenerationConfig(
            max_new_tokens=3))
    finally:
        hf.generation_config = saved
    ours.generation_config = GenerationConfig(**settings)
    try:
        assert torch.equal(ours.generate(ids, mask), expected)
        # the argument's config sets max_new_tokens only: no_repeat_ngram_size still comes from the model's
        assert torch.equal(ours.generate(ids, mask, generation_config=GenerationConfig(max_new_tokens=3)),
                           expected_override)
    finally:
        del ours.generation_config
