"""Checks for chapter 1. References: expectations worked out by hand on tiny inputs, and Hugging Face
``tokenizers`` (its BPE trainer, its BPE and WordPiece models, its ByteLevel decoder) built here.

How the tokenizers models are made to use the exercises' ids:

* training: each piece is given to ``BpeTrainer`` as latin-1 text, one character per byte, with
  the 256 characters chr(0)..chr(255) as the alphabet. The trainer sorts its alphabet, so byte b
  gets id b and merge i gets id 256 + i, and its tie rule (smallest pair of ids) is the exercise's.
* encoding and decoding: a GPT-2 byte-level BPE whose vocabulary maps the printable character of
  byte b to id b, so its ids are the exercise's ids.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from minitransformer.exercises import expect_equal

GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# Word-frequency corpora: each word appears the given number of times, in a fixed order.
HUG = " ".join(["hug"] * 10 + ["pug"] * 5 + ["pun"] * 12 + ["bun"] * 4 + ["hugs"] * 5)
LOWER = "low lower lowest newer newest wider widest\n" * 3
ACCENTS = " ".join(["café"] * 9 + ["cafés"] * 4 + ["naïve"] * 6 + ["🙂"] * 5 + ["🙃"] * 3 + ["über"] * 3)
CORPORA = {"hug pug pun bun hugs": HUG, "low lower lowest (3 lines)": LOWER, "accents and emoji": ACCENTS}


# ---------------------------------------------------------------- references


def _gpt2_byte_chars() -> dict[int, str]:
    """GPT-2's byte-to-unicode map, written out here so that the checks do not rely on the library."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    shifted = [b for b in range(256) if b not in keep]
    table = {b: chr(b) for b in keep} | {b: chr(256 + n) for n, b in enumerate(shifted)}
    assert set(table.values()) == set(pre_tokenizers.ByteLevel.alphabet())
    return table


def _pieces(text: str) -> list[str]:
    """tokenizers' own regex split (Oniguruma, not Python's `regex`)."""
    split = pre_tokenizers.Split(Regex(GPT2_REGEX), behavior="isolated")
    return [piece for piece, _ in split.pre_tokenize_str(text)]


def _hf_train(text: str, num_merges: int) -> list[tuple[int, int]]:
    """tokenizers' BpeTrainer on the pieces of ``text``, one latin-1 character per byte."""
    tok = Tokenizer(models.BPE())
    trainer = trainers.BpeTrainer(vocab_size=256 + num_merges, min_frequency=0, show_progress=False,
                                  initial_alphabet=[chr(b) for b in range(256)])
    tok.train_from_iterator([p.encode("utf-8").decode("latin-1") for p in _pieces(text)], trainer)
    vocab = tok.get_vocab()
    assert all(vocab[chr(b)] == b for b in range(256))
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [(vocab[a], vocab[b]) for a, b in (m if isinstance(m, list) else m.split(" ") for m in merges)]


def _hf_byte_level(merges: list[tuple[int, int]]) -> Tokenizer:
    """A GPT-2-style byte-level BPE from ``merges``, whose token ids are the exercises' ids."""
    chars = _gpt2_byte_chars()
    spelled = {b: chars[b] for b in range(256)}
    pairs = []
    for rank, (a, b) in enumerate(merges):
        pairs.append((spelled[a], spelled[b]))
        spelled[256 + rank] = spelled[a] + spelled[b]
    tok = Tokenizer(models.BPE(vocab={s: i for i, s in spelled.items()}, merges=pairs))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def _spell(merges: list[tuple[int, int]]) -> list[tuple[bytes, bytes]]:
    """Merges as byte strings, for messages a person can read."""
    vocab = {b: bytes([b]) for b in range(256)}
    out = []
    for rank, (a, b) in enumerate(merges):
        if a not in vocab or b not in vocab:
            out.append((b"?", b"?"))
            continue
        out.append((vocab[a], vocab[b]))
        vocab[256 + rank] = vocab[a] + vocab[b]
    return out


def _expect_merges(got, expected, *, exercise: str, case: str) -> None:
    got = [tuple(p) for p in got]
    if got == expected:
        return
    k = next((i for i, (g, e) in enumerate(zip(got, expected)) if g != e), min(len(got), len(expected)))
    if k == len(got) or k == len(expected):
        raise AssertionError(f"Exercise {exercise}, case '{case}': expected {len(expected)} merges, got "
                             f"{len(got)} (the first {k} agree). Stop only when no piece has a pair left.")
    raise AssertionError(
        f"Exercise {exercise}, case '{case}': the first {k} merges agree; merge {k} should be "
        f"{expected[k]} = {_spell(expected)[k]}, yours is {got[k]} = {_spell(got)[k]}. Count pairs inside "
        "the regex pieces only, weight nothing twice, and on a tie take the smallest pair."
    )


# ---------------------------------------------------------------- 1.1 bytes


@pytest.mark.parametrize("text, expected", [
    ("hi", [104, 105]),
    ("é", [195, 169]),  # U+00E9, precomposed: 2 bytes
    ("e\u0301", [101, 204, 129]),  # "e" + COMBINING ACUTE ACCENT: looks the same, 3 bytes
    ("€", [226, 130, 172]),  # U+20AC: 3 bytes
    ("🙂", [240, 159, 153, 130]),  # U+1F642, outside the BMP: 4 bytes
    ("日本", [230, 151, 165, 230, 156, 172]),
    ("", []),
], ids=["ascii", "e-acute", "e+combining", "euro", "emoji", "cjk", "empty"])
def test_1_1_utf8_bytes(ex, text, expected):
    got = ex.utf8_bytes(text)
    expect_equal(list(got), expected, exercise="1.1", case=f"{text!r} ({len(text)} code points)")


# ---------------------------------------------------------------- 1.2 count pairs


@pytest.mark.parametrize("ids", [[1, 2, 3, 1, 2], [5, 5, 5], [7], [], [104, 117, 103, 32, 104, 117, 103]],
                         ids=["repeat", "overlapping", "one id", "empty", "bytes of 'hug hug'"])
def test_1_2_count_pairs(ex, ids):
    got = ex.count_pairs(ids)
    expected = dict(Counter(zip(ids, ids[1:])))
    expect_equal(dict(got), expected, exercise="1.2", case=f"ids={ids}")
    if ids == [5, 5, 5]:
        assert expected == {(5, 5): 2}  # overlapping pairs both count


def test_1_2_count_pairs_accumulates(ex):
    counts = ex.count_pairs([1, 2, 3])
    got = ex.count_pairs([1, 2], counts)
    expect_equal(dict(got), {(1, 2): 2, (2, 3): 1}, exercise="1.2",
                 case="count_pairs([1, 2], count_pairs([1, 2, 3])) adds to the dict it is given")


# ---------------------------------------------------------------- 1.3 merge


@pytest.mark.parametrize("ids, pair, expected", [
    ([1, 2, 3, 1, 2], (1, 2), [99, 3, 99]),
    ([5, 5, 5], (5, 5), [7, 5]),
    ([5, 5, 5, 5], (5, 5), [7, 7]),
    ([1, 2, 3], (2, 1), [1, 2, 3]),
    ([3, 1, 2], (1, 2), [3, 99]),
    ([], (1, 2), []),
], ids=["twice", "overlap: leftmost wins", "overlap: two merges", "absent", "at the end", "empty"])
def test_1_3_merge(ex, ids, pair, expected):
    new_id = 7 if pair == (5, 5) else 99
    before = list(ids)
    got = ex.merge(ids, pair, new_id)
    expect_equal(list(got), expected, exercise="1.3", case=f"merge({before}, {pair}, {new_id})")
    expect_equal(ids, before, exercise="1.3", case="the input list must not be modified")


# ---------------------------------------------------------------- 1.4 training


def test_1_4_train_by_hand(ex):
    # "aaabdaaabac": aa occurs 4 times (overlaps count); then Za and ab tie at 2 and (97, 98) is
    # smaller than (256, 97); then ZY occurs twice.
    got = ex.train_bpe("aaabdaaabac", 3)
    _expect_merges(got, [(97, 97), (97, 98), (256, 257)], exercise="1.4", case='"aaabdaaabac", 3 merges')


@pytest.mark.parametrize("name", CORPORA)
def test_1_4_train_matches_hf_trainer(ex, name):
    text = CORPORA[name]
    got = ex.train_bpe(text, 12)
    _expect_merges(got, _hf_train(text, 12), exercise="1.4", case=f"{name}, 12 merges, vs tokenizers' BpeTrainer")


def test_1_4_train_stops_when_nothing_is_left(ex):
    text = "ab ab ab"  # pieces 'ab', ' ab', ' ab': three merges make every piece one token
    got = ex.train_bpe(text, 10)
    _expect_merges(got, _hf_train(text, 10), exercise="1.4", case="'ab ab ab', asked for 10 merges")


# ---------------------------------------------------------------- 1.5 encoding


@pytest.mark.parametrize("text, merges, expected", [
    ("abc", [(98, 99), (97, 98)], [97, 256]),  # rank 0 first: a + bc, not ab + c
    ("abc", [(97, 98), (98, 99)], [256, 99]),
    ("aaaa", [(97, 97), (256, 256)], [257]),
    ("ab ab", [(98, 32)], [97, 98, 32, 97, 98]),  # 'b' and ' ' are in different pieces: never merged
    ("", [(97, 98)], []),
], ids=["rank beats position", "the other order", "a merge of merges", "no merge across pieces", "empty"])
def test_1_5_encode_by_hand(ex, text, merges, expected):
    got = ex.encode(text, merges)
    expect_equal(list(got), expected, exercise="1.5", case=f"encode({text!r}, merges={merges})")


@pytest.mark.parametrize("text", [
    "hug pugs bunny",
    "the lowest newer widest\n\nwidest  lower",
    "naïve café über 🙂🙃 cafés",
    "It's 2024, isn't it?",
], ids=["unseen words", "newlines and spaces", "accents and emoji", "contractions and numbers"])
def test_1_5_encode_matches_hf(ex, text):
    merges = _hf_train(HUG + " " + LOWER + " " + ACCENTS, 40)
    got = ex.encode(text, merges)
    expected = _hf_byte_level(merges).encode(text).ids
    expect_equal(list(got), expected, exercise="1.5", case=f"{text!r} with 40 merges, vs tokenizers' BPE model")


# ---------------------------------------------------------------- 1.6 decoding


@pytest.mark.parametrize("text", ["hug pugs bunny", "naïve café über 🙂🙃", "tabs\tand\nnewlines  "],
                         ids=["ascii", "accents and emoji", "whitespace"])
def test_1_6_decode_round_trip(ex, text):
    merges = _hf_train(HUG + " " + ACCENTS, 30)
    ids = _hf_byte_level(merges).encode(text).ids
    expect_equal(ex.decode(ids, merges), text, exercise="1.6", case=f"decode(encode({text!r})) with 30 merges")


def test_1_6_decode_cut_inside_a_character(ex):
    merges = _hf_train(ACCENTS, 30)
    tok = _hf_byte_level(merges)
    ids = tok.encode("🙂 é!").ids
    for k in range(len(ids) + 1):  # every prefix, including the ones that cut a character in two
        expect_equal(ex.decode(ids[:k], merges), tok.decode(ids[:k]), exercise="1.6",
                     case=f"the first {k} of the ids of '🙂 é!' = {ids}, vs tokenizers' ByteLevel decoder")


def test_1_6_decode_invalid_bytes(ex):
    ids = [0xFF, 104, 0xE2, 0x82, 105, 0xC3]  # a byte never valid in UTF-8, a cut "€", a cut "é"
    expect_equal(ex.decode(ids, []), "\ufffdh\ufffdi\ufffd", exercise="1.6",
                 case=f"ids {ids}: each broken sequence becomes one U+FFFD")


# ---------------------------------------------------------------- 1.7 WordPiece

VOCAB = ["[UNK]", "un", "##aff", "##able", "a", "ab", "##bcd", "##l", "##e", "play", "##ing", "##s", "p",
         "##lay", "##y"]


@pytest.mark.parametrize("word, max_chars", [
    ("unaffable", 100),
    ("playing", 100),
    ("plays", 100),
    ("able", 100),  # "able" is only in the vocabulary as "##able": ab + ##l + ##e
    ("abcd", 100),  # greedy takes "ab", then nothing fits "cd": [UNK], though "a" + "##bcd" exists
    ("unx", 100),
    ("p", 100),
    ("unaffable", 9),  # exactly the limit: still tokenized
    ("unaffable", 8),  # one over: [UNK]
], ids=["un-aff-able", "play-ing", "play-s", "ab-l-e", "dead end", "unknown char", "one char",
        "at the length limit", "over the length limit"])
def test_1_7_wordpiece_matches_hf(ex, word, max_chars):
    hf = Tokenizer(models.WordPiece({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]",
                                    max_input_chars_per_word=max_chars))
    expected = hf.encode(word).tokens
    got = ex.wordpiece(word, set(VOCAB), "[UNK]", max_chars)
    expect_equal(list(got), expected, exercise="1.7",
                 case=f"{word!r}, max_input_chars_per_word={max_chars}, vs tokenizers' WordPiece")
