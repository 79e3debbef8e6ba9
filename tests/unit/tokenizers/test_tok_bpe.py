"""Byte-level BPE on tiny inputs: training, encoding, decoding, streaming, errors."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minitransformer.tokenizers import BPETokenizer
from minitransformer.tokenizers.bpe_train import train_bpe

CORPUS = ["low lower lowest newer wider", "the quick brown fox jumps over the lazy dog", "aaaa aaa aa a"] * 20


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    return BPETokenizer.train(CORPUS, vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False)


def test_train_worked_example():
    # (a, a) is seen 4 times and wins; then (aa, b) twice; (aa, a) and (a, b) once: below min_frequency.
    vocab, merges = train_bpe(["aab aab aaab"], lambda t: t.split(" "), 259, 2, [], False)
    assert merges == [("a", "a"), ("aa", "b")]
    assert vocab["aa"] == 256 and vocab["aab"] == 257


def test_vocabulary_layout(tok):
    assert tok.vocab["<|endoftext|>"] == 0  # specials first
    assert tok.vocab["!"] == 1  # then the byte symbols by code point
    assert len(tok.vocab) == tok.vocab_size <= 300
    assert all(a + b in tok.vocab for a, b in tok.merges)


def test_encode_uses_merges_and_keeps_special_tokens_whole(tok):
    ids = tok.encode("lower<|endoftext|>lowest")
    assert 0 in ids and tok.decode(ids) == "lower<|endoftext|>lowest"
    assert tok.decode(ids, skip_special_tokens=True) == "lowerlowest"
    assert len(tok.encode(" lower")) < len(b" lower")


def test_decode_never_raises_on_split_characters(tok):
    ids = tok.encode("é👋")
    for i in range(len(ids) + 1):
        tok.decode(ids[:i])  # no exception
    assert "\ufffd" in tok.decode(ids[:-1])
    assert tok.decode([10**9, *ids]) == "é👋"  # unknown ids are skipped, as tokenizers does


def test_heap_merge_equals_scan_merge(tok):
    """The O(n log n) path for long pieces gives the same ids as the plain scan."""
    rng = random.Random(0)
    for _ in range(200):
        word = "".join(rng.choice("lowerabc ") for _ in range(rng.randint(1, 80)))
        symbols = tok._symbols(word)
        assert tok._merge_long(list(symbols)) == tok._merge_short(list(symbols))


def test_encode_iterable_equals_encode(tok):
    text = "the lower  dog\n\n  newer\twider <|endoftext|> fox's   \n a\n"
    lines = text.splitlines(keepends=True)
    assert list(tok.encode_iterable(lines)) == tok.encode(text)
    chunks = [text[i : i + 3] for i in range(0, len(text), 3)]  # arbitrary cuts, not lines
    assert list(tok.encode_iterable(c for c in chunks if "<" not in c)) == tok.encode(
        "".join(c for c in chunks if "<" not in c)
    )


def test_cl100k_pattern_splits_digits_in_threes():
    tok = BPETokenizer.train(["12345 hello"] * 3, vocab_size=270, pattern="cl100k", show_progress=False)
    assert tok.pre_tokenizer.split("12345 hello!\n") == ["123", "45", " hello", "!\n"]
    assert tok.decode(tok.encode("12345 hello!\n")) == "12345 hello!\n"


def test_vocab_size_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match=r"vocab_size=100 is smaller than the 256 byte symbols plus 1 special"):
        BPETokenizer.train(["abc"], vocab_size=100, special_tokens=["<s>"], show_progress=False)


def test_merge_naming_unknown_token_is_a_clear_error():
    with pytest.raises(ValueError, match=r"merge 0 \('a', 'q'\) needs 'q'"):
        BPETokenizer({"a": 0, "b": 1, "ab": 2}, [("a", "q")])


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_decode_encode_round_trip_any_unicode(tok, s):
    assert tok.decode(tok.encode(s)) == s


@pytest.mark.parametrize("chunks", [["\r\nthe"], ["a \r", "\nthe"], ["x\n\n\n", "y"], ["a\t \n", " b"]])
def test_streaming_cut_keeps_whitespace_that_a_word_follows(tok, chunks):
    # GPT-2's "\s+(?!\S)" gives "\r", "\n", "the" for "\r\nthe", but "\r\n" alone is one piece.
    assert list(tok.encode_iterable(chunks)) == tok.encode("".join(chunks))
