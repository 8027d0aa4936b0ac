"""The words the service says itself, in the participant's language.

Every such sentence is written in English in the code, wrapped in `t(language, ...)` so Babel's
`pybabel extract` finds it (see `babel.cfg`), and translated in `bot/locale/<lang>/LC_MESSAGES/
messages.po`. The catalogues are read as they are (no compile step to forget); a sentence with
no translation is said in English rather than not at all. Staff read English: exports,
summaries and logs never go through here.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
STAFF_LANGUAGE = "en"
LANGUAGES = {"en": "English", "cy": "Cymraeg"}
# Words that switch a person's language, whole messages only, in any case.
SWITCH_WORDS = {"english": "en", "saesneg": "en", "cymraeg": "cy", "welsh": "cy"}


def N_(message: str) -> str:
    """Marks a sentence kept in a constant, for `pybabel extract -k N_`; translated later."""
    return message


# What `language_of` made of each value it met: a step asks it a dozen times, of the same
# few values (None, "en", "cy").
_language_of: dict[str | None, str] = {}


def language_of(value: Any) -> str:
    """A supported language code from what a row or a context holds; English otherwise."""
    if value is None or type(value) is str:
        found = _language_of.get(value)
        if found is not None:
            return found
    code = str(value or "").strip().casefold()[:2]
    code = code if code in LANGUAGES else STAFF_LANGUAGE
    if (value is None or type(value) is str) and len(_language_of) < 64:
        _language_of[value] = code
    return code


@lru_cache(maxsize=8)
def _catalogue(language: str) -> dict[str, str]:
    if language == STAFF_LANGUAGE:
        return {}
    path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return {}
    from babel.messages.pofile import read_po

    with path.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    return {
        str(m.id): str(m.string)
        for m in catalog
        if m.id and isinstance(m.id, str) and m.string and not m.fuzzy
    }


def t(language: str | None, message: str, **values: Any) -> str:
    """`message` in `language`, with `{names}` filled in."""
    text = _catalogue(language_of(language)).get(message, message)
    return text.format(**values) if values else text


DEFAULT_ORG_NAME = N_("our involvement team")  # where ORG_NAME is unset (no channel on)


class OrgName(str):
    """How messages name the organisation (ORG_NAME), with its name in each other language
    beside it (ORG_NAME_CY): a str, so whatever names the organisation takes it as it is,
    and a sentence in Welsh asks `org_name_in(org, "cy")` for "Age Cymru", not "Age UK"."""

    names: dict[str, str]

    def __new__(cls, name: str, **names: str | None) -> OrgName:
        made = super().__new__(cls, name)
        made.names = {code: value for code, value in names.items() if value}
        return made


def org_name_in(org: str, language: str | None) -> str:
    """The organisation's name in a sentence in `language`: its own name there where it has
    one (ORG_NAME_CY, or our default name translated), else the name as it is."""
    code = language_of(language)
    if isinstance(org, OrgName):
        return org.names.get(code, str(org))
    if org == DEFAULT_ORG_NAME:
        return t(code, DEFAULT_ORG_NAME)
    return org


def switch_word(text: str) -> str | None:
    """The language a message asks for ("CYMRAEG", "English please"), if that is all it says."""
    words = [w for w in "".join(c if c.isalpha() else " " for c in (text or "")).casefold().split()]
    words = [w for w in words if w not in ("please", "plis", "os", "gwelwch", "yn", "dda")]
    return SWITCH_WORDS.get(words[0]) if len(words) == 1 else None
