"""What every tokenizer shares: the pipeline, added tokens, batching, streaming, saving, transformers' surface.

The pipeline is the one of Hugging Face ``tokenizers``::

    text --split on added tokens--> segments --normalize--> --pre-tokenize--> pieces
         --model (BPE / WordPiece / Unigram)--> ids --post-process--> [CLS] ids [SEP]

Subclasses supply only the model: ``_encode_piece(piece) -> ids`` and the vocabulary.
Pieces repeat a lot in real text (``" the"``), so their ids are cached.

>>> tok = load_tokenizer("gpt2")                      # doctest: +SKIP
>>> tok(["Hi", "Hello world"], padding=True, return_tensors="pt")["attention_mask"]  # doctest: +SKIP
tensor([[1, 0], [1, 1]])
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import regex

from .normalize import Normalizer
from .pretokenize import Metaspace, PreTokenizer
from .processors import Decoder, PostProcessor

_CACHE_LIMIT = 200_000  # pieces; past this the cache stops growing, so memory stays bounded
_SURROGATE = regex.compile(r"[\ud800-\udfff]")
NO_LIMIT = int(1e30)  # what transformers writes as model_max_length when there is no limit

# transformers' named special tokens, in its order (``SPECIAL_TOKENS_ATTRIBUTES``).
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class TokenizerFileError(ValueError):
    """A tokenizer file that cannot be used; the message names the file and the fault."""


@dataclass
class AddedToken:
    """A token matched whole in the raw text before any other step (``<|endoftext|>``, ``[CLS]``)."""

    content: str
    id: int
    special: bool = True
    single_word: bool = False
    lstrip: bool = False
    rstrip: bool = False
    normalized: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {"id": d.pop("id"), "content": d.pop("content"), **d}


def check_text(text: Any, name: str = "text") -> str:
    """Every text that comes in passes here: a ``str`` of real characters, or an error that says why.

    A lone surrogate (``"\\ud800"``) is half of a UTF-16 pair, not a character: it has no UTF-8
    bytes, so no tokenizer can give it ids. ``tokenizers`` refuses it too (with a ``TypeError``);
    we say where it is and how to clean the text.
    """
    if not isinstance(text, str):
        hint = ""
        if isinstance(text, (bytes, bytearray)):
            hint = ": decode the bytes first, text.decode('utf-8')"
        elif isinstance(text, (list, tuple)):
            hint = ": for a batch of texts, call the tokenizer itself, tokenizer(texts)"
        raise TypeError(f"{name} must be a str, got {type(text).__name__}{hint}")
    if not text.isascii() and (m := _SURROGATE.search(text)):
        raise ValueError(
            f"{name} has a lone surrogate U+{ord(m.group()):04X} at index {m.start()}: half of a UTF-16 "
            "pair, not a character, so it has no UTF-8 bytes to tokenize. Clean the text first, e.g. "
            "text.encode('utf-16', 'surrogatepass').decode('utf-16', 'replace') joins split pairs "
            "and turns the rest into U+FFFD"
        )
    return text


def check_texts(texts: Any, name: str) -> list[str]:
    """A batch: one ``str``, or a list (or tuple) of them; each is checked by ``check_text``."""
    if isinstance(texts, str):
        return [check_text(texts, name)]
    if not isinstance(texts, (list, tuple)):
        raise TypeError(f"{name} must be a str or a list of str, got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if isinstance(t, (list, tuple)):
            raise TypeError(f"{name}[{i}] is a {type(t).__name__}: each text of a batch is one str "
                            "(words split beforehand are not supported: join them with spaces)")  # fmt: skip
    return [check_text(t, f"{name}[{i}]") for i, t in enumerate(texts)]


def check_ids(ids: Any, name: str = "ids") -> list[int]:
    """Token ids as a list of Python ints; a ``TypeError`` that names the culprit for anything else.

    Accepted: a list or tuple of ints (numpy integers and 0-d integer tensors included), or a 1-D
    integer tensor or array. Floats are refused rather than rounded: ``1.7`` is no token's id.
    """
    if hasattr(ids, "ndim") and hasattr(ids, "tolist"):  # a torch tensor or a numpy array
        if ids.ndim != 1:
            hint = "use batch_decode for a batch" if ids.ndim > 1 else "wrap a single id in a list"
            raise TypeError(f"{name} must be 1-D, got {ids.ndim}-D (shape {tuple(ids.shape)}): {hint}")
        values, dtype = ids.tolist(), f" ({name} has dtype {ids.dtype})"
    elif isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise TypeError(
            f"{name} must be a sequence of int token ids, got {type(ids).__name__}"
            + (": wrap a single id in a list" if isinstance(ids, numbers.Number) else "")
        )
    else:
        values, dtype = ids, ""
    out = []
    for position, i in enumerate(values):
        if getattr(i, "ndim", None) == 0 and hasattr(i, "item"):  # a numpy scalar or a 0-d tensor
            i = i.item()
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(
                f"{name}[{position}] is {i!r}, a {type(i).__name__}{dtype}: token ids must be integers. "
                "If these really are ids, convert them first (ids.long() for a tensor, [int(i) for i in ids])"
            )
        out.append(int(i))
    return out


class BatchEncoding(dict):
    """The dict ``__call__`` returns; ``enc.input_ids`` works as well as ``enc["input_ids"]``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Tokenizer:
    """Base class. Subclasses implement ``_encode_piece``, ``_model_vocab`` and ``_model_to_dict``."""

    model_input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    _stream_spaces = " \t\n\r"  # characters that every pre-tokenizer treats as a boundary

    def __init__(
        self,
        normalizer: Normalizer | None = None,
        pre_tokenizer: PreTokenizer | None = None,
        post_processor: PostProcessor | None = None,
        decoder: Decoder | None = None,
        added_tokens: Sequence[AddedToken] = (),
    ) -> None:
        self.normalizer = normalizer
        self.pre_tokenizer = pre_tokenizer
        self.post_processor = post_processor
        self.decoder = decoder
        self.padding_side = "right"
        self.truncation_side = "right"
        self.model_max_length: int | None = None
        # transformers' named special tokens; None where this tokenizer has none of that kind.
        self.bos_token: str | None = None
        self.eos_token: str | None = None
        self.unk_token: str | None = None
        self.sep_token: str | None = None
        self.pad_token: str | None = None
        self.cls_token: str | None = None
        self.mask_token: str | None = None
        self._cache: dict[str, tuple[int, ...]] = {}
        self.added_tokens: list[AddedToken] = []
        self.add_tokens(added_tokens)

    # ------------------------------------------------------------------ the model (subclasses)

    def _encode_piece(self, piece: str) -> list[int]:
        """Ids of one pre-tokenized piece."""
        raise NotImplementedError

    def _model_vocab(self) -> dict[str, int]:
        raise NotImplementedError

    def _model_to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    # ------------------------------------------------------------------ vocabulary

    def add_tokens(self, tokens: Iterable[AddedToken]) -> None:
        """Register tokens that are matched whole in the raw text (longest first)."""
        self.added_tokens += list(tokens)
        self._reverse: dict[int, str] | None = None  # the id -> token map is rebuilt when next asked
        self._added_by_id = {t.id: t for t in self.added_tokens}
        self._added_by_content = {t.content: t for t in self.added_tokens}
        alternatives = []
        for i, t in enumerate(sorted(self.added_tokens, key=lambda t: -len(t.content))):
            body = regex.escape(t.content)
            if t.single_word:
                body = rf"(?<!\w){body}(?!\w)"
            left, right = (r"\s*" if t.lstrip else ""), (r"\s*" if t.rstrip else "")
            alternatives.append(f"(?P<t{i}>{left}{body}{right})")
        self._added_order = sorted(self.added_tokens, key=lambda t: -len(t.content))
        self._added_regex = regex.compile("|".join(alternatives)) if alternatives else None

    def get_vocab(self) -> dict[str, int]:
        vocab = dict(self._model_vocab())
        vocab.update({t.content: t.id for t in self.added_tokens})
        return vocab

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included: the size an embedding table needs."""
        vocab = self.get_vocab()
        return max(vocab.values()) + 1 if vocab else 0

    def __len__(self) -> int:
        return self.vocab_size

    def token_to_id(self, token: str) -> int | None:
        added = self._added_by_content.get(token)  # an added token wins, as in get_vocab()
        return added.id if added is not None else self._model_vocab().get(token)

    def id_to_token(self, id: int) -> str | None:
        return self._id_to_token_map().get(id)

    def _id_to_token_map(self) -> dict[int, str]:
        if getattr(self, "_reverse", None) is None:
            self._reverse = {i: t for t, i in self._model_vocab().items()}
            self._reverse.update({t.id: t.content for t in self.added_tokens})
        return self._reverse

    # ------------------------------------------------------------------ named special tokens (transformers)

    def _named_token_id(self, name: str) -> int | None:
        token = getattr(self, name)
        return None if token is None else self.token_to_id(token)

    @property
    def bos_token_id(self) -> int | None:
        return self._named_token_id("bos_token")

    @property
    def eos_token_id(self) -> int | None:
        return self._named_token_id("eos_token")

    @property
    def unk_token_id(self) -> int | None:
        return self._named_token_id("unk_token")

    @property
    def sep_token_id(self) -> int | None:
        return self._named_token_id("sep_token")

    @property
    def pad_token_id(self) -> int | None:
        return self._named_token_id("pad_token")

    @property
    def cls_token_id(self) -> int | None:
        return self._named_token_id("cls_token")

    @property
    def mask_token_id(self) -> int | None:
        return self._named_token_id("mask_token")

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """The named special tokens that are set: ``{"unk_token": "[UNK]", "pad_token": "[PAD]", ...}``."""
        return {name: getattr(self, name) for name in SPECIAL_TOKEN_NAMES if getattr(self, name) is not None}

    @property
    def all_special_tokens(self) -> list[str]:
        """The named special tokens, then every other added token marked special; each once."""
        named = list(self.special_tokens_map.values())
        return list(dict.fromkeys(named + [t.content for t in self.added_tokens if t.special]))

    @property
    def all_special_ids(self) -> list[int]:
        ids = (self.token_to_id(token) for token in self.all_special_tokens)
        return [i for i in ids if i is not None]

    # ------------------------------------------------------------------ tokens and ids (transformers)

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False) -> list[str]:
        """The token strings of ``text`` (and ``pair``), as transformers' ``tokenize`` gives them.

        Like transformers, it adds no special tokens unless asked. A token is the vocabulary's
        string for its id, with two exceptions copied from ``tokenizers``: an added token matched
        with ``lstrip``/``rstrip`` keeps the spaces it swallowed (``" <mask>"``), and a Unigram
        unknown run keeps its own text (``"ΩΩ"``, not ``"<unk>"``).

        Args:
            text: one string.
            pair: an optional second segment, as in ``tok(text, pair)``.
            add_special_tokens: wrap the tokens as the post-processor says (``[CLS] ... [SEP]``).

        Returns:
            A list of token strings; ``[]`` for the empty string.

        Raises:
            TypeError, ValueError: ``text`` or ``pair`` is not a ``str`` of real characters (``check_text``).

        >>> tok.tokenize("Hello world")                         # doctest: +SKIP
        ['Hello', 'Ġworld']
        """
        tokens = self._text_tokens(check_text(text))
        pair_tokens = None if pair is None else self._text_tokens(check_text(pair, "pair"))
        if not add_special_tokens or self.post_processor is None:
            return tokens + (pair_tokens or [])
        # The post-processor places ids; give it stand-ins -1, -2, ... for our tokens and map them back.
        own = tokens + (pair_tokens or [])
        stand_ins = [-1 - k for k in range(len(own))]
        b = None if pair_tokens is None else stand_ins[len(tokens) :]
        ids, _ = self.post_processor.process(stand_ins[: len(tokens)], b)
        return [own[-1 - i] if i < 0 else self._id_to_token_map()[i] for i in ids]

    def _text_tokens(self, text: str) -> list[str]:
        """``_encode_text``, but the token strings (no cache: this is for reading, not for speed)."""
        tokens: list[str] = []
        for position, (segment, added_id) in enumerate(self._segments(text)):
            if added_id is not None:
                tokens.append(segment)  # with any spaces that lstrip / rstrip took, as tokenizers shows it
                continue
            for piece in self._pieces(segment, first=position == 0):
                tokens += self._piece_tokens(piece)
        return tokens

    def _piece_tokens(self, piece: str) -> list[str]:
        """The token strings of one pre-tokenized piece; Unigram overrides it for unknown runs."""
        reverse = self._id_to_token_map()
        return [reverse[i] for i in self._encode_piece(piece)]

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | None | list[int | None]:
        """The id of a token string (``str`` in, ``int`` out) or of each token of a list.

        A token that is not in the vocabulary gets ``unk_token_id``, the id of the named
        ``unk_token``; where that is not set it gets ``None``, as in transformers (so a
        ``PreTrainedTokenizerFast`` built from a bare ``tokenizer.json`` gives ``None`` too).

        Args:
            tokens: a token string, or a list (or tuple) of them.

        Returns:
            An ``int`` (or ``None``) for a string, a list of them for a list.

        Raises:
            TypeError: ``tokens`` is not a ``str`` or a list of ``str`` (the message names the culprit).

        >>> bert.convert_tokens_to_ids(["[CLS]", "hello", "qwxz"])  # doctest: +SKIP
        [101, 7592, 100]
        """
        if isinstance(tokens, str):
            return self._token_to_id_or_unk(tokens)
        if not isinstance(tokens, (list, tuple)):
            raise TypeError(f"tokens must be a str or a list of str, got {type(tokens).__name__}"
                            + (": for ids, use convert_ids_to_tokens" if isinstance(tokens, numbers.Number) else ""))  # fmt: skip
        for position, token in enumerate(tokens):
            if not isinstance(token, str):
                raise TypeError(f"tokens[{position}] is {token!r}, a {type(token).__name__}: tokens are strings "
                                "(for ids, use convert_ids_to_tokens)")  # fmt: skip
        return [self._token_to_id_or_unk(token) for token in tokens]

    def _token_to_id_or_unk(self, token: str) -> int | None:
        i = self.token_to_id(token)
        return self.unk_token_id if i is None else i

    def convert_ids_to_tokens(
        self, ids: int | Iterable[int], skip_special_tokens: bool = False
    ) -> str | None | list[str | None]:
        """The token string of an id (``int`` in, ``str`` out) or of each id of a sequence.

        As in transformers, an id past the vocabulary gives ``None`` (in the list, at its place),
        and ``skip_special_tokens`` drops special ids from a list but not a single id.

        Differences from transformers, where its answer is an accident of the Rust binding:
        a negative id raises our ``ValueError`` (transformers: ``OverflowError``, "number too
        small to fit in target type"); an id of 2**32 or more gives ``None`` like any other id
        past the vocabulary (transformers: ``OverflowError``); floats, bools and strings are a
        ``TypeError`` (transformers turns ``[1.7]`` into ``[1]`` and ``"5"`` into the token of id 5);
        a numpy integer or 0-d tensor counts as one id. ``skip_special_tokens`` skips
        ``all_special_ids``, which holds every added token marked special; transformers skips
        only its named special tokens and ``additional_special_tokens``, so a
        ``PreTrainedTokenizerFast`` built from a bare ``tokenizer.json`` skips nothing. After
        ``save_pretrained`` the two agree, since the config lists the others as additional.

        Args:
            ids: one id, or a list (tuple, 1-D tensor or array) of ids.
            skip_special_tokens: leave out the ids of ``all_special_ids`` (lists only).

        Returns:
            A ``str`` (or ``None``) for one id, a list of them for a sequence.

        Raises:
            TypeError: an id that is not an integer, or ``ids`` of the wrong kind (``check_ids``).
            ValueError: a negative id.

        >>> tok.convert_ids_to_tokens([15496, 995])              # doctest: +SKIP
        ['Hello', 'Ġworld']
        """
        reverse = self._id_to_token_map()
        if isinstance(ids, numbers.Number) or getattr(ids, "ndim", None) == 0:
            value = ids.item() if hasattr(ids, "item") else ids  # a numpy scalar or a 0-d tensor
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"ids is {ids!r}, a {type(ids).__name__}: a token id is an integer "
                                "(or pass a list of them)")  # fmt: skip
            return reverse.get(self._check_not_negative(int(value), "ids"))
        values = check_ids(ids)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [reverse.get(self._check_not_negative(i, f"ids[{p}]")) for p, i in enumerate(values) if i not in skip]

    def _check_not_negative(self, i: int, name: str) -> int:
        if i < 0:
            raise ValueError(f"{name} is {i}: token ids are rows of the embedding table, 0..{self.vocab_size - 1}, "
                             "never negative")  # fmt: skip
        return i

    # ------------------------------------------------------------------ encoding

    def _segments(self, text: str) -> Iterator[tuple[str, int | None]]:
        """Split on added tokens: yields ``(segment, None)`` for plain text and ``(token, id)``."""
        if self._added_regex is None:
            yield text, None
            return
        last = 0
        for m in self._added_regex.finditer(text):
            if m.start() > last:
                yield text[last : m.start()], None
            yield m.group(), self._added_order[int(m.lastgroup[1:])].id
            last = m.end()
        if last < len(text):
            yield text[last:], None

    def _pieces(self, segment: str, first: bool) -> list[str]:
        if self.normalizer is not None:
            segment = self.normalizer(segment)
        if self.pre_tokenizer is None:
            return [segment] if segment else []
        if isinstance(self.pre_tokenizer, Metaspace):
            return self.pre_tokenizer.split(segment, first=first)
        return self.pre_tokenizer.split(segment)

    def _encode_text(self, text: str) -> list[int]:
        """Ids of ``text`` without the post-processor's special tokens."""
        ids: list[int] = []
        cache = self._cache
        for position, (segment, added_id) in enumerate(self._segments(text)):
            if added_id is not None:
                ids.append(added_id)
                continue
            for piece in self._pieces(segment, first=position == 0):
                piece_ids = cache.get(piece)
                if piece_ids is None:
                    piece_ids = tuple(self._encode_piece(piece))
                    if len(cache) < _CACHE_LIMIT:
                        cache[piece] = piece_ids
                ids += piece_ids
        return ids

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """The ids of ``text``; ``add_special_tokens`` wraps them as the post-processor says.

        Raises:
            TypeError: ``text`` is not a ``str`` (for a batch, call the tokenizer itself).
            ValueError: ``text`` has a lone surrogate, which no tokenizer can encode.
        """
        ids = self._encode_text(check_text(text))
        if add_special_tokens and self.post_processor is not None:
            ids, _ = self.post_processor.process(ids)
        return ids

    def encode_iterable(self, chunks: Iterable[str]) -> Iterator[int]:
        """Stream the ids of a text given in chunks (the lines of an open file, say).

        Yields exactly ``encode("".join(chunks), add_special_tokens=False)`` while holding only
        one chunk and a short carry-over: the tail after the last safe cut point, which may still
        merge with the next chunk. Added tokens must not straddle two chunks.
        """
        carry = ""
        for number, chunk in enumerate(chunks):
            buffer = carry + check_text(chunk, f"chunk {number}")
            cut = self._stream_cut(buffer)
            if cut > 0:
                yield from self._encode_text(buffer[:cut])
            carry = buffer[cut:]
        if carry:
            yield from self._encode_text(carry)

    def _stream_cut(self, buffer: str, spaces: str | None = None) -> int:
        """Where ``buffer`` can be cut without changing its ids: before its last run of whitespace.

        Right for pre-tokenizers that split at whitespace (BERT, Metaspace); byte-level BPE
        overrides it because GPT-2's pattern glues a space to the word after it. The character
        before the cut must stay itself when normalized: one that becomes a space or nothing
        (a tab, a control character) could join the run after it (``Replace(" {2,}", " ")``).
        """
        spaces = spaces or self._stream_spaces
        i = len(buffer)
        while i > 0:
            while i > 0 and buffer[i - 1] not in spaces:  # step back over an unfinished word
                i -= 1
            while i > 0 and buffer[i - 1] in spaces:  # and over the whitespace before it
                i -= 1
            if i == 0 or self._ends_a_word(buffer[i - 1]):
                return i
        return 0

    def _ends_a_word(self, char: str) -> bool:
        """Whether ``char`` normalizes to something that ends in a character other than whitespace."""
        if self.normalizer is None:
            return True
        normalized = self.normalizer(char)
        return bool(normalized) and not normalized[-1].isspace()

    # ------------------------------------------------------------------ decoding

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids``. Unknown ids are skipped; bytes that are not UTF-8 become U+FFFD.

        ``ids`` is a list of ints or a 1-D integer tensor; anything else is a ``TypeError``.
        """
        return self._decode(check_ids(ids), skip_special_tokens)

    def batch_decode(self, sequences: Iterable[Iterable[int]], skip_special_tokens: bool = False) -> list[str]:
        """The text of each sequence: a list of id lists, or a 2-D integer tensor of shape ``(B, T)``."""
        if getattr(sequences, "ndim", 2) != 2:
            raise TypeError(f"sequences must be 2-D (B, T), got {sequences.ndim}-D: use decode for one")
        texts = []
        for b, ids in enumerate(sequences):
            if isinstance(ids, numbers.Number):
                raise TypeError(f"sequences[{b}] is a single id, {ids!r}: batch_decode takes a list of "
                                "sequences; use decode for one sequence")  # fmt: skip
            texts.append(self._decode(check_ids(ids, f"sequences[{b}]"), skip_special_tokens))
        return texts

    def _decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        reverse = self._id_to_token_map()
        tokens = []
        for i in ids:
            token = reverse.get(i)
            if token is None:
                continue
            if skip_special_tokens and i in self._added_by_id and self._added_by_id[i].special:
                continue
            tokens.append(token)
        if self.decoder is None:
            return " ".join(tokens)
        return self.decoder(tokens)

    # ------------------------------------------------------------------ batching (transformers semantics)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 0 if self.post_processor is None else self.post_processor.num_special_tokens_to_add(pair)

    def _truncate(self, ids: list[int], n: int) -> list[int]:
        return ids[:n] if self.truncation_side == "right" else ids[len(ids) - n :]

    def _truncate_pair(
        self, a: list[int], b: list[int] | None, max_length: int, strategy: str
    ) -> tuple[list[int], list[int] | None]:
        budget = max_length - self.num_special_tokens_to_add(b is not None)
        if budget < 0:
            raise ValueError(
                f"max_length={max_length} leaves no room: the special tokens alone take {max_length - budget}"
            )
        if b is None:
            return self._truncate(a, min(len(a), budget)), None
        if strategy in ("only_first", "only_second"):
            to_remove = len(a) + len(b) - budget
            if to_remove <= 0:
                return a, b
            target = a if strategy == "only_first" else b
            if len(target) <= to_remove:
                raise ValueError(
                    f"truncation={strategy!r}: that sequence has {len(target)} tokens, too few to remove the "
                    f"{to_remove} needed for max_length={max_length}; use truncation='longest_first'"
                )
            cut = self._truncate(target, len(target) - to_remove)
            return (cut, b) if strategy == "only_first" else (a, cut)
        # longest_first, as tokenizers does it: the shorter keeps what it has, up to half the budget.
        n1, n2 = len(a), len(b)
        swapped = n1 > n2
        if swapped:
            n1, n2 = n2, n1
        n2 = n1 if n1 > budget else max(n1, budget - n1)
        if n1 + n2 > budget:
            n1 = budget // 2
            n2 = n1 + budget % 2
        if swapped:
            n1, n2 = n2, n1
        return self._truncate(a, min(n1, len(a))), self._truncate(b, min(n2, len(b)))

    def __call__(
        self,
        text: str | list[str],
        text_pair: str | list[str] | None = None,
        *,
        add_special_tokens: bool = True,
        padding: bool | str = False,
        truncation: bool | str | None = None,
        max_length: int | None = None,
        return_tensors: str | None = None,
        padding_side: str | None = None,
        return_attention_mask: bool = True,
        return_token_type_ids: bool | None = None,
    ) -> BatchEncoding:
        """Encode one text or a batch, as ``transformers``' tokenizers do.

        Args:
            text: a string or a list of strings.
            text_pair: the second segment(s), for models such as BERT that take pairs.
            padding: ``True``/``"longest"`` pads to the longest in the batch, ``"max_length"`` to
                ``max_length``; on the side given by ``padding_side`` (default ``self.padding_side``).
            truncation: ``True``/``"longest_first"``, ``"only_first"`` or ``"only_second"``; when
                ``None``, a given ``max_length`` without padding turns it on, as in transformers.
            return_tensors: ``"pt"`` for ``torch.long`` tensors of shape ``(B, T)``, ``"np"`` for numpy
                ``int64`` arrays of that shape, ``None`` for lists. Both need rows of one length
                (``padding=True``); transformers' ``"np"`` instead makes an array of objects.

        Returns:
            ``input_ids``, ``attention_mask`` and, for models that use them, ``token_type_ids``.
        """
        single = isinstance(text, str)
        texts = check_texts(text, "text")
        pairs: list[str | None]
        if text_pair is None:
            pairs = [None] * len(texts)
        else:
            pairs = list(check_texts(text_pair, "text_pair"))
            if len(pairs) != len(texts):
                raise ValueError(f"got {len(texts)} texts but {len(pairs)} text pairs")

        padding = {True: "longest", False: "do_not_pad"}.get(padding, padding)  # type: ignore[arg-type]
        if truncation is None:
            truncation = max_length is not None and padding == "do_not_pad"
        truncation = {True: "longest_first", False: "do_not_truncate"}.get(truncation, truncation)  # type: ignore[arg-type]
        if max_length is None and (truncation != "do_not_truncate" or padding == "max_length"):
            max_length = self.model_max_length
            if max_length is None and padding == "max_length":
                raise ValueError("padding='max_length' needs max_length= (this tokenizer has no model_max_length)")

        rows = []
        for a_text, b_text in zip(texts, pairs):
            a = self._encode_text(a_text)
            b = None if b_text is None else self._encode_text(b_text)
            if truncation != "do_not_truncate" and max_length is not None:
                a, b = self._truncate_pair(a, b, max_length, truncation)
            if add_special_tokens and self.post_processor is not None:
                ids, type_ids = self.post_processor.process(a, b)
            else:
                ids, type_ids = a + (b or []), [0] * len(a) + [1] * len(b or [])
            rows.append((ids, type_ids))

        want_types = "token_type_ids" in self.model_input_names if return_token_type_ids is None else return_token_type_ids
        out: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "token_type_ids": []}
        target = {"longest": max((len(r[0]) for r in rows), default=0), "max_length": max_length}.get(padding)
        side = padding_side or self.padding_side
        if target is not None and self.pad_token_id is None and any(len(r[0]) < target for r in rows):
            raise ValueError("asked to pad but this tokenizer has no pad token: set tokenizer.pad_token first")
        for ids, type_ids in rows:
            mask = [1] * len(ids)
            n_pad = max(0, (target or 0) - len(ids))
            if n_pad:
                pad_id = self.pad_token_id
                if side == "left":
                    ids, type_ids, mask = [pad_id] * n_pad + ids, [0] * n_pad + type_ids, [0] * n_pad + mask
                else:
                    ids, type_ids, mask = ids + [pad_id] * n_pad, type_ids + [0] * n_pad, mask + [0] * n_pad
            out["input_ids"].append(ids)
            out["attention_mask"].append(mask)
            out["token_type_ids"].append(type_ids)
        if not return_attention_mask:
            del out["attention_mask"]
        if not want_types:
            del out["token_type_ids"]

        if return_tensors not in ("pt", "np", None):
            raise ValueError(f"return_tensors={return_tensors!r} is not supported; use 'pt' (torch), 'np' (numpy) "
                             "or None (lists)")  # fmt: skip
        if return_tensors is not None and len({len(r) for r in out["input_ids"]}) > 1:
            raise ValueError(f"sequences have different lengths: pass padding=True to make a {return_tensors!r} tensor")
        if return_tensors == "pt":
            import torch

            return BatchEncoding({k: torch.tensor(v, dtype=torch.long).reshape(len(v), -1) for k, v in out.items()})
        if return_tensors == "np":
            import numpy as np

            return BatchEncoding({k: np.array(v, dtype=np.int64).reshape(len(v), -1) for k, v in out.items()})
        if single:
            return BatchEncoding({k: v[0] for k, v in out.items()})
        return BatchEncoding(out)

    # ------------------------------------------------------------------ saving

    def to_dict(self) -> dict[str, Any]:
        """The whole tokenizer as a ``tokenizer.json`` document."""

        def dump(part: Any) -> Any:
            return None if part is None else part.to_dict()

        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [t.to_dict() for t in sorted(self.added_tokens, key=lambda t: t.id)],
            "normalizer": dump(self.normalizer),
            "pre_tokenizer": dump(self.pre_tokenizer),
            "post_processor": dump(self.post_processor),
            "decoder": dump(self.decoder),
            "model": self._model_to_dict(),
        }

    def save(self, path: str | Path) -> Path:
        """Write ``tokenizer.json`` (into ``path`` if it is a directory); returns the file written.

        ``tokenizers.Tokenizer.from_file`` loads it and encodes exactly as this tokenizer does.
        A directory also gets the ``tokenizer_config.json`` of ``save_pretrained``, unchecked; use
        ``save_pretrained`` for a directory that transformers will load.
        """
        path = Path(path)
        if path.is_dir() or not path.suffix:
            path.mkdir(parents=True, exist_ok=True)
            config = json.dumps(self._tokenizer_config(), ensure_ascii=False, indent=2)
            (path / "tokenizer_config.json").write_text(config, encoding="utf-8")
            path = path / "tokenizer.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
        return path

    def save_pretrained(self, save_directory: str | Path) -> tuple[str, ...]:
        """Write a directory that ``transformers.AutoTokenizer.from_pretrained`` loads, as transformers does.

        Two files, as transformers 5 writes them (it no longer writes ``special_tokens_map.json``):
        ``tokenizer.json`` (``save``) and ``tokenizer_config.json``, which holds what
        ``tokenizer.json`` cannot: ``model_max_length``, the padding and truncation sides, the
        named special tokens, the other special tokens (as ``additional_special_tokens``) and
        ``model_input_names``. Both transformers and ``load_tokenizer`` read it back.

        Args:
            save_directory: the directory, created if missing.

        Returns:
            The paths written, as strings, as transformers returns them:
            ``(".../tokenizer_config.json", ".../tokenizer.json")``.

        Raises:
            ValueError: a named special token (``eos_token`` ...) that is not an added token marked
                special. transformers would make it one on loading, so text that contains it would
                be split differently there (and a token new to the vocabulary would get a new id).
            NotADirectoryError: ``save_directory`` is a file.

        >>> tok.save_pretrained("my-tokenizer")                 # doctest: +SKIP
        ('my-tokenizer/tokenizer_config.json', 'my-tokenizer/tokenizer.json')
        >>> AutoTokenizer.from_pretrained("my-tokenizer")       # doctest: +SKIP
        """
        directory = Path(save_directory)
        if directory.exists() and not directory.is_dir():
            raise NotADirectoryError(f"save_directory {str(directory)!r} is a file: save_pretrained writes a "
                                     "directory; use save(path) for a single tokenizer.json")  # fmt: skip
        self._check_named_tokens()
        directory.mkdir(parents=True, exist_ok=True)
        config_path = directory / "tokenizer_config.json"
        config_path.write_text(json.dumps(self._tokenizer_config(), ensure_ascii=False, indent=2), encoding="utf-8")
        return str(config_path), str(self.save(directory / "tokenizer.json"))

    def _tokenizer_config(self) -> dict[str, Any]:
        """transformers' ``tokenizer_config.json``: a plain ``PreTrainedTokenizerFast`` over ``tokenizer.json``."""
        named = self.special_tokens_map.values()
        return {
            "tokenizer_class": "PreTrainedTokenizerFast",  # transformers 4 and 5 both know this name
            "model_max_length": NO_LIMIT if self.model_max_length is None else self.model_max_length,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "model_input_names": list(self.model_input_names),
            "clean_up_tokenization_spaces": False,  # our decode is the decoder's, with no extra clean-up
            **{name: getattr(self, name) for name in SPECIAL_TOKEN_NAMES},
            "additional_special_tokens": [t.content for t in sorted(self.added_tokens, key=lambda t: t.id)
                                          if t.special and t.content not in named],  # fmt: skip
        }

    def _check_named_tokens(self) -> None:
        """Each named special token must be an added token marked special, as transformers will make it."""
        for name in SPECIAL_TOKEN_NAMES:
            token = getattr(self, name)
            if token is None:
                continue
            if not isinstance(token, str):
                raise TypeError(f"{name} is {token!r}, a {type(token).__name__}: a special token is a str (or None)")
            added = self._added_by_content.get(token)
            if added is not None and added.special:
                continue
            if added is not None:
                why = "transformers would mark it special, so skip_special_tokens would drop it there"
                fix = "set .special = True on it in tok.added_tokens"
            else:
                i = self.token_to_id(token)
                why = "transformers would add it, so text containing it would split differently there"
                why += "" if i is not None else f" and it would get the new id {self.vocab_size}"
                fix = f"add it first, tok.add_tokens([AddedToken({token!r}, {self.vocab_size if i is None else i})])"
            raise ValueError(f"{name}={token!r} is not an added token marked special: {why}; {fix}, "
                             f"or set tok.{name} = None")  # fmt: skip
