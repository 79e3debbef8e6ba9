"""Training a Unigram model from scratch: start big, then EM and pruning until the size is right.

1. Seed: every substring of the (pre-tokenized) words up to ``max_piece_length`` characters that
   occurs at least twice, scored by frequency; every single character is always kept. As in
   SentencePiece, a piece never mixes letters, digits and symbols, and ``▁`` only starts a piece.
2. EM: segment every word with the current scores (Viterbi; a "hard" E-step), count how often
   each piece is used, and set ``score = digamma(count) - digamma(total)``: a log-probability
   shrunk toward zero for rare pieces, as SentencePiece does.
3. Prune: for each piece, the loss of removing it is ``count * (its score - the score of the best
   segmentation of its text without it)``. Keep the ``shrinking_factor`` most useful pieces.
4. Repeat 2-3 until the vocabulary has ``vocab_size`` pieces.

>>> pieces = train_unigram(["low lower lowest"] * 20, lambda t: ("▁" + t.replace(" ", " ▁")).split(" "), 20, ["<unk>"], False)
>>> pieces[0], len(pieces) <= 20
(('<unk>', 0.0), True)
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable

from tqdm.auto import tqdm


def digamma(x: float) -> float:
    """The digamma function (derivative of log Gamma), by recurrence and its asymptotic series."""
    result = 0.0
    while x < 7:
        result -= 1 / x
        x += 1
    x -= 0.5
    xx = 1 / (x * x)
    return result + math.log(x) + xx * (1 / 24 + xx * (-7 / 960 + xx * (31 / 8064 - xx * 127 / 30720)))


def viterbi(word: str, scores: dict[str, float], max_len: int, forbid: str | None = None) -> tuple[list[str], float]:
    """Best segmentation of ``word`` under ``scores`` (``forbid``: a piece not to use as a whole)."""
    n = len(word)
    best = [0.0] + [-math.inf] * n
    back = [0] * (n + 1)
    for end in range(1, n + 1):
        for start in range(max(0, end - max_len), end):
            if best[start] == -math.inf:
                continue
            piece = word[start:end]
            score = scores.get(piece)
            if score is None or (start == 0 and end == n and piece == forbid):
                continue
            if best[start] + score > best[end]:
                best[end], back[end] = best[start] + score, start
    pieces = []
    end = n
    while end > 0:
        pieces.append(word[back[end] : end])
        end = back[end]
    return pieces[::-1], best[n]


def _char_class(c: str) -> str:
    return "L" if c.isalpha() or unicodedata.category(c).startswith("M") else "N" if c.isdigit() else "P"


def _valid(piece: str) -> bool:
    """SentencePiece's rules for a piece: ``▁`` only in front; letters, digits, symbols never mixed."""
    body = piece[1:] if piece.startswith("▁") else piece
    return bool(body) and "▁" not in body and len({_char_class(c) for c in body}) == 1


def train_unigram(
    texts: Iterable[str],
    split: Callable[[str], list[str]],
    vocab_size: int,
    special_tokens: list[str],
    show_progress: bool = True,
    max_piece_length: int = 16,
    shrinking_factor: float = 0.75,
    em_iterations: int = 2,
    seed_factor: int = 3,
) -> list[tuple[str, float]]:
    """Learn ``[(piece, score), ...]``: the special tokens first (score 0), then pieces by score.

    Raises:
        ValueError: when ``vocab_size`` cannot hold the special tokens and every character.
    """
    words: Counter[str] = Counter()
    for text in texts:
        words.update(split(text))
    chars: Counter[str] = Counter()
    for word, count in words.items():
        for c in word:
            chars[c] += count
    if vocab_size < len(chars) + len(special_tokens):
        raise ValueError(
            f"vocab_size={vocab_size} is smaller than the {len(chars)} characters of the text plus "
            f"{len(special_tokens)} special tokens; ask for at least {len(chars) + len(special_tokens)}"
        )

    # 1. Seed pieces: frequent substrings, the most frequent-times-long first.
    substrings: Counter[str] = Counter()
    for word, count in words.items():
        for start in range(len(word)):
            for end in range(start + 2, min(len(word), start + max_piece_length) + 1):
                substrings[word[start:end]] += count
    seeds = sorted((s for s, c in substrings.items() if c >= 2 and _valid(s)), key=lambda s: -substrings[s] * len(s))
    seeds = seeds[: seed_factor * vocab_size]
    total = sum(chars.values()) + sum(substrings[s] for s in seeds)
    scores = {c: math.log(n / total) for c, n in chars.items()}
    scores.update({s: math.log(substrings[s] / total) for s in seeds})

    target = vocab_size - len(special_tokens)
    bar = tqdm(desc="Unigram pruning", total=len(scores) - target, disable=not show_progress)
    while True:
        # 2. EM with a hard E-step: piece counts from the best segmentation of every word.
        for _ in range(em_iterations):
            counts = Counter()
            for word, count in words.items():
                for piece in viterbi(word, scores, max_piece_length)[0]:
                    counts[piece] += count
            norm = digamma(sum(counts.values()))
            scores = {p: (digamma(counts[p]) - norm if counts[p] > 0 else -1e9) if len(p) > 1 else
                      digamma(counts[p] + 1) - norm for p in scores}  # fmt: skip
            scores = {p: s for p, s in scores.items() if s > -1e9}  # unused multi-character pieces go
        if len(scores) <= target:
            break
        # 3. Prune: drop the pieces whose removal costs least.
        loss = {}
        for piece, score in scores.items():
            if len(piece) == 1:
                continue  # characters stay, so that everything can still be segmented
            _, alternative = viterbi(piece, scores, max_piece_length, forbid=piece)
            loss[piece] = counts[piece] * (score - alternative)
        keep = max(target, int(len(scores) * shrinking_factor))
        n_chars = sum(1 for p in scores if len(p) == 1)
        ranked = sorted(loss, key=lambda p: -loss[p])[: keep - n_chars]
        before = len(scores)
        kept = set(ranked)
        scores = {p: s for p, s in scores.items() if len(p) == 1 or p in kept}
        bar.update(before - len(scores))
    bar.close()
    pieces = sorted(scores.items(), key=lambda ps: -ps[1])
    return [(t, 0.0) for t in special_tokens] + pieces
