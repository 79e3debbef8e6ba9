"""Bytes as printable characters: GPT-2's byte-to-unicode map.

Byte-level BPE works on the UTF-8 bytes of the text, so every string can be encoded with a base
vocabulary of only 256 symbols and nothing is ever unknown. GPT-2 stores its vocabulary as *text*
(``vocab.json``), so each byte needs a printable stand-in: bytes that are already visible
characters keep their own character, the rest (space, newline, control bytes...) are shifted to
code points from 256 upward. The space byte becomes ``Ġ`` and newline ``Ċ``:

>>> to_byte_chars("héllo world")
'hÃ©lloĠworld'
>>> from_byte_chars("hÃ©lloĠworld")
'héllo world'
"""

from __future__ import annotations


def bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 map from each of the 256 byte values to one printable character.

    >>> m = bytes_to_unicode()
    >>> m[ord("a")], m[ord(" ")], m[ord("\\n")]
    ('a', 'Ġ', 'Ċ')
    """
    # These ranges print as themselves in every font, so they keep their own code point.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shifted)  # the unprintable bytes, in order, from U+0100 upward
            shifted += 1
    return mapping


BYTE_TO_CHAR: dict[int, str] = bytes_to_unicode()
CHAR_TO_BYTE: dict[str, int] = {c: b for b, c in BYTE_TO_CHAR.items()}
_BYTE_CHARS = [BYTE_TO_CHAR[b] for b in range(256)]
# str.translate table: byte-level character -> the latin-1 character with that byte's value.
_TO_LATIN1 = {ord(c): b for c, b in CHAR_TO_BYTE.items()}
_BYTE_CHAR_SET = frozenset(CHAR_TO_BYTE)


def to_byte_chars(text: str) -> str:
    """Encode ``text`` as UTF-8 and spell each byte with its printable stand-in."""
    return "".join([_BYTE_CHARS[b] for b in text.encode("utf-8")])


def byte_chars_to_bytes(tokens: list[str]) -> bytes:
    """The raw bytes behind byte-level tokens.

    A token with a character outside the map (an added token such as ``<|endoftext|>`` may have
    one) contributes its own UTF-8 bytes, as ``tokenizers``' ByteLevel decoder does.
    """
    joined = "".join(tokens)
    if _BYTE_CHAR_SET.issuperset(joined):  # the fast path: one C-level translate
        return joined.translate(_TO_LATIN1).encode("latin-1")
    out = bytearray()
    for token in tokens:
        if _BYTE_CHAR_SET.issuperset(token):
            out += token.translate(_TO_LATIN1).encode("latin-1")
        else:
            out += token.encode("utf-8")
    return bytes(out)


def from_byte_chars(text: str) -> str:
    """Decode byte-level characters back to text.

    Never raises: bytes that are not valid UTF-8 (an id sequence cut inside a multi-byte character)
    become U+FFFD, the replacement character.

    >>> from_byte_chars(to_byte_chars("é")[:1])
    '\\ufffd'
    """
    return byte_chars_to_bytes([text]).decode("utf-8", errors="replace")
