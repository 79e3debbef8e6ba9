"""WordPiece (BERT): greedy longest-match-first, with ``##`` marking a piece inside a word.

After BERT's normalizer (lower-case, strip accents, space out CJK) and pre-tokenizer (split on
whitespace, punctuation alone), each word is cut from the left by the longest vocabulary entry
that fits; later pieces must be in the vocabulary with the ``##`` prefix::

    "unaffable"  ->  "un" + "##aff" + "##able"

A word with any part that matches nothing becomes ``[UNK]`` as a whole, and so does a word
longer than ``max_input_chars_per_word`` characters.

>>> tok = WordPieceTokenizer.bert({"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "un": 4, "##aff": 5, "##able": 6})
>>> tok.encode("Unaffable")
[2, 4, 5, 6, 3]
>>> tok.decode([2, 4, 5, 6, 3], skip_special_tokens=True)
'unaffable'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import AddedToken, Tokenizer
from .normalize import BertNormalizer, Normalizer
from .pretokenize import BertPreTokenizer, PreTokenizer
from .processors import Decoder, PostProcessor, TemplateProcessing, WordPieceDecoder

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class WordPieceTokenizer(Tokenizer):
    """A WordPiece model; ``WordPieceTokenizer.bert(vocab)`` builds BERT's whole pipeline."""

    model_input_names = ("input_ids", "token_type_ids", "attention_mask")

    def __init__(
        self,
        vocab: dict[str, int],
        *,
        unk_token: str = "[UNK]",
        continuing_subword_prefix: str = "##",
        max_input_chars_per_word: int = 100,
        normalizer: Normalizer | None = None,
        pre_tokenizer: PreTokenizer | None = None,
        post_processor: PostProcessor | None = None,
        decoder: Decoder | None = None,
        added_tokens: Sequence[AddedToken] = (),
    ) -> None:
        super().__init__(normalizer, pre_tokenizer, post_processor, decoder, added_tokens)
        if unk_token not in vocab:
            raise ValueError(f"the unknown token {unk_token!r} is not in the vocabulary")
        self.vocab = dict(vocab)
        # The model's own unknown token, for a word it cannot cut; transformers' named ``unk_token``
        # is a separate attribute of the base class (``bert()`` sets it to the same token).
        self.model_unk_token = unk_token
        self.unk_id = vocab[unk_token]
        self.prefix = continuing_subword_prefix
        self.max_input_chars_per_word = max_input_chars_per_word
        # No vocabulary entry is longer than this, so longer candidates need not be looked up.
        self._longest = max((len(t) for t in vocab), default=1)

    @classmethod
    def bert(cls, vocab: dict[str, int], lowercase: bool = True, strip_accents: bool | None = None) -> WordPieceTokenizer:
        """BERT's pipeline around ``vocab`` (as ``vocab.txt`` alone implies)."""
        added = [AddedToken(t, vocab[t]) for t in BERT_SPECIAL_TOKENS if t in vocab]
        tok = cls(
            vocab,
            normalizer=BertNormalizer(lowercase=lowercase, strip_accents=strip_accents),
            pre_tokenizer=BertPreTokenizer(),
            post_processor=TemplateProcessing.bert(vocab["[CLS]"], vocab["[SEP]"]),
            decoder=WordPieceDecoder(),
            added_tokens=added,
        )
        # The named special tokens that transformers' BertTokenizer has, where the vocabulary has them.
        for name, token in [("unk_token", "[UNK]"), ("sep_token", "[SEP]"), ("pad_token", "[PAD]"),
                            ("cls_token", "[CLS]"), ("mask_token", "[MASK]")]:  # fmt: skip
            setattr(tok, name, token if token in vocab else None)
        return tok

    def _encode_piece(self, word: str) -> list[int]:
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_id]
        vocab, ids, start, n = self.vocab, [], 0, len(word)
        while start < n:
            # Try the longest candidate first, shrinking from the right until one is in the vocabulary.
            end = min(n, start + self._longest)
            found = None
            while end > start:
                candidate = word[start:end] if start == 0 else self.prefix + word[start:end]
                found = vocab.get(candidate)
                if found is not None:
                    break
                end -= 1
            if found is None:
                return [self.unk_id]  # one unmatchable part makes the whole word unknown
            ids.append(found)
            start = end
        return ids

    def _model_vocab(self) -> dict[str, int]:
        return self.vocab

    def _model_to_dict(self) -> dict[str, Any]:
        return {
            "type": "WordPiece",
            "unk_token": self.model_unk_token,
            "continuing_subword_prefix": self.prefix,
            "max_input_chars_per_word": self.max_input_chars_per_word,
            "vocab": self.vocab,
        }
