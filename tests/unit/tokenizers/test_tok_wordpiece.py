"""WordPiece and the transformers-style batch call, on a tiny BERT vocabulary."""

from __future__ import annotations

import pytest
import torch

from minitransformer.tokenizers import WordPieceTokenizer

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "hello", "world", "!", ",", "a", "##b", "你", "好"]


@pytest.fixture(scope="module")
def tok() -> WordPieceTokenizer:
    return WordPieceTokenizer.bert({w: i for i, w in enumerate(WORDS)})


def test_longest_match_first_with_continuation_prefix(tok):
    assert tok.encode("Unaffable", add_special_tokens=False) == [5, 6, 7]
    assert tok.encode("Héllo, WORLD!") == [2, 8, 11, 9, 10, 3]  # lower-cased, accent stripped, punctuation split
    assert tok.encode("你好", add_special_tokens=False) == [14, 15]  # CJK characters are words of their own


def test_unknown_words(tok):
    assert tok.encode("unx", add_special_tokens=False) == [1]  # one unmatchable part: the whole word is [UNK]
    assert tok.encode("a" + "b" * 100, add_special_tokens=False) == [1]  # over 100 characters
    assert tok.encode("a" + "b" * 99, add_special_tokens=False) == [12] + [13] * 99


def test_decode_glues_continuations(tok):
    assert tok.decode(tok.encode("unaffable, world!")) == "[CLS] unaffable, world! [SEP]"
    assert tok.decode(tok.encode("unaffable, world!"), skip_special_tokens=True) == "unaffable, world!"


def test_pairs_get_token_type_ids(tok):
    enc = tok("hello", "world !")
    assert enc["input_ids"] == [2, 8, 3, 9, 10, 3]
    assert enc["token_type_ids"] == [0, 0, 0, 1, 1, 1]
    assert enc["attention_mask"] == [1] * 6


@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_and_tensors(tok, side):
    enc = tok(["hello", "hello world !"], padding=True, return_tensors="pt", padding_side=side)
    assert enc["input_ids"].shape == (2, 5) and enc["input_ids"].dtype == torch.long
    expected_mask = [1, 1, 1, 0, 0] if side == "right" else [0, 0, 1, 1, 1]
    assert enc["attention_mask"][0].tolist() == expected_mask
    assert enc["input_ids"][0][torch.tensor(expected_mask) == 0].tolist() == [0, 0]  # [PAD] is id 0


def test_truncation_longest_first(tok):
    enc = tok("hello world ! hello", "a , a , a", truncation=True, max_length=9)
    assert len(enc["input_ids"]) == 9
    assert enc["input_ids"] == [2, 8, 9, 10, 3, 12, 11, 12, 3]  # each side keeps half of the 6 free places


def test_unequal_lengths_without_padding_cannot_be_a_tensor(tok):
    with pytest.raises(ValueError, match="padding=True"):
        tok(["hello", "hello world"], return_tensors="pt")
