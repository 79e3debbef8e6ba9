"""Forward parity on every input: each family, called with the same arguments as its transformers class,
gives the same logits (and loss), fp32, for every kind of input a caller passes.

One parametrized test covers family x case. The tiny models are built by transformers with its own
classes, given seeded weights (``seed_weights``, so that nothing depends on transformers' own init),
saved with ``save_pretrained`` and loaded by both libraries; transformers runs eager attention.

Which positions are compared: every one that transformers defines. A padding query at the start of a
left-padded causal row may attend to no key at all; transformers then adds its most negative float to
every score, the scores all round to that same number and softmax spreads the query over *all* keys,
future ones included: an artifact of the additive mask (another attention backend gives another number),
which no real token reads and which we need not reproduce (our attention gives such a row zero output,
docs/notation.md). Those positions are left out, and each case says where; every other position,
padding included, is compared.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import minitransformer  # noqa: E402
from minitransformer.models.base import positions_from_attention_mask  # noqa: E402
from minitransformer.testing import assert_close, seed_weights  # noqa: E402

pytestmark = pytest.mark.parity

V = 61
B, T = 3, 7
PAD = 0


def hf_model(family: str):
    """A tiny transformers model of ``family``, with seeded weights, in eval mode."""
    if family == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=V, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=1, eos_token_id=2))
    if family == "llama":  # grouped-query attention: 4 query heads share 2 key/value heads
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(
            vocab_size=V, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=32, bos_token_id=1, eos_token_id=2))
    if family == "bert":
        return transformers.BertForMaskedLM(transformers.BertConfig(
            vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=24, type_vocab_size=2, pad_token_id=PAD))
    return transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=V, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
        relative_attention_max_distance=12, decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=1))


@pytest.fixture(scope="module", params=["gpt2", "llama", "bert", "t5"])
def pair(request, tmp_path_factory):
    """(family, our model, transformers' model), both loaded from one checkpoint."""
    family = request.param
    model = hf_model(family)
    seed_weights(model, seed={"gpt2": 0, "llama": 1, "bert": 2, "t5": 3}[family])
    directory = tmp_path_factory.mktemp(family)
    model.save_pretrained(directory)
    hf = type(model).from_pretrained(directory, attn_implementation="eager").eval()
    return family, minitransformer.from_pretrained(directory), hf


def random_ids(*shape: int, seed: int) -> torch.Tensor:
    return torch.randint(3, V, shape, generator=torch.Generator().manual_seed(seed))  # never PAD, BOS or EOS


def padding(side: str, lengths=(7, 4, 2)) -> torch.Tensor:
    """(B, T) 0/1 mask, each row's real tokens on the right (left padding) or on the left."""
    mask = torch.zeros(B, T, dtype=torch.long)
    for b, n in enumerate(lengths):
        if side == "left":
            mask[b, T - n:] = 1
        else:
            mask[b, :n] = 1
    return mask


def padded(side: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    mask = padding(side)
    return random_ids(B, T, seed=seed).masked_fill(mask == 0, PAD), mask


def defined(mask: torch.Tensor, side: str) -> torch.Tensor:
    """(B, T) bool: the positions transformers defines (see the module docstring)."""
    return mask.bool() if side == "left" else torch.ones_like(mask, dtype=torch.bool)


# Each case returns (kwargs for both forwards, bool (B, T) positions to compare). The same kwargs go to
# both libraries; only the cache changes its name (ours: past_key_values; transformers 5.24: cache).

def no_mask(family):
    return dict(input_ids=random_ids(B, T, seed=1)), None


def left_padding(family):
    ids, mask = padded("left", seed=2)
    return dict(input_ids=ids, attention_mask=mask), defined(mask, "left")


def right_padding(family):
    ids, mask = padded("right", seed=3)
    return dict(input_ids=ids, attention_mask=mask), None


def position_ids_from_mask(family):
    """What generate passes: a left-padded batch with positions that count real tokens only."""
    ids, mask = padded("left", seed=4)
    positions = positions_from_attention_mask(mask, T, ids.device)  # (B, T)
    return dict(input_ids=ids, attention_mask=mask, position_ids=positions), defined(mask, "left")


def position_ids_offset(family):
    """No mask, positions that start at 5: a window into a longer text, its first 5 tokens left out."""
    return dict(input_ids=random_ids(B, T, seed=5), position_ids=torch.arange(5, 5 + T)[None].repeat(B, 1)), None


PACKED = torch.tensor([[0, 1, 2, 3, 0, 1, 2], [0, 1, 2, 3, 4, 5, 6], [0, 1, 0, 1, 2, 0, 1]])  # (B, T)


def position_ids_packed(family):
    """No mask, positions that restart, use_cache left to its default: transformers keeps a cache then
    (config.use_cache=True), and with a cache it reads the rows as single sequences."""
    return dict(input_ids=random_ids(B, T, seed=6), position_ids=PACKED), None


def position_ids_packed_no_cache(family):
    """The same with use_cache=False: without a cache transformers reads a restart as the start of another
    packed sequence, which the tokens before it do not see."""
    return dict(input_ids=random_ids(B, T, seed=6), position_ids=PACKED, use_cache=False), None


def token_type_ids_omitted(family):
    ids, mask = padded("right", seed=7)
    return dict(input_ids=ids, attention_mask=mask), None


def token_type_ids_given(family):
    ids, mask = padded("right", seed=8)
    types = (torch.arange(T) >= 3).long()[None].repeat(B, 1)  # sentence A, then sentence B
    return dict(input_ids=ids, attention_mask=mask, token_type_ids=types), None


def labels(family):
    ids, mask = padded("right", seed=9)
    target = ids.masked_fill(mask == 0, -100)
    target[0, 2] = -100  # an ignored real token too
    if family == "bert":  # masked LM: only a few positions are scored
        target = target.masked_fill(torch.rand(B, T, generator=torch.Generator().manual_seed(9)) < 0.5, -100)
        target[:, 0] = ids[:, 0]
    return dict(input_ids=ids, attention_mask=mask, labels=target), None


CASES = {f.__name__: f for f in (
    no_mask, left_padding, right_padding, position_ids_from_mask, position_ids_offset, position_ids_packed,
    position_ids_packed_no_cache, token_type_ids_omitted, token_type_ids_given, labels,
)}
CACHE_CASES = ("cache_no_mask", "cache_left_padding", "cache_position_ids_from_mask")  # see run_cache_case

T5_NO_POSITIONS = "T5ForConditionalGeneration has no position_ids: its positions are the relative position bias"
BERT_NO_CACHE = ("BertModel takes a cache only as a decoder (is_decoder=True); minitransformer's BERT is an "
                 "encoder, and transformers' encoder forward runs without one")
SKIPS = {
    ("llama", "token_type_ids_given"): "LlamaForCausalLM has no token_type_ids parameter (its **kwargs swallows one "
                                       "and ignores it); our Llama raises a TypeError rather than ignore an input",
    ("t5", "token_type_ids_given"): "T5ForConditionalGeneration has no token_type_ids parameter",
    **{("t5", case): T5_NO_POSITIONS for case in (*CASES, *CACHE_CASES) if "position_ids" in case},
    **{("bert", case): BERT_NO_CACHE for case in CACHE_CASES},
}


def t5_inputs(kwargs: dict, seed: int) -> dict:
    """A case's inputs as T5's: the same encoder input and mask, and decoder tokens padded like the encoder's.
    With labels the decoder input is left out: both libraries build it with shift_right(labels)."""
    if "labels" in kwargs:
        return kwargs
    out = dict(kwargs)
    decoder_input_ids = random_ids(B, T, seed=seed)
    if "attention_mask" in out:
        decoder_input_ids = decoder_input_ids.masked_fill(out["attention_mask"] == 0, PAD)
        out["decoder_attention_mask"] = out["attention_mask"]
    out["decoder_input_ids"] = decoder_input_ids
    return out


def compare(family, ours_out, hf_out, where, what):
    a, b = ours_out.logits, hf_out.logits
    if where is not None:
        a, b = a[where], b[where]  # (N, V): the positions transformers defines
    assert_close(a, b, what=f"{family} {what} logits")


def run_cache_case(family, ours, hf, case):
    """Prefill the first 4 tokens into a cache, then forward the other 3 with it; transformers does the same
    with its own cache class (DynamicCache, or EncoderDecoderCache for T5), each returned by the first call."""
    k = 4  # tokens prefilled
    ids, mask = (random_ids(B, T, seed=10), None) if case == "cache_no_mask" else padded("left", seed=11)
    where = None if mask is None else defined(mask, "left")
    if family == "t5":  # the encoder reads the whole input both times; the decoder's tokens go through the cache
        encoder = dict(input_ids=ids) if mask is None else dict(input_ids=ids, attention_mask=mask)
        decoder_input_ids = random_ids(B, T, seed=12)  # no decoder padding: every position compared
        first = dict(encoder, decoder_input_ids=decoder_input_ids[:, :k])
        rest = dict(encoder, decoder_input_ids=decoder_input_ids[:, k:])
        where = None
    else:
        first, rest = dict(input_ids=ids[:, :k]), dict(input_ids=ids[:, k:])
        if mask is not None:  # the second call's mask covers the cached tokens and the new ones
            first["attention_mask"], rest["attention_mask"] = mask[:, :k], mask
        if case == "cache_position_ids_from_mask":  # what generate does
            positions = positions_from_attention_mask(mask, T, ids.device)  # (B, T)
            first["position_ids"], rest["position_ids"] = positions[:, :k], positions[:, k:]
    with torch.no_grad():
        a1 = ours(**first, use_cache=True)
        a2 = ours(**rest, past_key_values=a1.past_key_values)
        b1 = hf(**first, use_cache=True)
        b2 = hf(**rest, cache=b1.cache, use_cache=True)
    compare(family, a1, b1, None if where is None else where[:, :k], f"{case} prefill")
    compare(family, a2, b2, None if where is None else where[:, k:], f"{case} step after the cache")


@pytest.mark.parametrize("case", [*CASES, *CACHE_CASES])
def test_forward_matches_transformers(pair, case):
    family, ours, hf = pair
    if SKIPS.get((family, case)):
        pytest.skip(SKIPS[(family, case)])
    if case in CACHE_CASES:
        return run_cache_case(family, ours, hf, case)
    kwargs, where = CASES[case](family)
    if family == "t5":
        kwargs = t5_inputs(kwargs, seed=20)  # left padding: the decoder's rows start fully masked, like GPT-2's
    if family == "bert":  # an encoder: neither library keeps a cache (BERT's mask never reads position_ids)
        kwargs.pop("use_cache", None)
    with torch.no_grad():
        a = ours(**kwargs)
        b = hf(**kwargs)
    compare(family, a, b, where, case)
    if "labels" in kwargs:
        assert a.loss is not None, f"{family}: labels given, no loss returned"
        assert_close(a.loss, b.loss, what=f"{family} loss")
