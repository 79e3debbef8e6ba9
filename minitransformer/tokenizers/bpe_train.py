"""Training byte-level BPE: count adjacent pairs, merge the most frequent, update counts, repeat.

The naive loop recounts every pair of every word after each merge. Here only the words that
contain the merged pair are touched, and only the pairs around each merge site change count: the
pair counts are updated incrementally, and a heap finds the next best pair.

The result equals Hugging Face ``tokenizers``' BpeTrainer merge for merge, because it makes the
same choices:

* ids: special tokens first, then the 256 byte symbols sorted by code point, then each merge;
* the best pair has the highest count; ties go to the smallest ``(left id, right id)``;
* the heap is updated lazily: an entry popped with a stale count is pushed back with the
  current one, and only pairs that *gained* occurrences are pushed after a merge;
* training stops at ``vocab_size``, or when the best count is below ``min_frequency``.

>>> vocab, merges = train_bpe(["aab aab aaab"], lambda t: t.split(" "), 259, 2, [], False)
>>> merges
[('a', 'a'), ('aa', 'b')]
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable

from tqdm.auto import tqdm

from .byte_level import BYTE_TO_CHAR, to_byte_chars

Pair = tuple[int, int]


def train_bpe(
    texts: Iterable[str],
    split: Callable[[str], list[str]],
    vocab_size: int,
    min_frequency: int,
    special_tokens: list[str],
    show_progress: bool = True,
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn ``(vocab, merges)`` from ``texts`` cut into words by ``split``.

    Raises:
        ValueError: when ``vocab_size`` cannot even hold the special tokens and the 256 bytes.
    """
    # 1. The vocabulary starts with the special tokens, then every byte symbol by code point.
    id_to_token: list[str] = []
    for token in special_tokens:
        if token not in id_to_token:
            id_to_token.append(token)
    for char in sorted(BYTE_TO_CHAR.values()):
        if char not in id_to_token:
            id_to_token.append(char)
    if vocab_size < len(id_to_token):
        raise ValueError(
            f"vocab_size={vocab_size} is smaller than the {len(id_to_token) - len(special_tokens)} byte symbols "
            f"plus {len(special_tokens)} special tokens ({len(id_to_token)}); ask for at least {len(id_to_token)}"
        )
    token_to_id = {t: i for i, t in enumerate(id_to_token)}

    # 2. Count distinct words; training works on (word, count), never on the raw text again.
    word_counts: Counter[str] = Counter()
    for text in texts:
        word_counts.update(split(text))
    words = [[token_to_id[c] for c in to_byte_chars(w)] for w in word_counts]
    counts = list(word_counts.values())

    # 3. Count every adjacent pair, and remember which words contain it.
    pair_counts: dict[Pair, int] = {}
    where: dict[Pair, set[int]] = {}
    for w, (word, count) in enumerate(zip(words, counts)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] = pair_counts.get(pair, 0) + count
            where.setdefault(pair, set()).add(w)
    # A max-heap as a min-heap of (-count, pair): equal counts pop the smallest pair first.
    heap = [(-pair_counts[p], p, positions) for p, positions in where.items() if pair_counts[p] > 0]
    heapq.heapify(heap)

    # 4. Merge until the vocabulary is full.
    merges: list[tuple[str, str]] = []
    bar = tqdm(total=vocab_size - len(id_to_token), desc="BPE merges", disable=not show_progress)
    while len(token_to_id) < vocab_size and heap:
        neg_count, pair, positions = heapq.heappop(heap)
        count = pair_counts[pair]
        if -neg_count != count:  # stale: merges elsewhere lowered this pair's count since the push
            heapq.heappush(heap, (-count, pair, positions))
            continue
        if count < 1 or count < min_frequency:
            break
        a, b = pair
        new_token = id_to_token[a] + id_to_token[b]
        new_id = token_to_id.get(new_token)
        if new_id is None:
            new_id = len(id_to_token)
            id_to_token.append(new_token)
            token_to_id[new_token] = new_id
        merges.append((id_to_token[a], id_to_token[b]))
        gained = _merge_everywhere(words, counts, positions, a, b, new_id, pair_counts)
        for p, ws in gained.items():
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], p, ws))
        bar.update(1)
    bar.close()
    return token_to_id, merges


def _merge_everywhere(
    words: list[list[int]],
    counts: list[int],
    positions: set[int],
    a: int,
    b: int,
    new_id: int,
    pair_counts: dict[Pair, int],
) -> dict[Pair, set[int]]:
    """Replace ``a b`` by ``new_id`` in the words at ``positions``, updating ``pair_counts`` in place.

    Around each merge site ``x a b y``, the pairs ``(x, a)`` and ``(b, y)`` lose one occurrence and
    ``(x, new)`` and ``(new, y)`` gain one (times the word's count). Returns the pairs that gained,
    with the words they are in.
    """
    gained: dict[Pair, set[int]] = {}
    for w in positions:
        word = words[w]
        count = counts[w]
        i = 0
        while i < len(word) - 1:
            if word[i] == a and word[i + 1] == b:
                if i > 0:
                    left = word[i - 1]
                    pair_counts[left, a] -= count
                    pair_counts[left, new_id] = pair_counts.get((left, new_id), 0) + count
                    gained.setdefault((left, new_id), set()).add(w)
                word[i : i + 2] = [new_id]
                if i < len(word) - 1:
                    right = word[i + 1]
                    pair_counts[b, right] -= count
                    pair_counts[new_id, right] = pair_counts.get((new_id, right), 0) + count
                    gained.setdefault((new_id, right), set()).add(w)
            i += 1
    return gained
