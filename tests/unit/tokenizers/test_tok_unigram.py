"""Unigram Viterbi on a tiny hand-made model."""

from __future__ import annotations

import pytest

from minitransformer.tokenizers import UnigramTokenizer

PIECES = [("<unk>", 0.0), ("▁a", -1.0), ("b", -2.0), ("▁ab", -2.5), ("▁", -3.0), ("c", -4.0)]


@pytest.fixture(scope="module")
def tok() -> UnigramTokenizer:
    return UnigramTokenizer(PIECES, unk_id=0)


def test_viterbi_picks_the_most_probable_segmentation(tok):
    assert tok.segment("▁ab") == ["▁ab"]  # -2.5 beats "▁a" + "b" = -3.0
    assert tok.segment("▁abc") == ["▁ab", "c"]
    assert tok.encode("ab ab") == [3, 3]


def test_unknown_characters_fuse_into_one_unknown_token(tok):
    assert tok.segment("▁axyzb") == ["▁a", "xyz", "b"]
    assert tok.encode("axyzb") == [1, 0, 2]


def test_decode_restores_spaces(tok):
    assert tok.decode(tok.encode("ab abc")) == "ab abc"


def test_encode_iterable_equals_encode(tok):
    text = "ab  abc\nab cab\n"
    assert list(tok.encode_iterable(text.splitlines(keepends=True))) == tok.encode(text)


def test_bad_unk_id():
    with pytest.raises(ValueError, match="unk_id 9 is outside"):
        UnigramTokenizer(PIECES, unk_id=9)


@pytest.mark.parametrize("chunks", [["\t ", "ab"], [" \x15 b"], ["ab\x15", "  ab"], ["a\n", " b\t", " c"]])
def test_encode_iterable_with_a_normalizer_that_joins_spaces(chunks):
    # Nmt turns tabs and newlines into spaces and drops "\x15"; Replace then joins runs of spaces.
    from minitransformer.tokenizers.normalize import Nmt, Replace, Sequence

    spec = {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}
    normalizer = Sequence({"type": "Sequence"}, [Nmt(), Replace(spec)])
    tok = UnigramTokenizer(PIECES, unk_id=0, normalizer=normalizer)
    assert list(tok.encode_iterable(chunks)) == tok.encode("".join(chunks), add_special_tokens=False)
