"""Byte-level BPE (GPT-2, RoBERTa, Llama 3): encode a piece by applying merges in rank order.

A piece starts as one symbol per byte; then, again and again, the adjacent pair whose merge was
learned *earliest* (lowest rank) is fused, leftmost first, until no pair has a merge. With the
merges ``[("l", "o"), ("lo", "w")]``, the piece ``"lower"`` goes::

    l o w e r  ->  lo w e r  ->  low e r

Training (``bpe_train.py``) learns the merges; this file only applies them.

>>> tok = BPETokenizer.train(["low lower lowest"] * 10, vocab_size=260, show_progress=False)
>>> tok.decode(tok.encode("lowest"))
'lowest'
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from typing import Any

from .base import AddedToken, Tokenizer, check_text
from .byte_level import to_byte_chars
from .normalize import Normalizer
from .pretokenize import PATTERNS, ByteLevel, PreTokenizer, Split
from .pretokenize import Sequence as PreTokenizerSequence
from .processors import ByteLevelDecoder, Decoder, PostProcessor

_SHORT = 48  # pieces up to this many symbols use the plain scan; longer ones the heap (same result)


class BPETokenizer(Tokenizer):
    """A BPE tokenizer: ``vocab`` maps token strings to ids, ``merges`` lists the pairs in rank order.

    Byte-level by default (GPT-2's pre-tokenizer and decoder). The other constructor arguments
    are the rarer options of a ``tokenizer.json`` BPE model.
    """

    def __init__(
        self,
        vocab: dict[str, int],
        merges: Sequence[tuple[str, str]],
        *,
        normalizer: Normalizer | None = None,
        pre_tokenizer: PreTokenizer | None = None,
        post_processor: PostProcessor | None = None,
        decoder: Decoder | None = None,
        added_tokens: Sequence[AddedToken] = (),
        unk_token: str | None = None,
        continuing_subword_prefix: str | None = None,
        end_of_word_suffix: str | None = None,
        ignore_merges: bool = False,
        byte_fallback: bool = False,
        fuse_unk: bool = False,
    ) -> None:
        super().__init__(
            normalizer,
            ByteLevel() if pre_tokenizer is None else pre_tokenizer,
            PostProcessor() if post_processor is None else post_processor,
            ByteLevelDecoder() if decoder is None else decoder,
            added_tokens,
        )
        self.vocab = dict(vocab)
        self.merges = [tuple(m) for m in merges]
        # The model's own unknown token (tokenizer.json's model.unk_token); transformers' named
        # ``unk_token`` is a separate attribute of the base class.
        self.model_unk_token = unk_token
        self.continuing_subword_prefix = continuing_subword_prefix
        self.end_of_word_suffix = end_of_word_suffix
        self.ignore_merges = ignore_merges
        self.byte_fallback = byte_fallback
        self.fuse_unk = fuse_unk
        prefix = continuing_subword_prefix or ""
        # (left id, right id) -> (rank, id of the merged token): ids make the inner loop cheap.
        self._merge_table: dict[tuple[int, int], tuple[int, int]] = {}
        for rank, (a, b) in enumerate(self.merges):
            merged = a + (b[len(prefix) :] if prefix and b.startswith(prefix) else b)
            for part in (a, b, merged):
                if part not in self.vocab:
                    raise ValueError(f"merge {rank} ({a!r}, {b!r}) needs {part!r}, which is not in the vocabulary")
            self._merge_table[self.vocab[a], self.vocab[b]] = (rank, self.vocab[merged])

    # ------------------------------------------------------------------ training

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        min_frequency: int = 2,
        special_tokens: Sequence[str] = (),
        *,
        pattern: str = "gpt2",
        show_progress: bool = True,
    ) -> BPETokenizer:
        """Learn a byte-level BPE from ``texts``; the merges equal ``tokenizers``' BpeTrainer's.

        Args:
            texts: an iterable of strings (lines, documents); each is pre-tokenized on its own.
            vocab_size: the target, special tokens and the 256 byte symbols included.
            min_frequency: a pair seen fewer times than this is never merged.
            special_tokens: they get the first ids and are never split when encoding.
            pattern: ``"gpt2"`` or ``"cl100k"``, the pre-tokenization regex.
            show_progress: a tqdm bar over the merges.
        """
        from .bpe_train import train_bpe

        pre_tokenizer = _byte_level_pre_tokenizer(pattern)
        texts = (check_text(text, f"texts[{i}]") for i, text in enumerate(texts))
        vocab, merges = train_bpe(
            texts, pre_tokenizer.split, vocab_size, min_frequency, list(special_tokens), show_progress
        )
        added = [AddedToken(t, vocab[t]) for t in special_tokens]
        return cls(vocab, merges, pre_tokenizer=pre_tokenizer, added_tokens=added)

    # ------------------------------------------------------------------ encoding

    def _symbols(self, piece: str) -> list[int]:
        """The starting symbols of a piece: one per byte (or per character, for non-byte-level BPE)."""
        vocab = self.vocab
        if self.pre_tokenizer is not None and self.pre_tokenizer.byte_level:
            chars = to_byte_chars(piece)
            if self.ignore_merges and chars in vocab:
                return [vocab[chars]]
            return [vocab[c] for c in chars if c in vocab]
        if self.ignore_merges and piece in vocab:
            return [vocab[piece]]
        ids: list[int] = []
        pending_unk = False
        for i, c in enumerate(piece):
            s = c
            if i > 0 and self.continuing_subword_prefix:
                s = self.continuing_subword_prefix + s
            if i == len(piece) - 1 and self.end_of_word_suffix:
                s = s + self.end_of_word_suffix
            if s in vocab:
                ids.append(vocab[s])
                pending_unk = False
            elif self.byte_fallback and all(f"<0x{b:02X}>" in vocab for b in s.encode()):
                ids += [vocab[f"<0x{b:02X}>"] for b in s.encode()]
            elif self.model_unk_token is not None:
                if not (pending_unk and self.fuse_unk):  # runs of unknown characters fuse into one
                    ids.append(vocab[self.model_unk_token])
                pending_unk = True
        return ids

    def _encode_piece(self, piece: str) -> list[int]:
        ids = self._symbols(piece)
        return self._merge_short(ids) if len(ids) <= _SHORT else self._merge_long(ids)

    def _merge_short(self, ids: list[int]) -> list[int]:
        """Apply merges by rank: find the lowest-rank adjacent pair (leftmost on ties), fuse it, repeat."""
        table = self._merge_table
        while len(ids) > 1:
            best_rank, best_i, best_new = None, -1, -1
            for i in range(len(ids) - 1):
                hit = table.get((ids[i], ids[i + 1]))
                if hit is not None and (best_rank is None or hit[0] < best_rank):
                    best_rank, best_i, best_new = hit[0], i, hit[1]
            if best_rank is None:
                break
            ids[best_i : best_i + 2] = [best_new]
        return ids

    def _merge_long(self, ids: list[int]) -> list[int]:
        """The same merges in O(n log n): a heap of (rank, position) over a linked list of symbols.

        Scanning the whole piece for every merge costs O(n^2); a long run of spaces or a
        minified file would make that quadratic. Stale heap entries are skipped when popped.
        """
        table = self._merge_table
        n = len(ids)
        symbol = list(ids)
        nxt = [*range(1, n), -1]
        prv = [*range(-1, n - 1)]
        alive = [True] * n
        heap = [(hit[0], i, hit[1]) for i in range(n - 1) if (hit := table.get((ids[i], ids[i + 1])))]
        heapq.heapify(heap)
        while heap:
            rank, i, new = heapq.heappop(heap)
            j = nxt[i]
            if not alive[i] or j == -1:
                continue
            hit = table.get((symbol[i], symbol[j]))
            if hit is None or hit[1] != new:  # the pair at i changed since this entry was pushed
                continue
            symbol[i], alive[j] = new, False
            nxt[i] = nxt[j]
            if nxt[j] != -1:
                prv[nxt[j]] = i
            if prv[i] != -1 and (hit := table.get((symbol[prv[i]], new))):
                heapq.heappush(heap, (hit[0], prv[i], hit[1]))
            if nxt[i] != -1 and (hit := table.get((new, symbol[nxt[i]]))):
                heapq.heappush(heap, (hit[0], i, hit[1]))
        return [symbol[i] for i in range(n) if alive[i]]

    def _stream_cut(self, buffer: str, spaces: str | None = None) -> int:
        """Cut before the last regex piece of the last plain segment: only that piece may still grow."""
        pattern = _split_regex(self.pre_tokenizer)
        if pattern is None or self.normalizer is not None:
            # Only a plain space is safe: a piece after it never gets a prefix space added.
            return super()._stream_cut(buffer, spaces=" ")
        offset, last, last_id = 0, "", None
        for segment, added_id in self._segments(buffer):
            offset, last, last_id = offset + len(last), segment, added_id
        if last_id is not None:
            return offset + len(last)
        matches = list(pattern.finditer(last))
        # Before the last piece, unless the text before it splits otherwise on its own: in
        # "\r\nthe", "\s+(?!\S)" gives "\r" then "\n", but "\r\n" alone is one piece.
        for k in range(len(matches) - 1, 0, -1):
            start = matches[k].start()
            if pattern.findall(last[:start]) == [m.group() for m in matches[:k]]:
                return offset + start
        return offset

    # ------------------------------------------------------------------ io

    def _model_vocab(self) -> dict[str, int]:
        return self.vocab

    def _model_to_dict(self) -> dict[str, Any]:
        return {
            "type": "BPE",
            "dropout": None,
            "unk_token": self.model_unk_token,
            "continuing_subword_prefix": self.continuing_subword_prefix,
            "end_of_word_suffix": self.end_of_word_suffix,
            "fuse_unk": self.fuse_unk,
            "byte_fallback": self.byte_fallback,
            "ignore_merges": self.ignore_merges,
            "vocab": self.vocab,
            "merges": [list(m) for m in self.merges],
        }


def _byte_level_pre_tokenizer(pattern: str) -> PreTokenizer:
    """GPT-2's ByteLevel pre-tokenizer, or a regex Split followed by ByteLevel for other patterns."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; choose one of {sorted(PATTERNS)}")
    if pattern == "gpt2":
        return ByteLevel(add_prefix_space=False)
    split = Split({"type": "Split", "pattern": {"Regex": PATTERNS[pattern]}, "behavior": "Isolated", "invert": False})
    return PreTokenizerSequence(
        {"type": "Sequence"}, [split, ByteLevel(add_prefix_space=False, use_regex=False)]
    )


def _split_regex(pre_tokenizer: PreTokenizer | None) -> Any:
    """The regex that cuts pieces, for the streaming cut; None when it is not a plain regex split."""
    if isinstance(pre_tokenizer, ByteLevel) and pre_tokenizer.use_regex and not pre_tokenizer.add_prefix_space:
        return pre_tokenizer.regex
    if isinstance(pre_tokenizer, PreTokenizerSequence) and len(pre_tokenizer.parts) == 2:
        split, byte_level = pre_tokenizer.parts
        if isinstance(split, Split) and split.behavior == "Isolated" and isinstance(byte_level, ByteLevel):
            if not byte_level.use_regex and not byte_level.add_prefix_space:
                return split.regex
    return None
