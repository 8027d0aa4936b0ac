"""Text from outside, made storable."""

from __future__ import annotations

import unicodedata
from typing import Any


def clean_text(value: Any) -> str:
    """Text any database will store: no NUL characters, no unpaired surrogates."""
    return str(value).encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def clean_json(value: Any) -> Any:
    """A parsed JSON document with every string in it (keys too) made storable by
    `clean_text`. Walked without recursion: the document may be as deep as the parser allowed."""
    if isinstance(value, str):
        return clean_text(value)
    if not isinstance(value, dict | list):
        return value
    return _clean_container(value)


def _clean_container(document: Any) -> Any:
    top: Any = {} if isinstance(document, dict) else []
    pending: list[tuple[Any, Any]] = [(document, top)]
    while pending:
        source, target = pending.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in items:
            if isinstance(item, dict | list):
                copy: Any = {} if isinstance(item, dict) else []
                pending.append((item, copy))
                cleaned = copy
            elif isinstance(item, str):
                cleaned = clean_text(item)
            else:
                cleaned = item
            if isinstance(target, dict):
                target[clean_text(key)] = cleaned
            else:
                target.append(cleaned)
    return top


# --- names, external ids and what a terminal is shown ---------------------------------------

# Characters that reorder the text around them (Trojan Source): they can make one name or id
# read as another, or turn a line of output round.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
# Zero-width joiners are part of how Persian, Indic scripts and emoji are written: kept.
_JOINERS = frozenset("\u200c\u200d")


def clean_name(value: Any) -> str:
    """A person's name as we keep it: every letter of any language (ŵ, ŷ, é, Ł, 漢), composed
    (NFC), with no control characters, no bidi or other invisible formatting characters, and
    single spaces (a tab or a line break in a spreadsheet cell is a space)."""
    text = unicodedata.normalize("NFC", clean_text(value))
    kept = []
    for char in text:
        category = unicodedata.category(char)
        if char.isspace() or category in ("Zl", "Zp"):
            kept.append(" ")
        elif category in ("Cc", "Cf", "Cs") and char not in _JOINERS:
            continue
        else:
            kept.append(char)
    return " ".join("".join(kept).split())


def normal_external_id(value: str) -> str:
    """An external id in its compatibility form (NFKC): full-width `ＡＢ１２`, a ligature, a
    mathematical bold digit are the plain characters they stand for. Lookups use the same
    form, so the id is found however it was typed."""
    return unicodedata.normalize("NFKC", value)


# Scripts that are written together: Japanese (kanji, kana), Chinese with bopomofo, Korean
# with hanja, each also with Latin (UTS #39's "highly restrictive" level).
_SCRIPTS_WRITTEN_TOGETHER = (
    {"LATIN", "CJK", "HIRAGANA", "KATAKANA", "KATAKANA-HIRAGANA"},
    {"LATIN", "CJK", "BOPOMOFO"},
    {"LATIN", "CJK", "HANGUL"},
)
# Letters of another alphabet that look like Latin ones in most typefaces: an id written only
# in these (Cyrillic АВ12, Greek ΑΒ12) cannot be told from a Latin id (AB12) on a screen.
_LOOK_LATIN = {
    "CYRILLIC": frozenset("АВЕЅІЈКМНОРСТУХҮҺӀԌԚԜаеіјорсухѕһӏԁԛԝү"),
    "GREEK": frozenset("ΑΒΕΖΗΙΚΜΝΟΡΤΥΧικνορυ"),
}


def _script(char: str) -> str | None:
    """A letter's script, from the first word of its Unicode name; None where that word is
    not a script (MODIFIER LETTER ..., COMBINING ...)."""
    word = unicodedata.name(char, "").split(" ", 1)[0]
    return None if word in ("", "MODIFIER", "COMBINING") else word


def external_id_problem(external: str) -> str | None:
    """Why `external` (already NFKC and trimmed) cannot be an external id, or None.

    An external id names one person to staff, the API and the CLI (erasure included), so two
    ids must never look alike. The rule: keyboard ASCII (letters, digits, spaces,
    punctuation) and the letters of any one script (ŵ, é, Ж, 漢; Japanese, Chinese and Korean
    mixes as written); no control or invisible character (bidi controls, zero-width spaces);
    no digits, spaces or punctuation but ASCII's (NFKC has made full-width ones ASCII; what is
    left, such as ‐ for -, or ١ for 1, looks like ASCII and is not); no id mixing scripts
    (Latin with a Cyrillic о); and no id wholly in Cyrillic or Greek letters that look Latin.
    """
    scripts: dict[str, None] = {}
    for char in external:
        if " " <= char <= "~":
            if char.isalpha():
                scripts["LATIN"] = None
            continue
        category = unicodedata.category(char)
        label = f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed character')}"
        if category[0] in "CZ":
            return f"has an invisible or control character ({label}): take it out"
        script = _script(char) if category[0] in "LM" else None
        if script is None:
            return (
                f"has {char!r} ({label}): write digits, spaces and punctuation as plain"
                " keyboard characters"
            )
        scripts[script] = None
    found = set(scripts)
    if len(found) > 1 and not any(found <= together for together in _SCRIPTS_WRITTEN_TOGETHER):
        named = " and ".join(s.title() for s in scripts)
        return f"mixes {named} letters, which can look alike: write it in one alphabet"
    if len(found) == 1 and (only := next(iter(found))) in _LOOK_LATIN:
        letters = [c for c in external if c.isalpha()]
        if letters and all(c in _LOOK_LATIN[only] for c in letters):
            return (
                f"is written in {only.title()} letters that look like Latin ones: write it"
                " in Latin letters"
            )
    return None


# What a terminal acts on rather than shows: C0 controls but tab and line feed (ESC starts
# escape sequences; CR overwrites a line), DEL, C1 controls (U+009B is a one-character CSI),
# bidi controls, the Unicode line and paragraph separators, and unpaired surrogates.
_TERMINAL_ESCAPES = {
    code: f"\\u{code:04x}"
    for code in (
        *(c for c in range(0x20) if chr(c) not in "\t\n"),
        *range(0x7F, 0xA0),
        *map(ord, BIDI_CONTROLS),
        0x2028,
        0x2029,
        *range(0xD800, 0xE000),
    )
}


def terminal_safe(text: str) -> str:
    """`text` to print on a terminal: every character a terminal would act on rather than
    show written as a visible `\\uXXXX` (also JSON's escape, so printed JSON still reads back
    as the data it was). Answers are kept as people wrote them; this is for showing them."""
    return text.translate(_TERMINAL_ESCAPES)
