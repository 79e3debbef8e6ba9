"""The byte-to-unicode map and lossy byte decoding."""

from __future__ import annotations

from minitransformer.tokenizers.byte_level import BYTE_TO_CHAR, CHAR_TO_BYTE, from_byte_chars, to_byte_chars


def test_map_is_a_bijection_onto_printable_characters():
    assert len(set(BYTE_TO_CHAR.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in BYTE_TO_CHAR.values())
    assert BYTE_TO_CHAR[ord(" ")] == "Ġ" and BYTE_TO_CHAR[ord("\n")] == "Ċ" and BYTE_TO_CHAR[ord("a")] == "a"
    assert all(CHAR_TO_BYTE[c] == b for b, c in BYTE_TO_CHAR.items())


def test_round_trip_and_replacement_character():
    text = "héllo 👋🏽\tworld\x00"
    assert from_byte_chars(to_byte_chars(text)) == text
    # Cutting the 4-byte emoji after 2 bytes is invalid UTF-8: one replacement character, no exception.
    cut = to_byte_chars("👋")[:2]
    assert from_byte_chars(cut) == "\ufffd"
