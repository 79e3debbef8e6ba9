"""Unigram training from scratch (EM + pruning)."""

from __future__ import annotations

import io
import math

import pytest

from minitransformer.tokenizers import UnigramTokenizer
from minitransformer.tokenizers.unigram_train import digamma, viterbi


def test_digamma_against_known_values():
    assert digamma(1.0) == pytest.approx(-0.5772156649, abs=1e-9)  # minus the Euler-Mascheroni constant
    assert digamma(0.5) == pytest.approx(-1.9635100260, abs=1e-9)
    assert digamma(100.0) == pytest.approx(math.log(100) - 1 / 200 - 1 / 120000, abs=1e-9)


def test_viterbi_and_forbidden_piece():
    scores = {"▁": -3.0, "a": -2.0, "b": -2.0, "▁a": -1.0, "▁ab": -1.5}
    assert viterbi("▁ab", scores, 3) == (["▁ab"], -1.5)
    assert viterbi("▁ab", scores, 3, forbid="▁ab") == (["▁a", "b"], -3.0)


def test_train_small_text_reaches_the_vocab_size_and_round_trips():
    text = ["the cat sat on the mat, the cat ate the rat."] * 30 + ["a dog, a log; a frog!"] * 30
    tok = UnigramTokenizer.train(text, vocab_size=40, special_tokens=["<unk>", "<pad>"], show_progress=False)
    assert tok.vocab_size <= 40 and tok.pieces[0] == ("<unk>", 0.0)  # EM drops pieces nothing uses
    assert "▁the" in tok.vocab or "▁cat" in tok.vocab  # frequent words become pieces
    for line in ["the cat sat on the mat", "a frog, a dog!"]:
        assert tok.decode(tok.encode(line)) == line
    assert tok.encode("zzz") == [tok.vocab["▁"], 0]  # unseen characters fuse into one <unk>


def test_vocab_size_too_small():
    with pytest.raises(ValueError, match="vocab_size=3 is smaller than the"):
        UnigramTokenizer.train(["abcdef"], vocab_size=3, show_progress=False)


@pytest.mark.slow
def test_tokens_per_char_within_3_percent_of_sentencepiece(tinyshakespeare):
    spm = pytest.importorskip("sentencepiece")
    cut = int(len(tinyshakespeare) * 0.9)
    train_lines = [line for line in tinyshakespeare[:cut].splitlines() if line.strip()]
    held_out = [line for line in tinyshakespeare[cut:].splitlines() if line.strip()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(train_lines), model_writer=model, vocab_size=1000, model_type="unigram", minloglevel=2
    )
    reference = spm.SentencePieceProcessor(model_proto=model.getvalue())
    # SentencePiece's vocabulary of 1000 includes <unk>, <s> and </s>: so does ours.
    ours = UnigramTokenizer.train(train_lines, 1000, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    chars = sum(len(line) for line in held_out)
    theirs_rate = sum(len(reference.encode(line)) for line in held_out) / chars
    ours_rate = sum(len(ours.encode(line)) for line in held_out) / chars
    assert abs(ours_rate / theirs_rate - 1) <= 0.03, (ours_rate, theirs_rate)
