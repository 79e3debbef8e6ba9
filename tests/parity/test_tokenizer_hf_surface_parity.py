"""tokenize, convert_ids_to_tokens, convert_tokens_to_ids, save_pretrained and "np" tensors against transformers.

Three tokenizers built offline by ``tokenizers`` (the byte-level BPE, BERT WordPiece and T5-like
Unigram of ``test_tokenizer_bad_input.py``), each read by us and by transformers from the same
``tokenizer.json``; then our ``save_pretrained`` directory read by ``AutoTokenizer``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from minitransformer.tokenizers import load_tokenizer

sys.path.insert(0, str(Path(__file__).parent))  # for the shared reference builder (importlib mode)
from test_tokenizer_bad_input import _reference  # noqa: E402

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.parity

# The named special tokens each kind is given, as its transformers family names them.
NAMED = {
    "bpe": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"},
    "wordpiece": {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]"},
    "unigram": {"unk_token": "<unk>", "pad_token": "<pad>", "eos_token": "</s>"},
}
SPECIALS = {"bpe": "<|endoftext|>", "wordpiece": "[CLS]", "unigram": "</s>"}
TEXTS = [
    "the cat sat on the mat.",
    "",
    "héllo wörld 你好 👋🏽 Ωμέγα",
    "   spaces\tand\nnewlines  ",
    "qqq zzz xxq",  # mostly unknown to these small vocabularies
    "the cat " * 12,  # longer than model_max_length
]


def _texts(kind: str) -> list[str]:
    special = SPECIALS[kind]
    return [*TEXTS, special, f"a{special}b {special} c", "[CLS] <unk> </s> <pad> <|endoftext|>"]


@pytest.fixture(scope="module", params=["bpe", "wordpiece", "unigram"])
def trio(request, tmp_path_factory):
    """(kind, ours, transformers over the same tokenizer.json, AutoTokenizer over our save_pretrained)."""
    kind = request.param
    directory = tmp_path_factory.mktemp(kind)
    _reference(kind).save(str(directory / "tokenizer.json"))
    ours = load_tokenizer(directory / "tokenizer.json")
    for name, token in NAMED[kind].items():
        setattr(ours, name, token)
    ours.model_max_length, ours.padding_side = 16, "left"
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(directory / "tokenizer.json"), model_max_length=16, padding_side="left",
        model_input_names=list(ours.model_input_names), **NAMED[kind],
    )  # fmt: skip
    ours.save_pretrained(directory / "saved")
    auto = transformers.AutoTokenizer.from_pretrained(str(directory / "saved"))
    return kind, ours, fast, auto


def test_tokenize_equals_transformers(trio):
    kind, ours, fast, auto = trio
    for text in _texts(kind):
        for ref in (fast, auto):
            assert ours.tokenize(text) == ref.tokenize(text), text
            assert ours.tokenize(text, add_special_tokens=True) == ref.tokenize(text, add_special_tokens=True), text
            assert ours.tokenize(text, "x y", add_special_tokens=True) == ref.tokenize(text, "x y", add_special_tokens=True)


def test_convert_ids_to_tokens_equals_transformers(trio):
    kind, ours, fast, auto = trio
    past = len(fast) + 5  # past the vocabulary: None in both
    for text in _texts(kind):
        ids = fast(text)["input_ids"] + [past]
        assert ours.convert_ids_to_tokens(ids) == fast.convert_ids_to_tokens(ids) == auto.convert_ids_to_tokens(ids)
        # Skipping: the AutoTokenizer reads the other special tokens from additional_special_tokens.
        assert ours.convert_ids_to_tokens(ids, skip_special_tokens=True) == auto.convert_ids_to_tokens(ids, skip_special_tokens=True)
        for i in ids:
            assert ours.convert_ids_to_tokens(i) == fast.convert_ids_to_tokens(i)
            assert ours.convert_ids_to_tokens(i, skip_special_tokens=True) == fast.convert_ids_to_tokens(i, skip_special_tokens=True)
    assert ours.all_special_ids == auto.all_special_ids


def test_convert_tokens_to_ids_equals_transformers(trio):
    kind, ours, fast, auto = trio
    for text in _texts(kind):
        tokens = [*fast.tokenize(text), "not-a-token-at-all", SPECIALS[kind]]
        assert ours.convert_tokens_to_ids(tokens) == fast.convert_tokens_to_ids(tokens) == auto.convert_tokens_to_ids(tokens)
    assert ours.convert_tokens_to_ids("not-a-token") == fast.convert_tokens_to_ids("not-a-token")  # unk id, or None
    assert (ours.unk_token_id is None) == (kind == "bpe")


def test_bare_tokenizer_json_names_no_special_tokens_in_either(trio, tmp_path):
    """From a bare tokenizer.json: no unk_token, so an unknown token is None in both."""
    kind, ours, _, _ = trio
    ours.save(tmp_path / "tokenizer.json")
    bare_ours = load_tokenizer(tmp_path / "tokenizer.json")
    bare_fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    assert bare_ours.special_tokens_map == bare_fast.special_tokens_map == {}
    assert bare_ours.convert_tokens_to_ids(["not-a-token"]) == bare_fast.convert_tokens_to_ids(["not-a-token"]) == [None]
    # The documented difference: transformers skips only named special tokens, so here nothing at all.
    ids = bare_fast(SPECIALS[kind] + " the")["input_ids"]
    assert SPECIALS[kind] in bare_fast.convert_ids_to_tokens(ids, skip_special_tokens=True)
    assert SPECIALS[kind] not in bare_ours.convert_ids_to_tokens(ids, skip_special_tokens=True)


def test_negative_id_is_an_error_in_both(trio):
    _, ours, fast, _ = trio
    with pytest.raises(OverflowError):
        fast.convert_ids_to_tokens([1, -1])
    with pytest.raises(ValueError, match=r"^ids\[1\] is -1: token ids are rows of the embedding table"):
        ours.convert_ids_to_tokens([1, -1])


def test_save_pretrained_loads_in_auto_tokenizer_and_encodes_alike(trio):
    kind, ours, fast, auto = trio
    assert auto.padding_side == "left" and auto.model_max_length == 16
    assert auto.special_tokens_map == ours.special_tokens_map == NAMED[kind]
    assert len(auto) == len(fast) == ours.vocab_size  # no token added on loading
    texts = _texts(kind)
    for options in [{"padding": True}, {"padding": True, "truncation": True}, {"padding": "max_length", "truncation": True}]:
        got, expected = ours(texts, **options), auto(texts, **options)
        assert set(got) == set(expected)
        for key in expected:
            assert got[key] == expected[key], (key, options)
    pairs = ours(texts[:4], texts[4:8], padding=True, truncation=True), auto(texts[:4], texts[4:8], padding=True, truncation=True)
    assert dict(pairs[0]) == dict(pairs[1])
    for text in texts:
        ids = auto(text)["input_ids"]
        assert ours.encode(text) == ids
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == auto.decode(ids, skip_special_tokens=skip), text


def test_save_pretrained_round_trips_through_load_tokenizer(trio, tmp_path):
    _, ours, _, auto = trio
    ours.save_pretrained(tmp_path)
    back = load_tokenizer(tmp_path)
    assert back.to_dict() == ours.to_dict() and back.special_tokens_map == ours.special_tokens_map
    assert (back.model_max_length, back.padding_side) == (16, "left")
    auto.save_pretrained(tmp_path / "by-transformers")  # and the directory transformers writes back reads alike
    again = load_tokenizer(tmp_path / "by-transformers")
    assert again.special_tokens_map == ours.special_tokens_map and again.model_max_length == 16
    assert [again.encode(t) for t in TEXTS] == [ours.encode(t) for t in TEXTS]


def test_return_tensors_np_equals_transformers(trio):
    kind, ours, fast, _ = trio
    texts = _texts(kind)
    got = ours(texts, padding=True, return_tensors="np")
    expected = fast(texts, padding=True, return_tensors="np")
    assert set(got) == set(expected) == {"input_ids", "attention_mask"} | ({"token_type_ids"} if kind == "wordpiece" else set())
    for key in expected:
        assert isinstance(got[key], np.ndarray) and got[key].dtype == expected[key].dtype == np.int64, key
        assert got[key].shape == expected[key].shape and (got[key] == expected[key]).all(), key
    one, one_ref = ours("the cat", return_tensors="np"), fast("the cat", return_tensors="np")
    assert one["input_ids"].shape == one_ref["input_ids"].shape and (one["input_ids"] == one_ref["input_ids"]).all()
    with pytest.raises(ValueError, match="not a valid TensorType"):
        fast("the cat", return_tensors="tf")
    with pytest.raises(ValueError, match=r"return_tensors='tf' is not supported; use 'pt' \(torch\), 'np'"):
        ours("the cat", return_tensors="tf")
