"""Reference solutions for chapter 1: byte-level BPE on integer ids (minbpe style), and WordPiece.

Tokens are integers: 0..255 are the bytes themselves, merge number i creates token 256 + i. The
library's ``minitransformer.tokenizers`` spells tokens as GPT-2's printable byte characters
instead, as ``tokenizer.json`` does; the algorithm is the same.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container

import regex

from minitransformer.tokenizers import GPT2_PATTERN

Pair = tuple[int, int]
_SPLIT = regex.compile(GPT2_PATTERN)


def utf8_bytes(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def count_pairs(ids: list[int], counts: dict[Pair, int] | None = None) -> dict[Pair, int]:
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    out, i = [], 0
    while i < len(ids):
        if i < len(ids) - 1 and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2  # both halves are consumed: in [5, 5, 5] the pair (5, 5) merges once, leftmost
        else:
            out.append(ids[i])
            i += 1
    return out


def train_bpe(text: str, num_merges: int) -> list[Pair]:
    # Identical pieces train identically, so count each distinct piece once, weighted by frequency.
    piece_counts = Counter(_SPLIT.findall(text))
    pieces = [utf8_bytes(p) for p in piece_counts]
    weights = list(piece_counts.values())
    merges: list[Pair] = []
    for i in range(num_merges):
        counts: dict[Pair, int] = {}
        for ids, weight in zip(pieces, weights):
            for pair in zip(ids, ids[1:]):
                counts[pair] = counts.get(pair, 0) + weight
        if not counts:
            break  # every piece is a single token: nothing left to merge
        best = min(counts, key=lambda p: (-counts[p], p))  # most frequent; ties: smallest pair
        merges.append(best)
        pieces = [merge(ids, best, 256 + i) for ids in pieces]
    return merges


def encode(text: str, merges: list[Pair]) -> list[int]:
    ranks = {pair: rank for rank, pair in enumerate(merges)}
    out: list[int] = []
    for piece in _SPLIT.findall(text):
        ids = utf8_bytes(piece)
        while len(ids) > 1:
            pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, float("inf")))
            if pair not in ranks:
                break  # no adjacent pair was ever merged in training
            ids = merge(ids, pair, 256 + ranks[pair])
        out += ids
    return out


def decode(ids: list[int], merges: list[Pair]) -> str:
    vocab = {b: bytes([b]) for b in range(256)}
    for rank, (a, b) in enumerate(merges):
        vocab[256 + rank] = vocab[a] + vocab[b]
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


def wordpiece(
    word: str, vocab: Container[str], unk_token: str = "[UNK]", max_input_chars_per_word: int = 100
) -> list[str]:
    if len(word) > max_input_chars_per_word:
        return [unk_token]
    tokens, start = [], 0
    while start < len(word):
        end = len(word)
        while end > start:
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
            end -= 1
        else:
            return [unk_token]  # no prefix of the rest matches: the whole word is unknown
        tokens.append(piece)
        start = end
    return tokens
