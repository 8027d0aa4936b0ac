"""Forgiving parsing of a participant's reply, as an older person types it.

`2`, `2.`, ` two `, `(2)`, the option's label or a clear start of it, `Yes`/`y`/`yeah`/`ok`,
any case, stray spaces and punctuation. Nothing here raises on any input: a reply is either an
`Answer` or a `Miss` that says, kindly, what we expected.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from bot.scripts.survey import Question, answer_key

NUMBER_WORDS = {
    "zero": 0,
    "nought": 0,
    "none": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
}
ORDINAL_WORDS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "1st": 1,
    "2nd": 2,
    "3rd": 3,
    "4th": 4,
    "5th": 5,
}
FILLER_WORDS = {
    "option",
    "number",
    "no",
    "please",
    "its",
    "it",
    "is",
    "i",
    "choose",
    "pick",
    "say",
    "the",
    "answer",
    "thanks",
    "ok",
    "id",
    "like",
    "go",
    "for",
    "about",
    "around",
    "maybe",
    "just",
    "only",
}
YES_WORDS = {
    "yes",
    "y",
    "yeah",
    "yea",
    "yep",
    "yup",
    "ye",
    "yes please",
    "ok",
    "okay",
    "sure",
    "aye",
    "certainly",
    "of course",
    "definitely",
    "please do",
    "ya",
    "yess",
    "yes thanks",
    "yes thank you",
    "k",
}
NO_WORDS = {
    "no",
    "n",
    "nope",
    "nah",
    "no thanks",
    "no thank you",
    "not really",
    "never",
    "no ta",
    "definitely not",
    "certainly not",
    "noo",
}
MIN_PREFIX = 3


@dataclass(frozen=True)
class Answer:
    value: str
    label: str


@dataclass(frozen=True)
class Miss:
    expected: str  # what we want, said plainly: "a number from 1 to 3"


def simplify(text: str) -> str:
    """Lower case, accents and punctuation folded away, single spaces."""
    text = unicodedata.normalize("NFKD", text or "")
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.casefold().replace("’", "'")
    text = re.sub(r"[^\w\s']", " ", text)
    text = text.replace("'", "").replace("_", " ")
    return re.sub(r"\s+", " ", text).strip()


def _as_number(text: str) -> float | None:
    """A number written as digits or a word, alone or in a short phrase ("about 3", "3 out of 5")."""
    cleaned = (text or "").strip().casefold().replace(",", "")
    match = re.fullmatch(
        r"[^\d\-+.]*?([-+]?\d+(?:\.\d+)?)\s*\.?\s*(?:(?:/|out of|of)\s*\d+)?[^\d]*", cleaned
    )
    if match:
        number = float(match.group(1))
        if number != number or number in (float("inf"), float("-inf")):
            return None
        return number
    words = simplify(text).split()
    if len(words) > 4:
        return None
    # "the second one": the ordinal is the answer, "one" is just a word.
    ordinals = [ORDINAL_WORDS[w] for w in words if w in ORDINAL_WORDS]
    if len(ordinals) == 1:
        return float(ordinals[0])
    # "two please" is 2; "the green one" is not 1.
    found = [NUMBER_WORDS[w] for w in words if w in NUMBER_WORDS]
    others = [w for w in words if w not in NUMBER_WORDS]
    if len(found) == 1 and not ordinals and all(w in FILLER_WORDS for w in others):
        return float(found[0])
    return None


def _pick(question: Question, text: str) -> Answer | None:
    options = question.choices
    number = _as_number(text)
    # On a scale the number is the point itself, handled by the caller, not the nth option.
    if (
        question.type != "scale"
        and number is not None
        and number.is_integer()
        and 1 <= number <= len(options)
    ):
        opt = options[int(number) - 1]
        return Answer(opt.value, opt.label)
    said = simplify(text)
    if not said:
        return None
    for opt in options:
        if said in (simplify(opt.label), simplify(opt.value)):
            return Answer(opt.value, opt.label)
    if len(said) >= MIN_PREFIX:
        starts = [o for o in options if simplify(o.label).startswith(said)]
        if len(starts) == 1:
            return Answer(starts[0].value, starts[0].label)
        # A reply that contains exactly one option's whole label ("I'd say printed please").
        inside = [o for o in options if re.search(rf"\b{re.escape(simplify(o.label))}\b", said)]
        if len(inside) == 1:
            return Answer(inside[0].value, inside[0].label)
    if len(said) == 1 and said.isalpha() and question.type == "choice":
        # Letters a, b, c... as in a printed form.
        index = ord(said) - ord("a")
        if 0 <= index < len(options):
            return Answer(options[index].value, options[index].label)
    return None


def _yesno(text: str) -> Answer | None:
    said = simplify(text)
    if said in YES_WORDS or said in ("1", "1 yes"):
        return Answer("yes", "Yes")
    if said in NO_WORDS or said in ("2", "2 no"):
        return Answer("no", "No")
    first = said.split(" ", 1)[0] if said else ""
    if first in YES_WORDS and not any(w in NO_WORDS for w in said.split()[1:]):
        return Answer("yes", "Yes")
    if first in NO_WORDS and not any(w in YES_WORDS for w in said.split()[1:]):
        return Answer("no", "No")
    return None


def _format_number(number: float) -> str:
    return answer_key(number)


def expected(question: Question) -> str:
    if question.type == "choice":
        return f"a number from 1 to {len(question.options)}"
    if question.type == "yesno":
        return "YES or NO"
    if question.type == "scale":
        return f"a number from {int(question.min or 0)} to {int(question.max or 0)}"
    if question.type == "number":
        low, high = question.min, question.max
        if low is not None and high is not None:
            return f"a number from {_format_number(low)} to {_format_number(high)}"
        if low is not None:
            return f"a number of at least {_format_number(low)}"
        if high is not None:
            return f"a number no bigger than {_format_number(high)}"
        return "a number"
    return f"a short answer in words (up to {question.max_length} characters)"


def parse(question: Question, text: str) -> Answer | Miss:
    text = text if isinstance(text, str) else ""
    if question.type == "text":
        stripped = text.strip()
        if not stripped or len(stripped) > question.max_length:
            return Miss(expected(question))
        return Answer(stripped, stripped)
    if question.type == "yesno":
        return _yesno(text) or Miss(expected(question))
    if question.type == "choice":
        return _pick(question, text) or Miss(expected(question))
    if question.type == "scale":
        number = _as_number(text)
        if number is not None and number.is_integer():
            point = int(number)
            if (
                question.min is not None
                and question.max is not None
                and question.min <= point <= question.max
            ):
                return Answer(str(point), question.labels.get(point, str(point)))
            return Miss(expected(question))
        if number is not None:
            return Miss(expected(question))  # 4.5 is between points, not a point
        return _pick(question, text) or Miss(expected(question))
    # number
    number = _as_number(text)
    if number is None:
        return Miss(expected(question))
    if (question.min is not None and number < question.min) or (
        question.max is not None and number > question.max
    ):
        return Miss(expected(question))
    value = _format_number(number)
    return Answer(value, value)
