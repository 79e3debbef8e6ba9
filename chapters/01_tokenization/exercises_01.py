"""Chapter 1 exercises: bytes, byte-level BPE (train, encode, decode) and WordPiece.

Fill in each function, then grade yourself:

    minitransformer check 1          # or: pytest chapters/01_tokenization
    minitransformer.check("1")       # the same, from a notebook (it reads this file afresh)
    from exercises_01 import ...     # your functions, in this folder's notebook

Tokens are integers here, as in karpathy/minbpe: 0..255 are the bytes themselves, and merge
number i (counting from 0) creates the token 256 + i. A list of merges, in the order they were
learned, is the whole BPE model. Use plain Python (``regex`` for the split); not
``minitransformer.tokenizers`` or Hugging Face ``tokenizers``: the checks compare you with those.
"""

from __future__ import annotations

from collections.abc import Container

import regex  # noqa: F401  (the pattern below needs the `regex` module: `re` has no \p{L})

from minitransformer.exercises import todo
from minitransformer.tokenizers import GPT2_PATTERN  # noqa: F401  (GPT-2's pre-tokenization regex)

Pair = tuple[int, int]


def utf8_bytes(text: str) -> list[int]:
    """Exercise 1.1: the UTF-8 bytes of ``text``, as a list of ints in 0..255.

    >>> utf8_bytes("hé")
    [104, 195, 169]
    """
    todo("1.1", "str.encode('utf-8') gives a bytes object; list() of it gives the ints")


def count_pairs(ids: list[int], counts: dict[Pair, int] | None = None) -> dict[Pair, int]:
    """Exercise 1.2: how often each adjacent pair occurs in ``ids``.

    With ``counts`` given, add to it (and return it), so that one dict can total many pieces.

    >>> count_pairs([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    todo("1.2", "zip(ids, ids[1:]) walks the adjacent pairs; counts.get(pair, 0) + 1")


def merge(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """Exercise 1.3: a new list where every occurrence of ``pair`` is replaced by ``new_id``.

    Scan left to right; a merged pair consumes both of its ids. Do not modify ``ids``.

    >>> merge([1, 2, 3, 1, 2], (1, 2), 99)
    [99, 3, 99]
    >>> merge([5, 5, 5], (5, 5), 7)
    [7, 5]
    """
    todo("1.3", "walk an index i; if ids[i], ids[i+1] is the pair, append new_id and skip 2, else append ids[i]")


def train_bpe(text: str, num_merges: int) -> list[Pair]:
    """Exercise 1.4: learn ``num_merges`` byte-level BPE merges from ``text``.

    1. Cut ``text`` into pieces with ``regex.findall(GPT2_PATTERN, text)``; merges never cross pieces.
    2. Each piece starts as its UTF-8 bytes.
    3. Repeat: count the adjacent pairs over all pieces, take the most frequent one (on a tie, the
       smallest pair, ``(a, b) < (c, d)`` as tuples: Hugging Face's rule), replace it in every piece
       with the next id 256, 257, ... and record it.
    4. Stop early when no piece has two tokens left.

    Returns the merges in the order they were learned.

    >>> train_bpe("aaabdaaabac", 3)
    [(97, 97), (97, 98), (256, 257)]
    """
    todo("1.4", "loop num_merges times: count_pairs over the pieces, min(counts, key=lambda p: (-counts[p], p)), "
                "merge(piece, best, 256 + i) in every piece")


def encode(text: str, merges: list[Pair]) -> list[int]:
    """Exercise 1.5: the ids of ``text`` under the BPE model ``merges``.

    Cut ``text`` with ``GPT2_PATTERN`` as in 1.4. In each piece, starting from its bytes, repeatedly
    merge the adjacent pair with the lowest *rank* (its index in ``merges``: learned first, applied
    first) until no adjacent pair is in ``merges``. Merge rank i creates id 256 + i.

    >>> encode("abc", [(98, 99), (97, 98)])  # "bc" was learned first, so "a" + "bc"
    [97, 256]
    """
    todo("1.5", "ranks = {pair: i for i, pair in enumerate(merges)}; per piece, "
                "min over zip(ids, ids[1:]) by ranks.get(p, inf); stop when that pair has no rank")


def decode(ids: list[int], merges: list[Pair]) -> str:
    """Exercise 1.6: the text behind ``ids``, never raising.

    Build the bytes of every token (0..255 are single bytes; token 256 + i is the bytes of the two
    halves of merge i joined), concatenate, and decode as UTF-8 with ``errors="replace"``: ids cut
    in the middle of a character must give U+FFFD, not an exception.

    >>> decode([104, 195], [])
    'h\\ufffd'
    """
    todo("1.6", "vocab = {b: bytes([b])}; vocab[256 + i] = vocab[a] + vocab[b]; "
                "b''.join(...).decode('utf-8', errors='replace')")


def wordpiece(
    word: str, vocab: Container[str], unk_token: str = "[UNK]", max_input_chars_per_word: int = 100
) -> list[str]:
    """Exercise 1.7: BERT's WordPiece on one (already normalized and split) word.

    Greedy longest-match-first: from the start, take the longest prefix of the rest of the word
    that is in ``vocab``; every piece after the first must be in ``vocab`` with ``##`` in front.
    If at some point no prefix matches, the *whole* word is ``[unk_token]`` (no backtracking), and
    so is a word longer than ``max_input_chars_per_word`` characters.

    >>> wordpiece("unaffable", {"un", "##aff", "##able"})
    ['un', '##aff', '##able']
    """
    todo("1.7", "two loops: start from 0; end from len(word) down to start+1, trying word[start:end] "
                "(with '##' if start > 0); no match at all -> [unk_token]")
