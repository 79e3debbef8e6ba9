"""Normalizers: the first step of the pipeline, text -> cleaner text.

Each class mirrors one ``normalizer`` entry of a ``tokenizer.json`` and keeps the dict it was built
from, so saving writes back exactly what was read. The one that matters most is BERT's:

>>> BertNormalizer()("Héllo\\tWORLD 你好")
'hello world  你  好 '
"""

from __future__ import annotations

import unicodedata
from typing import Any

import regex

# BERT counts every code point of these blocks as a "Chinese character" and puts spaces around it.
_CJK_RANGES = [
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
]  # fmt: skip
_CJK = regex.compile("([" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in _CJK_RANGES) + "])")
# Control, format and private-use characters are dropped, except tab, newline and return, which
# count as space. (Unassigned code points, Cn, are kept: tokenizers keeps them.)
_BERT_DROP = regex.compile(r"[\x00\ufffd\p{Cc}\p{Cf}\p{Co}--[\t\n\r]]", flags=regex.V1)
_WHITE = regex.compile(r"\p{White_Space}")
_MARKS = regex.compile(r"\p{M}")
# BERT's accent stripping drops only the non-spacing marks (Mn): a Devanagari vowel sign (Mc) stays.
_NONSPACING_MARKS = regex.compile(r"\p{Mn}")


class Normalizer:
    """Base class: ``normalizer(text) -> text``; ``to_dict()`` gives the ``tokenizer.json`` entry."""

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        self.spec = spec or {"type": type(self).__name__}

    def __call__(self, text: str) -> str:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return self.spec


def strip_accents(text: str) -> str:
    """Decompose (NFD) and drop the non-spacing marks: ``"café" -> "cafe"``."""
    return _NONSPACING_MARKS.sub("", unicodedata.normalize("NFD", text))


def lowercase(text: str) -> str:
    """Lower-case one character at a time, as Rust's ``char::to_lowercase`` does.

    Python's ``str.lower`` turns a word-final ``Σ`` into ``ς``; the per-character rule always gives ``σ``.
    """
    return text.replace("Σ", "σ").lower()


class BertNormalizer(Normalizer):
    """BERT's cleaning: drop control characters, spaces around CJK, strip accents, lower-case."""

    def __init__(
        self,
        clean_text: bool = True,
        handle_chinese_chars: bool = True,
        strip_accents: bool | None = None,
        lowercase: bool = True,
    ) -> None:
        super().__init__(
            {
                "type": "BertNormalizer",
                "clean_text": clean_text,
                "handle_chinese_chars": handle_chinese_chars,
                "strip_accents": strip_accents,
                "lowercase": lowercase,
            }
        )
        self.clean_text = clean_text
        self.handle_chinese_chars = handle_chinese_chars
        # Accents follow lower-casing unless said otherwise: the "uncased" models strip both.
        self.strip_accents = lowercase if strip_accents is None else strip_accents
        self.lowercase = lowercase

    def __call__(self, text: str) -> str:
        ascii_only = text.isascii()
        if self.clean_text:
            text = _WHITE.sub(" ", _BERT_DROP.sub("", text))
        if self.handle_chinese_chars and not ascii_only:
            text = _CJK.sub(r" \1 ", text)
        if self.strip_accents and not ascii_only:
            text = strip_accents(text)
        if self.lowercase:
            text = lowercase(text)
        return text


class Lowercase(Normalizer):
    def __call__(self, text: str) -> str:
        return lowercase(text)


class StripAccents(Normalizer):
    def __call__(self, text: str) -> str:
        return _MARKS.sub("", text)


class Unicode(Normalizer):
    """One of NFC, NFD, NFKC, NFKD, named by ``spec["type"]``."""

    def __call__(self, text: str) -> str:
        return unicodedata.normalize(self.spec["type"], text)


# SentencePiece's "nmt" rules: drop ASCII control codes, turn odd spaces into a plain space.
_NMT_TABLE = {c: None for c in [*range(0x01, 0x09), 0x0B, *range(0x0E, 0x20), 0x7F, 0x8F, 0x9F]}
_NMT_TABLE.update(
    {c: " " for c in [0x09, 0x0A, 0x0C, 0x0D, 0x1680, *range(0x200B, 0x2010), 0x2028, 0x2029, 0x2581, 0xFEFF, 0xFFFD]}
)


class Nmt(Normalizer):
    def __call__(self, text: str) -> str:
        return text.translate(_NMT_TABLE)


class Replace(Normalizer):
    """Replace a literal string (``{"String": ...}``) or a regex (``{"Regex": ...}``) by ``content``."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        pattern = spec["pattern"]
        self.regex = regex.compile(pattern["Regex"] if "Regex" in pattern else regex.escape(pattern["String"]))
        self.content = spec["content"]

    def __call__(self, text: str) -> str:
        return self.regex.sub(lambda _: self.content, text)


class Strip(Normalizer):
    """Strip Unicode White_Space (not ``str.strip()``, which also strips U+001C..U+001F)."""

    _left, _right = regex.compile(r"\A\p{White_Space}+"), regex.compile(r"\p{White_Space}+\Z")

    def __call__(self, text: str) -> str:
        if self.spec.get("strip_left", True):
            text = self._left.sub("", text)
        if self.spec.get("strip_right", True):
            text = self._right.sub("", text)
        return text


class Prepend(Normalizer):
    def __call__(self, text: str) -> str:
        return self.spec["prepend"] + text if text else text


class Sequence(Normalizer):
    def __init__(self, spec: dict[str, Any], parts: list[Normalizer]) -> None:
        super().__init__(spec)
        self.parts = parts

    def __call__(self, text: str) -> str:
        for part in self.parts:
            text = part(text)
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"type": "Sequence", "normalizers": [p.to_dict() for p in self.parts]}


def normalizer_from_dict(spec: dict[str, Any]) -> Normalizer:
    """Build a normalizer from its ``tokenizer.json`` entry; ``ValueError`` names an unknown type."""
    kind = spec.get("type")
    if kind == "BertNormalizer":
        return BertNormalizer(
            spec.get("clean_text", True), spec.get("handle_chinese_chars", True),
            spec.get("strip_accents"), spec.get("lowercase", True),
        )  # fmt: skip
    if kind == "Sequence":
        return Sequence(spec, [normalizer_from_dict(s) for s in spec["normalizers"]])
    simple = {"Lowercase": Lowercase, "StripAccents": StripAccents, "Nmt": Nmt, "Strip": Strip, "Prepend": Prepend}
    if kind in simple:
        return simple[kind](spec)
    if kind in ("NFC", "NFD", "NFKC", "NFKD"):
        return Unicode(spec)
    if kind == "Replace":
        return Replace(spec)
    raise ValueError(f"unsupported normalizer type {kind!r}")
