"""SMS length and encoding: GSM-7 (160 a segment, 153 when split) or UCS-2 (70 and 67).

One character outside GSM-7 (a curly quote, an emoji) switches the whole text to UCS-2 and
more than halves what fits in a segment, so lint says which character and where.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Each of these costs two septets (an escape and the character).
GSM7_EXTENDED = "^{}\\[~]|€\f"

_BASIC = frozenset(GSM7_BASIC)
_EXTENDED = frozenset(GSM7_EXTENDED)

# The usual culprits, with what to type instead.
SUGGESTIONS = {
    "‘": "'",
    "’": "'",
    "“": '"',
    "”": '"',
    "–": "-",
    "—": "-",
    "…": "...",
    "\u00a0": "a plain space",
    "•": "-",
}


@dataclass(frozen=True)
class SmsSize:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int
    non_gsm: tuple[tuple[int, str], ...]  # (index, character) of everything outside GSM-7


def non_gsm_characters(text: str) -> list[tuple[int, str]]:
    return [(i, ch) for i, ch in enumerate(text) if ch not in _BASIC and ch not in _EXTENDED]


def sms_size(text: str) -> SmsSize:
    if _BASIC.issuperset(text):
        # Most texts: GSM-7's basic characters only, one septet each. One check in C says so;
        # the walk below, a character at a time in Python, cost about 10 us for a two-line
        # text (a step of several parts, a reply and its question, is measured each time a
        # part is joined to the one before).
        units = len(text)
        return SmsSize("GSM-7", units, 1 if units <= 160 else -(-units // 153), ())
    outside = non_gsm_characters(text)
    if not outside:
        units = sum(2 if ch in _EXTENDED else 1 for ch in text)
        segments = 1 if units <= 160 else -(-units // 153)
        return SmsSize("GSM-7", units, segments, ())
    units = len(text.encode("utf-16-le")) // 2
    segments = 1 if units <= 70 else -(-units // 67)
    return SmsSize("UCS-2", units, segments, tuple(outside))


def describe_character(ch: str) -> str:
    import unicodedata

    name = unicodedata.name(ch, f"U+{ord(ch):04X}")
    hint = SUGGESTIONS.get(ch)
    return f"{ch!r} ({name.lower()})" + (f"; use {hint!r} instead" if hint else "")
