"""Pre-tokenizers: cut normalized text into pieces that the model then tokenizes one at a time.

Merges never cross a piece boundary, so ``" world"`` and ``"world!"`` share the token for
``world``. GPT-2 cuts with one regex:

>>> ByteLevel().split("Hello world, it's 2024!")
['Hello', ' world', ',', ' it', "'s", ' 2024', '!']

Each class mirrors one ``pre_tokenizer`` entry of a ``tokenizer.json`` and keeps the dict it was
built from. ``byte_level`` says whether the model must see the pieces as UTF-8 bytes.
"""

from __future__ import annotations

from typing import Any

import regex

# GPT-2: contractions, letters with one optional leading space, numbers, other symbols, and
# whitespace; "\s+(?!\S)" leaves the last space of a run to start the next word.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# GPT-4's cl100k_base, as Hugging Face writes it: case-insensitive contractions, numbers in
# groups of at most three digits, punctuation that keeps its trailing newlines.
CL100K_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
PATTERNS = {"gpt2": GPT2_PATTERN, "cl100k": CL100K_PATTERN}

# BERT's punctuation: any Unicode punctuation, plus every ASCII symbol (``$``, ``+``, ``^``...).
_BERT_PUNCT = r"\p{P}\x21-\x2f\x3a-\x40\x5b-\x60\x7b-\x7e"
_BERT_SPLIT = regex.compile(rf"[^\p{{White_Space}}{_BERT_PUNCT}]+|[{_BERT_PUNCT}]")


class PreTokenizer:
    """Base class: ``split(text) -> pieces``; ``to_dict()`` gives the ``tokenizer.json`` entry."""

    byte_level = False

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        self.spec = spec or {"type": type(self).__name__}

    def split(self, text: str) -> list[str]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return self.spec


class ByteLevel(PreTokenizer):
    """GPT-2's regex split; the pieces then go to the model as bytes (see ``byte_level.py``)."""

    byte_level = True

    def __init__(self, add_prefix_space: bool = False, use_regex: bool = True, pattern: str = GPT2_PATTERN) -> None:
        super().__init__(
            {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True, "use_regex": use_regex}
        )
        self.add_prefix_space = add_prefix_space
        self.use_regex = use_regex
        self.regex = regex.compile(pattern)

    def split(self, text: str) -> list[str]:
        if not text:
            return []  # nothing to put a space before, as in tokenizers
        if self.add_prefix_space and not text.startswith(" "):
            text = " " + text  # so that the first word gets the same token as every other word
        return self.regex.findall(text) if self.use_regex else [text]


class Split(PreTokenizer):
    """Split on a pattern; ``behavior`` says what happens to the matches (kept alone, dropped, glued)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        pattern = spec["pattern"]
        self.regex = regex.compile(pattern["Regex"] if "Regex" in pattern else regex.escape(pattern["String"]))
        self.behavior = spec.get("behavior", "Isolated")
        if spec.get("invert") or self.behavior not in ("Isolated", "Removed", "MergedWithPrevious", "MergedWithNext"):
            raise ValueError(f"unsupported Split pre-tokenizer settings: behavior {self.behavior!r}, invert")

    def split(self, text: str) -> list[str]:
        pieces: list[str] = []
        last = 0
        glue_next = ""  # a match waiting to be glued to the next piece (MergedWithNext)
        for m in self.regex.finditer(text):
            start, end = m.span()
            if start == end:
                continue
            gap = glue_next + text[last:start]
            glue_next = ""
            if self.behavior == "Isolated":
                pieces += [gap, m.group()] if gap else [m.group()]
            elif self.behavior == "Removed":
                pieces.append(gap)
            elif self.behavior == "MergedWithPrevious":
                pieces.append(gap + m.group())
            else:  # MergedWithNext
                pieces.append(gap)
                glue_next = m.group()
            last = end
        pieces.append(glue_next + text[last:])
        return [p for p in pieces if p]


class Metaspace(PreTokenizer):
    """SentencePiece's view of spaces: each space becomes ``▁`` and starts a new piece.

    >>> Metaspace().split("Hello  world")
    ['▁Hello', '▁', '▁world']
    """

    def __init__(self, replacement: str = "▁", prepend_scheme: str = "always", split: bool = True) -> None:
        super().__init__(
            {"type": "Metaspace", "replacement": replacement, "prepend_scheme": prepend_scheme, "split": split}
        )
        self.replacement = replacement
        self.prepend_scheme = prepend_scheme
        self.do_split = split

    def split(self, text: str, first: bool = True) -> list[str]:
        if not text:
            return []  # a text that normalized to nothing gets no ``▁`` either, as in tokenizers
        text = text.replace(" ", self.replacement)
        prepend = self.prepend_scheme == "always" or (self.prepend_scheme == "first" and first)
        if prepend and not text.startswith(self.replacement):
            text = self.replacement + text
        if not self.do_split:
            return [text] if text else []
        parts = text.split(self.replacement)
        # "a▁b▁▁c" -> ["a", "▁b", "▁", "▁c"]: the replacement is glued to what follows it.
        pieces = [parts[0]] if parts[0] else []
        pieces += [self.replacement + p for p in parts[1:]]
        return pieces


class BertPreTokenizer(PreTokenizer):
    """Split on whitespace, and give every punctuation character a piece of its own."""

    def split(self, text: str) -> list[str]:
        return _BERT_SPLIT.findall(text)


class Whitespace(PreTokenizer):
    _regex = regex.compile(r"\w+|[^\w\s]+")

    def split(self, text: str) -> list[str]:
        return self._regex.findall(text)


class WhitespaceSplit(PreTokenizer):
    """Split on Unicode White_Space, as Rust's ``char::is_whitespace`` does.

    Not ``str.split()``: Python also counts the separators U+001C..U+001F as space.
    """

    _regex = regex.compile(r"[^\p{White_Space}]+")

    def split(self, text: str) -> list[str]:
        return self._regex.findall(text)


class Sequence(PreTokenizer):
    """Apply each pre-tokenizer to every piece the previous one produced."""

    def __init__(self, spec: dict[str, Any], parts: list[PreTokenizer]) -> None:
        super().__init__(spec)
        self.parts = parts
        self.byte_level = any(p.byte_level for p in parts)

    def split(self, text: str) -> list[str]:
        pieces = [text]
        for part in self.parts:
            pieces = [q for p in pieces for q in part.split(p)]
        return pieces

    def to_dict(self) -> dict[str, Any]:
        return {"type": "Sequence", "pretokenizers": [p.to_dict() for p in self.parts]}


def pre_tokenizer_from_dict(spec: dict[str, Any]) -> PreTokenizer:
    """Build a pre-tokenizer from its ``tokenizer.json`` entry; ``ValueError`` names an unknown type."""
    kind = spec.get("type")
    if kind == "ByteLevel":
        made: PreTokenizer = ByteLevel(spec.get("add_prefix_space", True), spec.get("use_regex", True))
    elif kind == "Metaspace":
        scheme = spec.get("prepend_scheme") or ("always" if spec.get("add_prefix_space", True) else "never")
        made = Metaspace(spec.get("replacement", "▁"), scheme, spec.get("split", True))
    elif kind == "Split":
        made = Split(spec)
    elif kind == "Sequence":
        made = Sequence(spec, [pre_tokenizer_from_dict(s) for s in spec["pretokenizers"]])
    elif kind in ("BertPreTokenizer", "Whitespace", "WhitespaceSplit"):
        made = {"BertPreTokenizer": BertPreTokenizer, "Whitespace": Whitespace, "WhitespaceSplit": WhitespaceSplit}[
            kind
        ]()
    else:
        raise ValueError(f"unsupported pre_tokenizer type {kind!r}")
    made.spec = spec  # write back exactly what was read
    return made
