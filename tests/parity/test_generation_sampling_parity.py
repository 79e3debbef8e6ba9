"""Sampling against transformers: the logits processors on the same logits, top-k = 1 against greedy,
and a chi-square test that the first sampled token follows softmax of the processed logits.
"""

from __future__ import annotations

import math

import pytest
import torch

transformers = pytest.importorskip("transformers")

import minitransformer  # noqa: E402
from minitransformer.generation.logits import (  # noqa: E402
    apply_repetition_penalty,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    process_logits,
)
from minitransformer.testing import seed_weights  # noqa: E402

pytestmark = pytest.mark.parity

gl = transformers.generation.logits_process
V = 99


def random_logits(seed: int, B: int = 4, vocab: int = 50) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, vocab, generator=g) * 3
    logits[0, :5] = logits[0, 5]  # ties, which top-k keeps together
    return logits


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("top_k", [1, 3, 10, 49, 50, 80])
def test_top_k_equals_transformers(seed, top_k):
    logits = random_logits(seed)
    ids = torch.zeros(4, 1, dtype=torch.long)
    assert torch.equal(apply_top_k(logits, top_k), gl.TopKLogitsWarper(top_k)(ids, logits.clone()))
    assert torch.equal(apply_top_k(logits, top_k, min_tokens_to_keep=3),
                       gl.TopKLogitsWarper(top_k, min_tokens_to_keep=3)(ids, logits.clone()))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("top_p", [0.01, 0.3, 0.75, 0.9, 0.999, 1.0])
def test_top_p_equals_transformers(seed, top_p):
    logits = random_logits(seed)
    ids = torch.zeros(4, 1, dtype=torch.long)
    expected = logits if top_p == 1.0 else gl.TopPLogitsWarper(top_p)(ids, logits.clone())
    assert torch.equal(apply_top_p(logits, top_p), expected)
    if top_p < 1.0:
        assert torch.equal(apply_top_p(logits, top_p, min_tokens_to_keep=2),
                           gl.TopPLogitsWarper(top_p, min_tokens_to_keep=2)(ids, logits.clone()))


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
def test_temperature_equals_transformers(temperature):
    logits = random_logits(0)
    ids = torch.zeros(4, 1, dtype=torch.long)
    assert torch.equal(apply_temperature(logits, temperature), gl.TemperatureLogitsWarper(temperature)(ids, logits))


@pytest.mark.parametrize("penalty", [0.5, 1.3, 2.0])
def test_repetition_penalty_equals_transformers(penalty):
    logits = random_logits(1)
    g = torch.Generator().manual_seed(3)
    previous = torch.randint(0, 50, (4, 12), generator=g)  # repeats inside a row too
    expected = gl.RepetitionPenaltyLogitsProcessor(penalty)(previous, logits.clone())
    assert torch.equal(apply_repetition_penalty(logits, previous, penalty), expected)
    # Left padding is not a repetition: transformers skips it with prompt_ignore_length.
    pads = torch.tensor([0, 3, 5, 11])
    ignore = torch.arange(12)[None] < pads[:, None]  # (B, T)
    expected = gl.RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=pads)(previous, logits.clone())
    assert torch.equal(apply_repetition_penalty(logits, previous, penalty, ignore), expected)


def test_processing_chain_equals_transformers():
    logits = random_logits(2)
    previous = torch.randint(0, 50, (4, 6), generator=torch.Generator().manual_seed(4))
    chain = gl.LogitsProcessorList([gl.RepetitionPenaltyLogitsProcessor(1.2), gl.TemperatureLogitsWarper(0.7),
                                    gl.TopKLogitsWarper(20), gl.TopPLogitsWarper(0.8)])
    expected = chain(previous, logits.clone())
    got = process_logits(logits, previous, do_sample=True, temperature=0.7, top_k=20, top_p=0.8,
                         repetition_penalty=1.2)
    assert torch.equal(got, expected)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    directory = tmp_path_factory.mktemp("llama")
    config = transformers.LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=48,
                                      bos_token_id=1, eos_token_id=2)
    seed_weights(transformers.LlamaForCausalLM(config), seed=0, std=0.2).save_pretrained(directory)  # our weights
    hf = transformers.LlamaForCausalLM.from_pretrained(directory, attn_implementation="eager").eval()
    return hf, minitransformer.from_pretrained(directory)


def test_top_k_1_sampling_equals_greedy(tiny):
    hf, ours = tiny
    ids = torch.randint(3, V, (2, 5), generator=torch.Generator().manual_seed(1))
    greedy = hf.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=2, pad_token_id=0)
    for seed in range(3):
        sampled = ours.generate(ids, max_new_tokens=12, do_sample=True, top_k=1, temperature=0.8, eos_token_id=2,
                                pad_token_id=0, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(sampled, greedy)


def test_sampling_same_draws_as_transformers(tiny):
    """With the global RNG seeded alike, the same multinomial draws give the same tokens."""
    hf, ours = tiny
    ids = torch.randint(3, V, (2, 5), generator=torch.Generator().manual_seed(2))
    kw = dict(max_new_tokens=12, do_sample=True, temperature=0.9, top_p=0.95, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(11)
    expected = hf.generate(ids, top_k=0, **kw)  # top_k=0: transformers' default would be 50
    torch.manual_seed(11)
    assert torch.equal(ours.generate(ids, **kw), expected)


def chi2_critical(df: int, p: float = 0.999) -> float:
    """Upper p-quantile of the chi-square distribution (Wilson-Hilferty approximation)."""
    z = {0.999: 3.0902, 0.99: 2.3263}[p]
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


@pytest.mark.parametrize("settings", [dict(), dict(temperature=0.6, top_k=20), dict(temperature=1.5, top_p=0.8)])
def test_first_sampled_token_follows_processed_distribution(tiny, settings):
    """Chi-square goodness of fit: 4000 draws (40 seeds x 100 rows) against softmax(processed logits).

    A correct sampler fails this test with probability 0.001 per case; the seeds are fixed.
    """
    hf, ours = tiny
    prompt = torch.tensor([[5, 17, 42, 8]])
    with torch.no_grad():
        logits = hf(prompt).logits[:, -1]  # (1, V)
    processors = [gl.TemperatureLogitsWarper(settings.get("temperature", 1.0))]
    if "top_k" in settings:
        processors.append(gl.TopKLogitsWarper(settings["top_k"]))
    if "top_p" in settings:
        processors.append(gl.TopPLogitsWarper(settings["top_p"]))
    expected_p = gl.LogitsProcessorList(processors)(prompt, logits).softmax(-1)[0].double()  # (V,)

    counts = torch.zeros(V, dtype=torch.float64)
    for seed in range(40):
        out = ours.generate(prompt.expand(100, -1), max_new_tokens=1, do_sample=True, eos_token_id=[],
                            generator=torch.Generator().manual_seed(seed), **settings)
        counts += torch.bincount(out[:, -1], minlength=V).double()
    n = counts.sum()
    assert counts[expected_p == 0].sum() == 0, "a filtered-out token was sampled"
    expected = expected_p * n
    big = expected >= 5  # pool the rare tokens into one bin, as the test requires
    observed_bins = torch.cat([counts[big], counts[~big & (expected_p > 0)].sum()[None]])
    expected_bins = torch.cat([expected[big], expected[~big & (expected_p > 0)].sum()[None]])
    keep = expected_bins > 0
    statistic = float(((observed_bins[keep] - expected_bins[keep]) ** 2 / expected_bins[keep]).sum())
    df = int(keep.sum()) - 1
    assert statistic < chi2_critical(df), f"chi2={statistic:.1f} with {df} degrees of freedom"


def test_seeded_sampling_is_reproducible(tiny):
    _, ours = tiny
    ids = torch.randint(3, V, (3, 5), generator=torch.Generator().manual_seed(3))
    kw = dict(max_new_tokens=15, do_sample=True, temperature=1.3, eos_token_id=[])
    a = ours.generate(ids, generator=torch.Generator().manual_seed(7), **kw)
    b = ours.generate(ids, generator=torch.Generator().manual_seed(7), **kw)
    c = ours.generate(ids, generator=torch.Generator().manual_seed(8), **kw)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_beam_sampling_same_draws_as_transformers(tiny):
    """Beam search with do_sample draws its 2K candidates without replacement, as transformers does.

    The reference changed in transformers 5.24: it now sorts the drawn candidates best first before
    choosing which continue and which may finish (5.23 kept the order of the draws). The order decides
    the beams' order, and so the next step's draw: one token differed until we sorted them too."""
    hf, ours = tiny
    ids = torch.randint(3, V, (2, 5), generator=torch.Generator().manual_seed(4))
    kw = dict(max_new_tokens=8, do_sample=True, num_beams=3, temperature=0.8, top_p=0.9, eos_token_id=2,
              pad_token_id=0, repetition_penalty=1.3)
    torch.manual_seed(5)
    expected = hf.generate(ids, top_k=0, **kw)
    torch.manual_seed(5)
    assert torch.equal(ours.generate(ids, **kw), expected)


def test_num_return_sequences_sampling_same_draws_as_transformers(tiny):
    """num_return_sequences=3 repeats every input 3 times (rows grouped per input) and samples the rows
    independently: with the global RNG seeded alike, the same draws as transformers, left padding included."""
    hf, ours = tiny
    ids = torch.randint(3, V, (2, 5), generator=torch.Generator().manual_seed(6))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # row 1 is left-padded
    ids = ids.masked_fill(mask == 0, 0)
    kw = dict(attention_mask=mask, max_new_tokens=12, do_sample=True, temperature=1.2, num_return_sequences=3,
              eos_token_id=2, pad_token_id=0)
    torch.manual_seed(13)
    expected = hf.generate(ids, top_k=0, **kw)  # (2 * 3, 5 + n)
    torch.manual_seed(13)
    got = ours.generate(ids, **kw)
    assert got.shape[0] == 6 and not torch.equal(got[0], got[1]), "the copies of an input are sampled independently"
    assert torch.equal(got, expected)


def test_beam_sampling_num_return_sequences_same_draws_as_transformers(tiny):
    """As above with 2 of the 3 beams returned: the draws sorted best first, as since transformers 5.24."""
    hf, ours = tiny
    ids = torch.randint(3, V, (2, 5), generator=torch.Generator().manual_seed(7))
    kw = dict(max_new_tokens=8, do_sample=True, num_beams=3, num_return_sequences=2, temperature=0.8, eos_token_id=2,
              pad_token_id=0)
    torch.manual_seed(9)
    expected = hf.generate(ids, top_k=0, **kw)
    torch.manual_seed(9)
    assert torch.equal(ours.generate(ids, **kw), expected)
