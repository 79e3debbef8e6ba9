"""After the model: post-processors add special tokens, decoders turn tokens back into text.

A post-processor wraps the ids of one text (or a pair) in the model's special tokens, and says
which segment each id belongs to (``token_type_ids``). BERT's ``[CLS] A [SEP] B [SEP]``:

>>> bert = TemplateProcessing.bert(cls_id=101, sep_id=102)
>>> bert.process([7, 8], [9])
([101, 7, 8, 102, 9, 102], [0, 0, 0, 0, 1, 1])

A decoder maps tokens back to text: ``WordPieceDecoder()(["un", "##believ", "##able", "!"])``
gives ``"unbelievable!"``.
"""

from __future__ import annotations

from typing import Any

import regex

from .byte_level import byte_chars_to_bytes

# ---------------------------------------------------------------------------- post-processors


class PostProcessor:
    """Base class; the default adds nothing (GPT-2's ``ByteLevel`` post-processor only fixes offsets)."""

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        self.spec = spec or {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}

    def process(self, a: list[int], b: list[int] | None = None) -> tuple[list[int], list[int]]:
        ids = a + (b or [])
        return ids, [0] * len(a) + [1] * len(b or [])

    def num_special_tokens_to_add(self, pair: bool) -> int:
        ids, _ = self.process([], [] if pair else None)
        return len(ids)

    def to_dict(self) -> dict[str, Any]:
        return self.spec


class TemplateProcessing(PostProcessor):
    """Fill a template such as ``[CLS] $A [SEP] $B:1 [SEP]:1`` (``:1`` is the segment id)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__(spec)
        self.special = {name: tok["ids"] for name, tok in spec.get("special_tokens", {}).items()}
        self.single, self.pair = spec["single"], spec["pair"]

    @classmethod
    def bert(cls, cls_id: int, sep_id: int, cls_token: str = "[CLS]", sep_token: str = "[SEP]") -> TemplateProcessing:
        def special(token: str, type_id: int) -> dict[str, Any]:
            return {"SpecialToken": {"id": token, "type_id": type_id}}

        def seq(name: str, type_id: int) -> dict[str, Any]:
            return {"Sequence": {"id": name, "type_id": type_id}}

        return cls(
            {
                "type": "TemplateProcessing",
                "single": [special(cls_token, 0), seq("A", 0), special(sep_token, 0)],
                "pair": [special(cls_token, 0), seq("A", 0), special(sep_token, 0), seq("B", 1), special(sep_token, 1)],
                "special_tokens": {
                    cls_token: {"id": cls_token, "ids": [cls_id], "tokens": [cls_token]},
                    sep_token: {"id": sep_token, "ids": [sep_id], "tokens": [sep_token]},
                },
            }
        )

    def process(self, a: list[int], b: list[int] | None = None) -> tuple[list[int], list[int]]:
        ids: list[int] = []
        type_ids: list[int] = []
        for item in self.single if b is None else self.pair:
            if "SpecialToken" in item:
                piece, type_id = self.special[item["SpecialToken"]["id"]], item["SpecialToken"]["type_id"]
            else:
                piece, type_id = (a if item["Sequence"]["id"] == "A" else b), item["Sequence"]["type_id"]
            ids += piece
            type_ids += [type_id] * len(piece)
        return ids, type_ids


class BertProcessing(PostProcessor):
    def process(self, a: list[int], b: list[int] | None = None) -> tuple[list[int], list[int]]:
        cls_id, sep_id = self.spec["cls"][1], self.spec["sep"][1]
        ids, type_ids = [cls_id, *a, sep_id], [0] * (len(a) + 2)
        if b is not None:
            ids += [*b, sep_id]
            type_ids += [1] * (len(b) + 1)
        return ids, type_ids


class RobertaProcessing(PostProcessor):
    def process(self, a: list[int], b: list[int] | None = None) -> tuple[list[int], list[int]]:
        cls_id, sep_id = self.spec["cls"][1], self.spec["sep"][1]
        ids = [cls_id, *a, sep_id]
        if b is not None:
            ids += [sep_id, *b, sep_id]
        return ids, [0] * len(ids)


class SequenceProcessing(PostProcessor):
    def __init__(self, spec: dict[str, Any], parts: list[PostProcessor]) -> None:
        super().__init__(spec)
        self.parts = parts

    def process(self, a: list[int], b: list[int] | None = None) -> tuple[list[int], list[int]]:
        # Only one part of a real sequence adds tokens (the others fix offsets); apply that one.
        adders = [p for p in self.parts if p.num_special_tokens_to_add(True)]
        return adders[0].process(a, b) if adders else PostProcessor.process(self, a, b)


def post_processor_from_dict(spec: dict[str, Any]) -> PostProcessor:
    kind = spec.get("type")
    if kind == "ByteLevel":
        return PostProcessor(spec)
    if kind == "Sequence":
        return SequenceProcessing(spec, [post_processor_from_dict(p) for p in spec["processors"]])
    kinds = {"TemplateProcessing": TemplateProcessing, "BertProcessing": BertProcessing, "RobertaProcessing": RobertaProcessing}
    if kind in kinds:
        return kinds[kind](spec)
    raise ValueError(f"unsupported post_processor type {kind!r}")


# ---------------------------------------------------------------------------- decoders


class Decoder:
    """Base class: ``decode_chain(tokens) -> tokens``; calling it joins them into the text."""

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        self.spec = spec or {"type": type(self).__name__}

    def decode_chain(self, tokens: list[str]) -> list[str]:
        raise NotImplementedError

    def __call__(self, tokens: list[str]) -> str:
        return "".join(self.decode_chain(tokens))

    def to_dict(self) -> dict[str, Any]:
        return self.spec


class ByteLevelDecoder(Decoder):
    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        super().__init__(spec or {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True})

    def decode_chain(self, tokens: list[str]) -> list[str]:
        # Invalid UTF-8 (ids that cut a character in two) becomes U+FFFD instead of raising.
        return [byte_chars_to_bytes(tokens).decode("utf-8", errors="replace")]


def _cleanup(text: str) -> str:
    """Undo the spaces that splitting put before punctuation and English contractions."""
    for dirty, clean in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                         (" 'm", "'m"), (" do not", " don't"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")]:  # fmt: skip
        text = text.replace(dirty, clean)
    return text


class WordPieceDecoder(Decoder):
    """Glue ``##`` pieces to the previous token; put a space before every other one."""

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        super().__init__(spec or {"type": "WordPiece", "prefix": "##", "cleanup": True})
        self.prefix = self.spec.get("prefix", "##")
        self.cleanup = self.spec.get("cleanup", True)

    def decode_chain(self, tokens: list[str]) -> list[str]:
        out = []
        for i, token in enumerate(tokens):
            if i > 0:
                token = token[len(self.prefix) :] if token.startswith(self.prefix) else " " + token
            out.append(_cleanup(token) if self.cleanup else token)
        return out


class MetaspaceDecoder(Decoder):
    """``▁`` back to a space; the first token's ``▁`` was added by the pre-tokenizer, so it goes."""

    def __init__(self, spec: dict[str, Any] | None = None) -> None:
        super().__init__(spec or {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True})
        self.replacement = self.spec.get("replacement", "▁")
        scheme = self.spec.get("prepend_scheme") or ("always" if self.spec.get("add_prefix_space", True) else "never")
        self.strip_first = scheme != "never"

    def decode_chain(self, tokens: list[str]) -> list[str]:
        out = [t.replace(self.replacement, " ") for t in tokens]
        if out and self.strip_first:
            out[0] = tokens[0].replace(self.replacement, "")
        return out


class ReplaceDecoder(Decoder):
    def decode_chain(self, tokens: list[str]) -> list[str]:
        pattern = self.spec["pattern"]
        compiled = regex.compile(pattern["Regex"] if "Regex" in pattern else regex.escape(pattern["String"]))
        return [compiled.sub(lambda _: self.spec["content"], t) for t in tokens]


class ByteFallbackDecoder(Decoder):
    """Tokens ``<0x41>`` are raw bytes; runs of them are decoded together (invalid runs become U+FFFD)."""

    _byte = regex.compile(r"<0x([0-9A-F]{2})>")

    def decode_chain(self, tokens: list[str]) -> list[str]:
        out: list[str] = []
        pending = bytearray()
        for token in tokens:
            m = self._byte.fullmatch(token)
            if m:
                pending.append(int(m.group(1), 16))
                continue
            if pending:
                out.append(bytes(pending).decode("utf-8", errors="replace"))
                pending.clear()
            out.append(token)
        if pending:
            out.append(bytes(pending).decode("utf-8", errors="replace"))
        return out


class FuseDecoder(Decoder):
    def decode_chain(self, tokens: list[str]) -> list[str]:
        return ["".join(tokens)]


class StripDecoder(Decoder):
    def decode_chain(self, tokens: list[str]) -> list[str]:
        content, start, stop = self.spec["content"], self.spec.get("start", 0), self.spec.get("stop", 0)
        out = []
        for t in tokens:
            for _ in range(start):
                t = t[1:] if t.startswith(content) else t
            for _ in range(stop):
                t = t[:-1] if t.endswith(content) else t
            out.append(t)
        return out


class SequenceDecoder(Decoder):
    def __init__(self, spec: dict[str, Any], parts: list[Decoder]) -> None:
        super().__init__(spec)
        self.parts = parts

    def decode_chain(self, tokens: list[str]) -> list[str]:
        for part in self.parts:
            tokens = part.decode_chain(tokens)
        return tokens


def decoder_from_dict(spec: dict[str, Any]) -> Decoder:
    kind = spec.get("type")
    if kind == "Sequence":
        return SequenceDecoder(spec, [decoder_from_dict(d) for d in spec["decoders"]])
    kinds: dict[str, type[Decoder]] = {
        "ByteLevel": ByteLevelDecoder, "WordPiece": WordPieceDecoder, "Metaspace": MetaspaceDecoder,
        "Replace": ReplaceDecoder, "ByteFallback": ByteFallbackDecoder, "Fuse": FuseDecoder, "Strip": StripDecoder,
    }  # fmt: skip
    if kind in kinds:
        return kinds[kind](spec)
    raise ValueError(f"unsupported decoder type {kind!r}")
