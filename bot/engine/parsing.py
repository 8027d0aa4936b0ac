"""Forgiving parsing of a participant's reply, as an older person types it.

`2`, `2.`, ` two `, `(2)`, the option's label or a clear start of it, `Yes`/`y`/`yeah`/`ok`,
any case, stray spaces and punctuation. Nothing here raises on any input: a reply is either an
`Answer` or a `Miss` that says, kindly, what we expected.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise

from bot.i18n import t
from bot.scripts.survey import MULTI_SEPARATOR, Option, Question, answer_key

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
# Welsh: yes/no has no single word in Welsh; people answer with the verb of the question
# ("ydw", "ydy", "oes", "do", "bydd", "hoffwn") or "ie"; no is "na", "nac ydw", "naddo".
YES_WORDS |= {
    "ie",
    "ia",
    "ydw",
    "ydy",
    "ydyn",
    "ydych",
    "oes",
    "do",
    "bydd",
    "byddwn",
    "hoffwn",
    "iawn",
    "wrth gwrs",
    "ie plis",
    "ie diolch",
    "gwnaf",
    "cewch",
    "cei",
}
NO_WORDS |= {
    "na",
    "nac ydw",
    "nac ydy",
    "nac oes",
    "naddo",
    "nage",
    "na fydd",
    "dim",
    "dim diolch",
    "na diolch",
    "na hoffwn",
    "dim o gwbl",
    "byth",
}
TENS_WORDS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fourty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
# Words around a number that do not change it: "5 stars", "I am 72 years old".
NUMBER_FILLER = FILLER_WORDS | {
    "star",
    "stars",
    "years",
    "year",
    "yrs",
    "old",
    "aged",
    "im",
    "am",
    "a",
    "and",
    "out",
    "points",
    "give",
    "would",
    "rate",
    "score",
    "of",
    "get",
    "got",
    "was",
    "be",
}
# Units a number can come in. A reply in one the question does not ask in ("1 hour" to "How
# many minutes?") is asked again, never stored as 1; one the question names is just a word.
UNITS = (
    {"minute", "minutes", "min", "mins"},
    {"hour", "hours", "hr", "hrs"},
    {"day", "days"},
    {"week", "weeks", "wk", "wks"},
    {"month", "months", "mth", "mths", "mnth", "mnths", "mo", "mos"},
    {"year", "years", "yr", "yrs"},
    {"mile", "miles"},
    {"time", "times"},
)
NUMBER_FILLER |= {word for unit in UNITS for word in unit}
# Words that turn a reply against the option it names: "not poor" is not Poor. An option
# whose own label has the word ("Neither good nor poor", "Don't know") may of course use it.
NEGATIONS = {
    "not",
    "isnt",
    "wasnt",
    "arent",
    "werent",
    "dont",
    "didnt",
    "doesnt",
    "never",
    "neither",
    "nor",
    "cant",
    "couldnt",
    "wouldnt",
    "hardly",
    "nothing",
    "without",
    "ddim",
    "nid",
}
# Between several answers to a `multi` question, and words that carry nothing there.
MULTI_FILLER = FILLER_WORDS | {"and", "also", "plus", "both", "too", "as", "well", "a", "bit"}
_SEPARATORS = re.compile(r"\s*(?:,|;|&|\+|/|\n|\band\b|\ba\b(?= ))\s*")
_STARS = re.compile(r"^\s*([\u2605\u2b50\u2606*]\s*)+\s*$")
MIN_PREFIX = 3

MONTHS = {
    "january": 1,
    "february": 2,
    "march": 3,
    "april": 4,
    "may": 5,
    "june": 6,
    "july": 7,
    "august": 8,
    "september": 9,
    "october": 10,
    "november": 11,
    "december": 12,
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "sept": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
    # Welsh
    "ionawr": 1,
    "chwefror": 2,
    "mawrth": 3,
    "ebrill": 4,
    "mai": 5,
    "mehefin": 6,
    "gorffennaf": 7,
    "awst": 8,
    "medi": 9,
    "hydref": 10,
    "tachwedd": 11,
    "rhagfyr": 12,
}
MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# A two-digit year: 30-99 are the 1900s, 00-29 the 2000s (a birth year or a recent visit).
CENTURY_PIVOT = 30


@dataclass(frozen=True)
class Answer:
    value: str
    label: str


@dataclass(frozen=True)
class Miss:
    expected: str  # what we want, said plainly: "a number from 1 to 3"
    # Why it could not be used: unreadable | out_of_range | too_long | negated | several |
    # unclear (could mean two things) | unit | age_unit (a unit the question does not ask in)
    reason: str = field(default="unreadable", compare=False)
    # A number outside the question's range, as it would be stored: a script may end the
    # survey for it (a screen-out: `type: end` when: {age: {max: 17}}) rather than ask again.
    value: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Unsure:
    """A reply that most likely means `answer` but could mean something else ("NA": no, or
    not applicable?). Asked about ("Did you mean No?"), never stored as a guess."""

    answer: Answer


def simplify(text: str) -> str:
    """Lower case, accents and punctuation folded away, single spaces."""
    return _simplified(text or "")


# A reply is read against every option's names, each simplified: the same few strings, every
# message. Remembered (a pure function of the text); bounded, so no reply is held for long.
@lru_cache(maxsize=4096)
def _simplified(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.casefold().replace("’", "'")
    text = re.sub(r"[^\w\s']", " ", text)
    text = text.replace("'", "").replace("_", " ")
    return re.sub(r"\s+", " ", text).strip()


def _word_number(words: list[str]) -> float | None:
    """ "seventy two", "a hundred and five", "twenty-one": the one number these words say, with
    filler allowed around it; None for no number or two ("two three")."""
    runs: list[list[str]] = []
    current: list[str] = []
    numeric = NUMBER_WORDS.keys() | TENS_WORDS.keys() | {"hundred", "thousand"}
    for index, word in enumerate(words):
        joins = (
            word in ("and", "a")
            and current
            and index + 1 < len(words)
            and (words[index + 1] in numeric)
        )
        if word in numeric or joins:
            current.append(word)
            continue
        if current:
            runs.append(current)
            current = []
        if word not in NUMBER_FILLER:
            return None
    if current:
        runs.append(current)
    if len(runs) != 1:
        return None
    total, part, last = 0, 0, ""
    for word in runs[0]:
        if word in ("and", "a"):
            continue
        if word == "hundred":
            part = max(part, 1) * 100
        elif word == "thousand":
            total += max(part, 1) * 1000
            part = 0
        elif word in TENS_WORDS:
            if last in ("unit", "tens"):
                return None
            part += TENS_WORDS[word]
            last = "tens"
            continue
        else:
            if last == "unit" or (last == "tens" and NUMBER_WORDS[word] >= 10):
                return None
            part += NUMBER_WORDS[word]
            last = "unit"
            continue
        last = ""
    return float(total + part)


# `_as_number`'s patterns, compiled once: it reads every reply to a number or a scale, and
# `re.sub(pattern, ...)` looks each pattern up in re's cache every time.
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_TWO_NUMBERS = re.compile(r"\d\s*,\s*\d")
_ONE_NUMBER = re.compile(
    r"[^\d\-+.]*?([-+]?\d+(?:\.\d+)?)\s*\.?\s*(?:(?:/|out of|of)\s*\d+)?[^\d]*"
)


def _as_number(text: str) -> float | None:
    """A number written as digits or words, alone or in a short phrase ("about 3", "3 out of
    5", "5 stars", "seventy two"). Two numbers ("1,5", "1 or 2") are not one number."""
    raw = (text or "").strip().casefold()
    if _FRACTION.search(raw):
        return _with_fraction(raw)  # "12 and a half" is 12.5, never 12
    if _STARS.match(raw) and raw.strip().strip("*"):
        return float(sum(1 for ch in raw if ch in "\u2605\u2b50"))
    # "1,000" is a thousand; "1,5" or "1, 5" is two answers (or a decimal comma): not guessed.
    without_thousands = _THOUSANDS_COMMA.sub("", raw)
    if _TWO_NUMBERS.search(without_thousands):
        return None
    cleaned = without_thousands.replace(",", " ")
    words = simplify(text).split()
    if any(w in NEGATIONS for w in words):
        return None  # "not 5" is no answer we can store
    match = _ONE_NUMBER.fullmatch(cleaned)
    if match:
        number = float(match.group(1))
        if number != number or number in (float("inf"), float("-inf")):
            return None
        return number
    if len(words) > 8:
        return None
    # "three out of five": the second number is the scale, not an answer.
    if "out" in words and words.index("out") + 2 < len(words) + 1:
        at = words.index("out")
        if words[at + 1 : at + 2] == ["of"]:
            words = words[:at]
    # "the second one": the ordinal is the answer, "one" is just a word.
    ordinals = [ORDINAL_WORDS[w] for w in words if w in ORDINAL_WORDS]
    if len(ordinals) == 1:
        return float(ordinals[0])
    if ordinals:
        return None
    # "two please" is 2; "the green one" is not 1.
    return _word_number(words)


# A question about age asks in years, whether or not it says so ("How old are you?").
AGE_WORDS = {"old", "age", "aged", "oed"}  # oed: Welsh, age
YEARS = next(unit for unit in UNITS if "years" in unit)


def asks_age(question: Question) -> bool:
    return question.type == "number" and bool(AGE_WORDS & set(simplify(question.ask).split()))


_GLUED = re.compile(r"(\d)([a-z])")


def _words_apart(text: str) -> list[str]:
    """The reply's words, with a number's glued unit or hedge apart: "1hr", "80ish"."""
    return _GLUED.sub(r"\1 \2", simplify(text)).split()


MINUTES = next(unit for unit in UNITS if "minutes" in unit)
MONTHS_UNIT = next(unit for unit in UNITS if "months" in unit)
# "18m" straight after a number: months, minutes or metres. It is the unit only where the
# question asks in minutes or months; anywhere else ("How old are you?") it is another unit.
# (Not "m" elsewhere: "I m 72" is "I'm 72".)
_M_AFTER_A_NUMBER = re.compile(r"\d\s*m\b")


def _other_unit(question: Question, text: str) -> bool:
    """The reply gives its number in a unit the question does not ask in ("18 months" to
    "How old are you?")."""
    said = set(_words_apart(text))
    asked = set(simplify(question.ask).split())
    asked_in = [unit for unit in UNITS if unit & asked] or ([YEARS] if asks_age(question) else [])
    if not asked_in:
        return False
    short_m = bool(_M_AFTER_A_NUMBER.search(simplify(text)))
    if short_m and MINUTES not in asked_in and MONTHS_UNIT not in asked_in:
        return True
    return any(unit & said and unit not in asked_in for unit in UNITS)


# Words that make a number something other than the answer: "I'm 72 next month", "nearly
# 80", "over 65". Asked again, never stored as the number they sit beside.
HEDGES = {
    "next",
    "nearly",
    "almost",
    "soon",
    "turning",
    "turn",
    "over",
    "under",
    "more",
    "less",
    "plus",
    "odd",
    "ish",
    "till",
    "until",
}
# A time beside a number ("72 in May", "72 on my birthday") ties it to then, as "next month"
# does: asked again, unless the question itself names that time ("How many times did you
# come in May?", "How old will you be on your next birthday?").
WHEN_WORDS = set(MONTHS) | {"birthday", "tomorrow", "christmas", "easter"}
WHEN_WORDS |= {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
WHEN_WORDS |= {"spring", "summer", "autumn", "winter"}


def _hedged(question: Question, text: str) -> bool:
    """A word that makes the number something other than the answer ("80ish", "nearly 80",
    "72 in May"). "80ish" is apart only after `_words_apart`; "eightyish" is one word."""
    said = _words_apart(text)
    words = set(said)
    numbers = TENS_WORDS.keys() | NUMBER_WORDS.keys()
    words |= {"ish" for word in words if word.endswith("ish") and word[:-3] in numbers}
    if any(
        after == "something" and (before.isdigit() or before in numbers)
        for before, after in pairwise(said)
    ):
        return True  # "80 something", as "80 odd"; but "something like 20" is about 20
    asked = set(simplify(question.ask).split())
    return bool(words & HEDGES or (words & WHEN_WORDS) - asked)


# "12 and a half", "twelve and a quarter", "12½": the part after the whole number, with
# only words like "years old" after it (a unit hides no fraction: "12 and a half years old").
_FRACTION = re.compile(
    r"\s*(?:and\s+(?:a\s+)?(half|quarter|three\s+quarters)\b|(\u00bd|\u00bc|\u00be))"
)
_FRACTION_VALUE = {"half": 0.5, "quarter": 0.25, "\u00bd": 0.5, "\u00bc": 0.25, "\u00be": 0.75}


def _with_fraction(text: str) -> float | None:
    """A whole number and a fraction said in words, or None if the reply has none."""
    found = _FRACTION.search((text or "").casefold())
    if found is None:
        return None
    part = found.group(1) or found.group(2)
    if any(word not in NUMBER_FILLER for word in simplify(text[found.end() :]).split()):
        return None  # "12 and a half or 13": not one number
    whole = _as_number(text[: found.start()])
    if whole is None:
        return None
    return whole + _FRACTION_VALUE.get(re.sub(r"\s+", " ", part), 0.75)


_OUT_OF = re.compile(r"(?:out of|/)\s*(\d+)")


def _out_of(text: str) -> float | None:
    """The N in "3 out of 10" or "3/10": the scale the person was thinking of."""
    match = _OUT_OF.search((text or "").casefold())
    if match:
        return float(match.group(1))
    words = simplify(text).split()
    if "out" in words and words[words.index("out") + 1 : words.index("out") + 2] == ["of"]:
        return _word_number(words[words.index("out") + 2 :])
    return None


def _singular(said: str) -> str:
    """ "fridays" -> "friday": a plural of an option's name names it too."""
    return " ".join(
        w[:-1] if len(w) >= 5 and w.endswith("s") and not w.endswith("ss") else w
        for w in said.split()
    )


def _names(option: Option) -> tuple[str, ...]:
    """Every way of naming an option, simplified: its label, its value, its synonyms."""
    # By all three (an option's equality leaves its synonyms out).
    return _names_of(option.label, option.value, option.synonyms)


@lru_cache(maxsize=1024)
def _names_of(label: str, value: str, synonyms: tuple[str, ...]) -> tuple[str, ...]:
    names = [simplify(label), simplify(value), *(simplify(w) for w in synonyms)]
    return tuple(n for n in dict.fromkeys(names) if n)


# Words that name an option only to leave it out: "everything but sausage", "all except
# sausage", "better than poor". Before the option's name they turn the reply against it.
EXCLUDING = {"but", "except", "excepting", "excluding", "than", "besides", "apart", "instead"}


def _negated(said: str, option: Option) -> bool:
    own = {w for name in _names(option) for w in name.split()}
    words = said.split()
    if any(w in NEGATIONS | {"no", "nope", "na"} and w not in own for w in words):
        return True
    starts = [
        m.start()
        for name in _names(option)
        for m in [re.search(rf"\b{re.escape(name)}\b", said)]
        if m is not None
    ]
    before = said[: min(starts)].split() if starts else []
    return any(w in EXCLUDING and w not in own for w in before)


def _found(options: tuple[Option, ...], said: str) -> list[Option]:
    """The options named inside a reply, each whole; a name inside a longer one that also
    matches ("poor" inside "very poor") is the longer one's."""
    spans: list[tuple[int, int, Option]] = []
    for option in options:
        for name in _names(option):
            for m in re.finditer(rf"\b{re.escape(name)}\b", said):
                spans.append((m.start(), m.end(), option))
    kept = [
        (a, b, o)
        for a, b, o in spans
        if not any(c <= a and b <= d and (d - c) > (b - a) for c, d, _ in spans)
    ]
    return list(dict.fromkeys(o for _, _, o in kept))


def _leftover(options: list[Option], said: str) -> list[str]:
    rest = said
    for option in options:
        for name in sorted(_names(option), key=len, reverse=True):
            rest = re.sub(rf"\b{re.escape(name)}\b", " ", rest)
    return rest.split()


_A_STAR = re.compile(r"star|\u2605|\u2b50", re.IGNORECASE)
_V = re.compile(r"\bv\b")


def _pick(question: Question, text: str) -> Answer | Miss | None:
    """One option: by number, letter, label, value or synonym. A Miss when the reply names
    an option only to deny it, or names two."""
    options = question.choices
    number = _as_number(text)
    out_of = _out_of(text) if question.type != "scale" else None
    if number is not None and out_of is not None and out_of > len(options):
        # "3 out of 10": a score on a scale of its own, outside this list, as on a scale.
        return Miss(expected(question), "out_of_range")
    # On a scale the number is the point itself, handled by the caller, not the nth option.
    if (
        question.type != "scale"
        and number is not None
        and number.is_integer()
        and 1 <= number <= len(options)
        and not _A_STAR.search(text or "")
        and out_of is None  # "2 out of 3" is a score too, not option 2
    ):
        opt = options[int(number) - 1]
        return Answer(opt.value, opt.label)
    said = simplify(text)
    if not said:
        return None
    if " " in said:
        said = _V.sub("very", said)  # "v good"
    for opt in options:
        if said in _names(opt) or _singular(said) in _names(opt):
            return Answer(opt.value, opt.label)
    named = _found(options, said) or _found(options, _singular(said))
    if len(named) > 1:
        return Miss(expected(question), "several")
    if len(said) >= MIN_PREFIX:
        # Not on a scale: "very" or "not" begins an end label, and names no point.
        starts = [
            o for o in options if question.type != "scale" and simplify(o.label).startswith(said)
        ]
        if len(starts) == 1:
            return Answer(starts[0].value, starts[0].label)
        # A reply that contains exactly one option's whole label ("I'd say printed please").
        if len(named) == 1:
            if _negated(said, named[0]):
                return Miss(expected(question), "negated")
            return Answer(named[0].value, named[0].label)
        # A word or two out of exactly one label: "internet" for "The internet", "phone" for
        # "By phone call" (but "very", in "Very good" and "Very poor", names neither).
        # Not on a scale, whose end labels are not the only points ("good" is not 5), and
        # not with a "no" or a negation ("no phone please" is not By phone call).
        said_words = set(said.split())
        words = said_words - FILLER_WORDS
        plain = not (said_words & (NEGATIONS | {"no", "nope", "na"}))
        holding = [o for o in options if words and words <= set(simplify(o.label).split())]
        if question.type != "scale" and plain and len(holding) == 1:
            return Answer(holding[0].value, holding[0].label)
    if len(said) == 1 and said.isalpha() and question.type == "choice":
        # Letters a, b, c... as in a printed form.
        index = ord(said) - ord("a")
        if 0 <= index < len(options):
            return Answer(options[index].value, options[index].label)
    return None


def _multi(question: Question, text: str) -> Answer | Miss:
    """All that apply: "1 3", "1,3", "1 and 3", "red and navy", "Red, Blue"."""
    options, extras = question.options, question.extras
    miss = Miss(expected(question))
    said = simplify(text)
    if not said:
        return miss
    for extra in extras:  # "Don't know" stands alone
        if said in _names(extra):
            return Answer(extra.value, extra.label)
    chosen: list[Option] = []
    words = said.split()
    numbers = [w for w in words if w.isdigit()]
    if numbers and all(w.isdigit() or w in MULTI_FILLER for w in words):
        # Keys pressed together ("13") on a list of nine or fewer are two answers.
        if len(numbers) == 1 and len(options) <= 9 and len(numbers[0]) > 1:
            numbers = list(numbers[0])
        for n in numbers:
            if not 1 <= int(n) <= len(options):
                return Miss(expected(question), "out_of_range")
            chosen.append(options[int(n) - 1])
    else:
        named = _found(options, said)
        rest = _leftover(named, said)
        if named and all(w in MULTI_FILLER for w in rest):
            if any(_negated(said, o) for o in named):
                return Miss(expected(question), "negated")
            chosen = named
        else:
            for part in _SEPARATORS.split(text or ""):
                if not simplify(part) or simplify(part) in MULTI_FILLER:
                    continue
                single = Question(id=question.id, type="choice", ask="", options=options)
                got = _pick(single, part)
                if not isinstance(got, Answer):
                    return got if isinstance(got, Miss) else miss
                chosen.append(next(o for o in options if o.value == got.value))
    if not chosen:
        return miss
    picked = [o for o in options if o in chosen]  # in the list's order, once each
    return Answer(MULTI_SEPARATOR.join(o.value for o in picked), "; ".join(o.label for o in picked))


def _date(text: str) -> Answer | None:
    """A day as people in the UK write it: 3/4/1948, 3.4.48, 3rd March 1948, March 3 1948,
    1948-03-03. Day before month, always (the UK way); a year is needed."""
    raw = (text or "").strip().casefold()
    keyed = re.fullmatch(r"(\d{2})(\d{2})(\d{4}|\d{2})", raw)  # keys on a phone: 03041948
    if keyed:
        raw = "/".join(keyed.groups())
    iso = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", raw)
    if iso:
        year, month, day = int(iso[1]), int(iso[2]), int(iso[3])
    else:
        numeric = re.fullmatch(r"(\d{1,2})\s*[/.\-]\s*(\d{1,2})\s*[/.\-]\s*(\d{2}|\d{4})", raw)
        if numeric:
            day, month, year = int(numeric[1]), int(numeric[2]), int(numeric[3])
            if len(numeric[3]) == 2:
                year += 1900 if year >= CENTURY_PIVOT else 2000
        else:
            words = [w for w in simplify(raw).split() if w not in ("the", "of", "on", "o")]
            words = [re.sub(r"^(\d{1,2})(?:st|nd|rd|th|af|ed|fed|ydd)$", r"\1", w) for w in words]
            months = [MONTHS[w] for w in words if w in MONTHS]
            digits = [w for w in words if w.isdigit()]
            if len(months) != 1 or len(digits) != 2 or len(words) != 3:
                return None
            month = months[0]
            day_text, year_text = digits
            if len(day_text) > 2:
                return None
            day, year = int(day_text), int(year_text)
            if len(year_text) == 2:
                year += 1900 if year >= CENTURY_PIVOT else 2000
            elif len(year_text) != 4:
                return None
    try:
        when = dt.date(year, month, day)
    except ValueError:
        return None
    return Answer(when.isoformat(), f"{when.day} {MONTH_NAMES[when.month - 1]} {when.year}")


# "No" that means yes: an answer to a thank-you, not to the question.
_NO_THAT_MEANS_YES = re.compile(r"^no (?:problems?|worries|worry|bother|trouble)\b")


def names_an_option(question: Question, text: str) -> bool:
    """The reply is exactly one of the question's answers, by its label, value or synonym."""
    said = simplify(text)
    return bool(said) and any(said in _names(option) for option in question.choices)


def says_yes(text: str) -> bool:
    """A yes, however it is put ("yes", "yeah please", "ydw"), as a yes/no question reads it."""
    found = _yesno(text)
    return found is not None and found.value == "yes"


def yes_or_no(text: str) -> str | None:
    """ "yes", "no" or None: a reply to a question of ours ("Did you mean No?"), where a
    tapped or pressed 1 is yes and 2 is no."""
    found = _yesno(text)
    return None if found is None else found.value


def _yesno(text: str) -> Answer | None:
    said = simplify(text)
    if _NO_THAT_MEANS_YES.match(said):
        return None  # asked again: "no problem" to "May we...?" is no answer to store
    if said in YES_WORDS or said in ("1", "1 yes"):
        return Answer("yes", "Yes")
    if said in NO_WORDS or said in ("2", "2 no"):
        return Answer("no", "No")
    words = said.split()
    first = words[0] if words else ""
    if first in YES_WORDS and not any(w in NO_WORDS or w in NEGATIONS for w in words[1:]):
        return Answer("yes", "Yes")
    if first in NO_WORDS and not any(w in YES_WORDS for w in words[1:]):
        return Answer("no", "No")
    return None


# "NA", "n/a": not applicable in English, and "na" is no in Welsh (and "nah" typed short).
NOT_APPLICABLE = {"na", "n a"}
# After a leading "no", words that keep it a plain no ("no thank you", "no I didn't", "no
# not really"). Anything else may say no to something other than the question: "no
# mistakes" or "no complaints" to "Was the grammar good?" means yes; so it is asked again.
_PLAIN_NO_TAIL = NEGATIONS | {"no", "nope", "nah", "n", "na"}
_PLAIN_NO_TAIL |= {"thanks", "thank", "you", "ta", "thx", "please", "sorry", "afraid", "x", "xx"}
_PLAIN_NO_TAIL |= {"i", "im", "we", "it", "its", "that", "thats", "this", "really", "at", "all"}
_PLAIN_NO_TAIL |= {"way", "rather", "definitely", "certainly", "absolutely", "for", "asking"}
_PLAIN_NO_TAIL |= {"do", "did", "does", "have", "has", "had", "am", "is", "are", "was", "were"}
_PLAIN_NO_TAIL |= {"will", "would", "can", "could", "should", "shall", "to", "be", "sadly"}
_PLAIN_NO_TAIL |= {"havent", "hasnt", "hadnt", "wont", "shouldnt", "aint", "unfortunately"}
_PLAIN_NO_TAIL |= {"nac", "ydw", "ydy", "oes", "diolch", "dim", "o", "gwbl", "yn", "fawr"}


def _unclear_no(text: str) -> bool:
    """A "no" (or "never") followed by words that may make it about something else."""
    words = simplify(text).split()
    return (
        len(words) > 1
        and words[0] in NO_WORDS
        and not set(words[1:]) <= _PLAIN_NO_TAIL
        and simplify(text) not in NO_WORDS
    )


def _yesno_reply(question: Question, text: str, language: str | None) -> Answer | Miss | Unsure:
    said = simplify(text)
    no = Answer("no", question.yes_no[1])
    if said == "n a" or (said == "na" and language != "cy"):
        # In Welsh "na" is no; otherwise it may be "n/a", which is not an answer to store.
        return Unsure(no)
    if _unclear_no(text):
        return Miss(expected(question), "unclear")
    return _yesno(text) or Miss(expected(question))


# Polarity of a scale's end labels, to tell a scale whose 1 is best ("1 = Very good").
_GOOD = {"good", "excellent", "best", "great", "satisfied", "likely", "agree", "useful"}
_GOOD |= {"happy", "helpful", "easy", "well", "outstanding", "perfect", "pleased", "better"}
_BAD = {"poor", "bad", "worst", "terrible", "dissatisfied", "unlikely", "disagree", "useless"}
_BAD |= {"unhappy", "unhelpful", "difficult", "hard", "awful", "worse", "unsatisfied"}


def _polarity(label: str) -> int:
    words = set(simplify(label).split())
    if words & _BAD or (words & _GOOD and words & NEGATIONS):
        return -1
    return 1 if words & _GOOD else 0


def best_first(question: Question) -> bool:
    """A scale whose lowest point is the best ("1 Very good ... 5 Very poor")."""
    if question.type != "scale" or question.min is None or question.max is None:
        return False
    low = question.labels.get(int(question.min))
    high = question.labels.get(int(question.max))
    return _polarity(low or "") > _polarity(high or "") and (low is not None or high is not None)


_STARRED = re.compile(r"star|[\u2605\u2b50\u2606]|\d\s*\*", re.IGNORECASE)


def _stars(text: str) -> bool:
    return bool(_STARRED.search(text or ""))


def _format_number(number: float) -> str:
    return answer_key(number)


def range_words(question: Question, language: str | None = None) -> str | None:
    """ "from 18 to 120" for a number question with a range, said up front and on a miss."""
    low, high = question.min, question.max
    if question.type != "number":
        return None
    if low is not None and high is not None:
        return t(
            language, "from {low} to {high}", low=_format_number(low), high=_format_number(high)
        )
    if low is not None:
        return t(language, "of at least {low}", low=_format_number(low))
    if high is not None:
        return t(language, "no bigger than {high}", high=_format_number(high))
    return None


def expected(question: Question, language: str | None = None) -> str:
    """What we expect, said plainly, in the person's language."""
    extra = "".join(t(language, ", or {label}", label=o.label) for o in question.extras)
    if question.type == "choice":
        return t(language, "a number from 1 to {high}", high=len(question.choices))
    if question.type == "multi":
        return (
            t(
                language,
                "the numbers of all that apply, like 1 3 (from 1 to {high})",
                high=len(question.options),
            )
            + extra
        )
    if question.type == "yesno":
        return t(language, "YES or NO")
    if question.type == "scale":
        return (
            t(
                language,
                "a number from {low} to {high}",
                low=int(question.min or 0),
                high=int(question.max or 0),
            )
            + extra
        )
    if question.type == "number":
        bounds = range_words(question, language)
        return (
            t(language, "a number {bounds}", bounds=bounds) if bounds else t(language, "a number")
        )
    if question.type == "date":
        return t(language, "a date with the year, like 3/4/1948 or 3 April 1948")
    return t(
        language,
        "a short answer in words (up to {limit} characters)",
        limit=question.max_length,
    )


def parse(question: Question, text: str, language: str | None = None) -> Answer | Miss | Unsure:
    """What a reply means for this question: an answer, a miss saying what we expect, or
    (where it could mean two things) the likelier answer to ask about. `language` is the
    person's, for words that mean one thing in Welsh and another in English ("na")."""
    text = text if isinstance(text, str) else ""
    if question.type == "text":
        stripped = text.strip()
        if len(stripped) > question.max_length:
            return Miss(expected(question), "too_long")
        if not stripped:
            return Miss(expected(question))
        return Answer(stripped, stripped)
    if question.type == "yesno":
        return _yesno_reply(question, text, language)
    if question.type == "date":
        return _date(text) or Miss(expected(question))
    if question.type == "multi":
        return _multi(question, text)
    if question.type == "choice":
        if simplify(text) in NOT_APPLICABLE:
            # "na" is no in Welsh, "n/a" not applicable: an option coded `na` is asked about.
            coded = [o for o in question.choices if simplify(o.value) in NOT_APPLICABLE]
            if len(coded) == 1 and simplify(coded[0].label) not in NOT_APPLICABLE:
                return Unsure(Answer(coded[0].value, coded[0].label))
        return _pick(question, text) or Miss(expected(question))
    if question.type == "number" and _hedged(question, text):
        return Miss(expected(question), "unclear")
    if question.type in ("scale", "number") and _other_unit(question, text):
        return Miss(expected(question), "age_unit" if asks_age(question) else "unit")
    if question.type == "scale":
        out_of = _out_of(text)
        if out_of is not None and question.max is not None and out_of != question.max:
            return Miss(expected(question), "out_of_range")  # "3 out of 10" on a 1 to 5 scale
        number = _as_number(text)
        if number is not None and number.is_integer():
            point = int(number)
            if (
                question.min is not None
                and question.max is not None
                and question.min <= point <= question.max
            ):
                if _stars(text) and best_first(question):
                    # "5 stars" means the best; here the best is the lowest point.
                    meant = int(question.min + question.max) - point
                    return Unsure(Answer(str(meant), question.labels.get(meant, str(meant))))
                return Answer(str(point), question.labels.get(point, str(point)))
            return Miss(expected(question), "out_of_range")
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
        return Miss(expected(question), "out_of_range", _format_number(number))
    value = _format_number(number)
    return Answer(value, value)
