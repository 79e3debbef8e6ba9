"""Unigram (SentencePiece, as in T5): the most probable segmentation, found by Viterbi.

Every piece has a log-probability (its score). A segmentation's score is the sum of its pieces'
scores, and the tokenizer picks the best one with dynamic programming over the characters:
``best[j]`` is the best score of any segmentation of the first ``j`` characters, built from
``best[i] + score(text[i:j])``. With scores ``{"▁a": -1, "b": -2, "▁ab": -2.5}``::

    "▁ab":   "▁a" + "b" = -3.0   vs   "▁ab" = -2.5   ->   ["▁ab"]

A character that no piece covers costs ``min score - 10`` and becomes the unknown token
(consecutive unknown characters are fused into one).

>>> tok = UnigramTokenizer([("<unk>", 0.0), ("▁a", -1.0), ("b", -2.0), ("▁ab", -2.5)], unk_id=0)
>>> tok.encode("ab")
[3]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .base import AddedToken, Tokenizer, check_text
from .normalize import Normalizer
from .pretokenize import Metaspace, PreTokenizer
from .processors import Decoder, MetaspaceDecoder, PostProcessor

UNK_PENALTY = 10.0  # how much worse than the rarest piece an unknown character scores


class UnigramTokenizer(Tokenizer):
    """A Unigram model: ``pieces`` is the list of ``(piece, score)``; a piece's id is its index."""

    _stream_spaces = " "  # only a real space is a boundary for Metaspace (which prepends ``▁``)

    def __init__(
        self,
        pieces: Sequence[tuple[str, float]],
        unk_id: int | None = 0,
        *,
        byte_fallback: bool = False,
        normalizer: Normalizer | None = None,
        pre_tokenizer: PreTokenizer | None = None,
        post_processor: PostProcessor | None = None,
        decoder: Decoder | None = None,
        added_tokens: Sequence[AddedToken] = (),
    ) -> None:
        super().__init__(
            normalizer,
            Metaspace() if pre_tokenizer is None else pre_tokenizer,
            post_processor,
            MetaspaceDecoder() if decoder is None else decoder,
            added_tokens,
        )
        self.pieces = [(str(p), float(s)) for p, s in pieces]
        n = len(self.pieces)
        is_index = isinstance(unk_id, int) and not isinstance(unk_id, bool) and 0 <= unk_id < n
        if unk_id is not None and not is_index:
            raise ValueError(f"unk_id {unk_id!r} is outside the vocabulary of {n} pieces "
                             f"(an int in 0..{n - 1})")  # fmt: skip
        self.unk_id = unk_id
        self.byte_fallback = byte_fallback
        self.vocab = {p: i for i, (p, _) in enumerate(self.pieces)}
        self.scores = [s for _, s in self.pieces]
        self._longest = max((len(p) for p, _ in self.pieces), default=1)
        self.unk_score = min(self.scores, default=0.0) - UNK_PENALTY

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        special_tokens: Sequence[str] = ("<unk>",),
        *,
        show_progress: bool = True,
        **options: Any,
    ) -> UnigramTokenizer:
        """Train from scratch with EM and pruning; see ``unigram_train.py``. The first special token is unknown."""
        from .unigram_train import train_unigram

        pre_tokenizer = Metaspace()
        texts = (check_text(text, f"texts[{i}]") for i, text in enumerate(texts))
        pieces = train_unigram(texts, pre_tokenizer.split, vocab_size, list(special_tokens), show_progress, **options)
        added = [AddedToken(t, i) for i, t in enumerate(special_tokens)]
        return cls(pieces, unk_id=0 if special_tokens else None, pre_tokenizer=pre_tokenizer, added_tokens=added)

    def segment(self, text: str) -> list[str]:
        """The best segmentation of one pre-tokenized piece (Viterbi), as strings."""
        n = len(text)
        vocab, scores = self.vocab, self.scores
        # best_score[j], best_start[j], best_id[j]: the best segmentation of text[:j] ends with
        # the piece text[best_start[j]:j], whose id is best_id[j].
        best_score = [0.0] + [0.0] * n
        best_start: list[int | None] = [0] + [None] * n
        best_id = [-1] * (n + 1)
        for start in range(n):
            here = best_score[start]
            covered_one_char = False
            for end in range(start + 1, min(n, start + self._longest) + 1):
                piece_id = vocab.get(text[start:end])
                if piece_id is None:
                    continue
                score = here + scores[piece_id]
                # Strictly better only: on a tie the segmentation found first (shorter end piece, earlier start) wins.
                if best_start[end] is None or score > best_score[end]:
                    best_score[end], best_start[end], best_id[end] = score, start, piece_id
                covered_one_char = covered_one_char or end == start + 1
            if not covered_one_char:  # no piece for this character: allow the unknown token here
                score = here + self.unk_score
                if best_start[start + 1] is None or score > best_score[start + 1]:
                    best_score[start + 1], best_start[start + 1], best_id[start + 1] = score, start, -2
        # Walk back from the end; runs of unknown characters become one piece.
        out: list[str] = []
        unknown_run = ""
        end = n
        while end > 0:
            start = best_start[end]
            assert start is not None
            if best_id[end] == -2 or (self.unk_id is not None and best_id[end] == self.unk_id):
                unknown_run = text[start:end] + unknown_run
            else:
                if unknown_run:
                    out.append(unknown_run)
                    unknown_run = ""
                out.append(text[start:end])
            end = start
        if unknown_run:
            out.append(unknown_run)
        return out[::-1]

    def _encode_piece(self, piece: str) -> list[int]:
        ids: list[int] = []
        for token in self.segment(piece):
            piece_id = self.vocab.get(token)
            if piece_id is not None:
                ids.append(piece_id)
                continue
            if self.byte_fallback:
                byte_ids = [self.vocab.get(f"<0x{b:02X}>") for b in token.encode("utf-8")]
                if all(i is not None for i in byte_ids):
                    ids += byte_ids  # type: ignore[arg-type]
                    continue
            if self.unk_id is None:
                raise ValueError(f"{token!r} is not in the vocabulary and this Unigram model has no unk_id")
            ids.append(self.unk_id)
        return ids

    def _piece_tokens(self, piece: str) -> list[str]:
        """The token strings of one piece, as ``tokenize`` shows them.

        Like ``tokenizers``, an unknown run keeps its own text (``"ΩΩ"``), though its id is ``unk_id``.
        """
        tokens: list[str] = []
        for token in self.segment(piece):
            byte_tokens = [f"<0x{b:02X}>" for b in token.encode("utf-8")]
            if token not in self.vocab and self.byte_fallback and all(b in self.vocab for b in byte_tokens):
                tokens += byte_tokens
            else:
                tokens.append(token)
        return tokens

    def _model_vocab(self) -> dict[str, int]:
        return self.vocab

    def _model_to_dict(self) -> dict[str, Any]:
        return {
            "type": "Unigram",
            "unk_id": self.unk_id,
            "vocab": [[p, s] for p, s in self.pieces],
            "byte_fallback": self.byte_fallback,
        }
