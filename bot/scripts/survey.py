"""Survey scripts: load the YAML format of CONTRACT.md into typed, validated objects.

Every mistake is one line naming the file, the question and what is wrong, and all of a file's
mistakes are reported together so staff fix them in one pass.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from bot.i18n import LANGUAGES, N_, STAFF_LANGUAGE, language_of, t
from bot.scripts import templates

QUESTION_TYPES = (
    "choice",
    "yesno",
    "scale",
    "number",
    "text",
    "multi",  # several answers from a list
    "date",  # a day, as people in the UK write it; stored as ISO 8601
    "statement",  # says something, asks nothing, and goes on
    "end",  # says its closing words and ends the survey here (a screen-out)
)
ASKS_NOTHING = ("statement", "end")
CLOSED_TYPES = ("choice", "yesno", "scale", "multi")
MULTI_SEPARATOR = ";"  # between the values of a `multi` answer, as stored
SURVEY_KEYS = {
    "id",
    "title",
    "keyword",
    "intro",
    "questions",
    "outro",
    "description",
    "fields",
    "translations",
    "channels",
}
TRANSLATED_QUESTION_KEYS = {"ask", "say", "reask", "options", "labels"}
QUESTION_KEYS = {
    "id",
    "type",
    "ask",
    "options",
    "optional",
    "when",
    "sets",
    "min",
    "max",
    "labels",
    "max_length",
    "say",  # statement and end: the words (`ask` works too)
    "reask",  # the script's own words when a reply cannot be used
    "dont_know",  # true: a "Don't know" answer beside a scale or choice
    "prefer_not_to_say",  # true: a "Prefer not to say" answer beside a scale or choice
}
# The extra answers a scale or choice can offer beside its own, with the words that mean them.
EXTRAS = {
    "dont_know": (
        "dont-know",
        N_("Don't know"),
        ("dk", "dunno", "not sure", "no idea", "unsure", "dont know", "do not know"),
    ),
    "prefer_not_to_say": (
        "prefer-not",
        N_("Prefer not to say"),
        ("prefer not", "rather not say", "id rather not say", "pnts", "private"),
    ),
}
OPERATORS = ("any", "all", "not")  # `when` keys that combine conditions
SETTABLE = {"recontact"}
TEMPLATE_NAMES = {"name", "answers", "survey"}
MAX_KEYPAD_OPTIONS = 9  # one key press each: 1 to 9 (0 skips, * repeats)
DEFAULT_TEXT_MAX_LENGTH = 1000
RESERVED_KEYWORDS = {
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
    "START",
    "HELP",
    "REPEAT",
    "SKIP",
    "YES",
    "NO",
    "INFO",
    "UNSTOP",
    # Words that switch language, and the Welsh commands (bot.i18n, bot.engine.keywords).
    "CYMRAEG",
    "ENGLISH",
    "SAESNEG",
    "WELSH",
    "STOPIO",
    "DECHRAU",
    "CYMORTH",
    "AILADRODD",
    "ETO",
    "HEPGOR",
}
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class SurveyError(ValueError):
    """A script is not valid; `problems` holds one line for each mistake."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Option:
    value: str
    label: str
    synonyms: tuple[str, ...] = field(default=(), compare=False)
    extra: bool = field(default=False, compare=False)  # "Don't know" beside the scale


# --- conditions (`when`) -------------------------------------------------------------------


@dataclass(frozen=True)
class Test:
    """One earlier answer: any of `values`, or a number within `low`..`high` (inclusive)."""

    question_id: str
    values: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None

    def describe(self) -> str:
        if self.values:
            return f"{self.question_id}={'/'.join(self.values)}"
        low = "" if self.low is None else answer_key(self.low)
        high = "" if self.high is None else answer_key(self.high)
        return f"{self.question_id} in {low}..{high}"


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Condition, ...]

    def describe(self) -> str:
        return ", ".join(p.describe() for p in self.parts)


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Condition, ...]

    def describe(self) -> str:
        return "any of [" + "; ".join(p.describe() for p in self.parts) + "]"


@dataclass(frozen=True)
class Not:
    part: Condition

    def describe(self) -> str:
        return f"not {self.part.describe()}"


Condition = Test | AllOf | AnyOf | Not


def tests_in(condition: Condition | None) -> list[Test]:
    if condition is None:
        return []
    if isinstance(condition, Test):
        return [condition]
    if isinstance(condition, Not):
        return tests_in(condition.part)
    return [t for part in condition.parts for t in tests_in(part)]


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number else None


def holds(condition: Condition | None, answered: Mapping[str, str]) -> bool | None:
    """Whether a condition holds for these answers; None when it rests on a question with no
    usable answer (unreadable, skipped or never asked), so the caller can say so."""
    if condition is None:
        return True
    if isinstance(condition, Test):
        given = answered.get(condition.question_id)
        if given is None:
            return None
        if condition.values:
            # A `multi` answer holds several values: any one of them matches.
            return bool(set(given.split(MULTI_SEPARATOR)) & set(condition.values))
        number = _number(given)
        if number is None:
            return False
        return (condition.low is None or number >= condition.low) and (
            condition.high is None or number <= condition.high
        )
    if isinstance(condition, Not):
        inner = holds(condition.part, answered)
        return None if inner is None else not inner
    results = [holds(part, answered) for part in condition.parts]
    if isinstance(condition, AllOf):
        if any(r is False for r in results):
            return False
        return None if any(r is None for r in results) else True
    if any(r is True for r in results):
        return True
    return None if any(r is None for r in results) else False


@dataclass(frozen=True)
class Question:
    id: str
    type: str
    ask: str
    options: tuple[Option, ...] = ()
    optional: bool = False
    when: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sets: str | None = None
    min: float | None = None
    max: float | None = None
    labels: Mapping[int, str] = field(default_factory=dict)
    max_length: int = DEFAULT_TEXT_MAX_LENGTH
    condition: Condition | None = field(default=None, compare=False)
    reask: str | None = None
    extras: tuple[Option, ...] = ()  # "Don't know", "Prefer not to say"
    yes_no: tuple[str, str] = (N_("Yes"), N_("No"))  # a yesno's two labels, in its language

    def option(self, value: str) -> Option | None:
        """The answer with this value: an option, a yes/no, a scale point or an extra."""
        return next((o for o in self.choices if o.value == value), None)

    @property
    def asks(self) -> bool:
        """False for a statement or an ending: it says something and waits for nothing."""
        return self.type not in ASKS_NOTHING

    # Read for every reply (parsing, asking, labels): worked out once per question, which
    # never changes (`cached_property` keeps it beside the frozen fields, outside eq and hash).
    @cached_property
    def points(self) -> tuple[Option, ...]:
        """The question's own answers, numbered from 1, without the extras."""
        if self.type in ("choice", "multi"):
            return self.options
        if self.type == "yesno":
            return (Option("yes", self.yes_no[0]), Option("no", self.yes_no[1]))
        if self.type == "scale":
            assert self.min is not None and self.max is not None
            return tuple(
                Option(str(n), self.labels.get(n, str(n)))
                for n in range(int(self.min), int(self.max) + 1)
            )
        return ()

    @cached_property
    def choices(self) -> tuple[Option, ...]:
        """What a person picks from, for every closed question type: its own answers, then
        any extras ("Don't know")."""
        points = self.points
        return (*points, *self.extras) if points else ()

    @cached_property
    def templated(self) -> bool:
        """Its words or an answer's label is a template (piping an earlier answer)."""
        return "{" in self.ask or any("{" in o.label for o in self.choices)

    @cached_property
    def plain_words(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        """Its words and its answers' (value, label) as `templates.render` gives them when
        none is a template (`templated` False): the same for everyone, so worked out once."""
        return templates.render(self.ask, {}), tuple(
            (o.value, templates.render(o.label, {})) for o in self.choices
        )


@dataclass(frozen=True)
class Survey:
    id: str
    title: str
    questions: tuple[Question, ...]
    intro: str | None = None
    outro: str | None = None
    keyword: str | None = None
    description: str | None = None
    source: str = ""
    path: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)  # `{{ survey.<name> }}` in prompts
    # language -> its words: {"title", "intro", "outro", "questions": {id: {"ask", "say",
    # "reask", "options": {value: label}, "labels": {point: label}}}}
    translations: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # channel name -> that channel's options for this survey (`channels: {<name>: {...}}`),
    # as written: the channel the key names checks them (`Channel.check_options`, run by
    # `involve lint`) and its sender reads them (`Outgoing.options`).
    channel_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()

    # Asked for the waiting question on every reply (and again for the next one): found by
    # id in a dict made once per survey, not by a walk along its questions.
    @cached_property
    def _positions(self) -> dict[str, int]:
        positions: dict[str, int] = {}
        for i, q in enumerate(self.questions):
            positions.setdefault(q.id, i)  # the first, as a walk would find
        return positions

    @cached_property
    def _asked_numbers(self) -> dict[str, int]:
        numbers: dict[str, int] = {}
        for n, q in enumerate(self.asked, start=1):
            numbers.setdefault(q.id, n)
        return numbers

    def question(self, question_id: str) -> Question:
        i = self._positions.get(question_id)
        if i is None:
            raise KeyError(question_id)
        return self.questions[i]

    def index(self, question_id: str) -> int:
        i = self._positions.get(question_id)
        if i is None:
            return next(i for i, q in enumerate(self.questions) if q.id == question_id)  # raises
        return i

    def number(self, question: Question) -> int:
        """Its 1-based position among the questions that ask something ("Question 2 of 5"),
        0 for one that asks nothing or is not this survey's."""
        n = self._asked_numbers.get(question.id, 0)
        if n and (self.asked[n - 1] is question or self.asked[n - 1] == question):
            return n
        return 0

    def in_language(self, language: str | None) -> Survey:
        """This survey in another language: its own translations, the service's words for
        "Don't know", and each option's label in the script's language read as a synonym (so
        a reply in English still counts). Untranslated words stay as written."""
        code = language_of(language)
        if code == STAFF_LANGUAGE:
            return self
        return _localised(self, code, self.translations.get(code, {}), t)

    @cached_property
    def asked(self) -> tuple[Question, ...]:
        """The questions that wait for an answer (not statements or endings)."""
        return tuple(q for q in self.questions if q.asks)

    @property
    def most_choices(self) -> int:
        """The longest list of answers any question offers (a keypad carries at most 9)."""
        return max((len(q.choices) for q in self.questions), default=0)

    def crowded(self, channel: Any) -> tuple[Question, int] | None:
        """The first question with more answers than this channel can offer one by one (a
        keypad has keys 1 to 9, Telegram 100 buttons), and how many it has; None if none."""
        if channel.max_choices is None:
            return None
        for question in self.questions:
            offered = channel.answers_offered(question)
            if offered > channel.max_choices:
                return question, offered
        return None

    def too_many_for(self, channel: Any) -> str | None:
        """Why this channel cannot carry the survey, in a phrase; None when it can."""
        found = self.crowded(channel)
        if found is None:
            return None
        question, offered = found
        return (
            f"a question offers {offered} answers ({question.id!r}) and a {channel.title} "
            f"offers at most {channel.max_choices}"
        )


_LOCALISED: dict[tuple[int, str], Survey] = {}


def _localised(survey: Survey, code: str, words: Mapping[str, Any], t: Any) -> Survey:
    key = (id(survey), code)
    cached = _LOCALISED.get(key)
    if cached is not None and cached.source == survey.source:
        return cached
    from dataclasses import replace

    questions = []
    for q in survey.questions:
        own = words.get("questions", {}).get(q.id, {})
        labels = own.get("options", {})
        options = tuple(
            replace(o, label=labels.get(o.value, o.label), synonyms=(*o.synonyms, o.label))
            for o in q.options
        )
        extras = tuple(
            replace(o, label=t(code, o.label), synonyms=(*o.synonyms, o.label)) for o in q.extras
        )
        questions.append(
            replace(
                q,
                ask=own.get("say" if q.type in ASKS_NOTHING else "ask", q.ask),
                reask=own.get("reask", q.reask),
                options=options,
                extras=extras,
                labels={**q.labels, **own.get("labels", {})},
                yes_no=(t(code, q.yes_no[0]), t(code, q.yes_no[1])),
            )
        )
    made = replace(
        survey,
        title=words.get("title", survey.title),
        intro=words.get("intro", survey.intro),
        outro=words.get("outro", survey.outro),
        questions=tuple(questions),
    )
    if len(_LOCALISED) > 256:
        _LOCALISED.clear()
    _LOCALISED[key] = made
    return made


def missing_translations(survey: Survey) -> list[str]:
    """One line for each prompt, option or label a declared language has no words for."""
    lines: list[str] = []
    for code, words in sorted(survey.translations.items()):
        for key in ("intro", "outro"):
            if getattr(survey, key) and key not in words:
                lines.append(f"{key}: no {code} translation")
        given = words.get("questions", {})
        for q in survey.questions:
            own = given.get(q.id, {})
            main = "say" if q.type in ASKS_NOTHING else "ask"
            if main not in own:
                lines.append(f"question {q.id!r}: no {code} translation of {main}")
            if q.reask and "reask" not in own:
                lines.append(f"question {q.id!r}: no {code} translation of reask")
            for o in q.options:
                if o.value not in own.get("options", {}):
                    lines.append(f"question {q.id!r}: no {code} label for option {o.value!r}")
            for point in q.labels:
                if point not in own.get("labels", {}):
                    lines.append(f"question {q.id!r}: no {code} label for point {point}")
    return lines


def answer_key(value: Any) -> str:
    """The text form in which answers and `when` values are compared and stored."""
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def load_file(path: str | Path) -> Survey:
    p = Path(path)
    try:
        source = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SurveyError([f"{p}: no such file"]) from None
    except UnicodeDecodeError as exc:
        raise SurveyError([f"{p}: not UTF-8 text ({exc.reason})"]) from None
    return load_text(source, str(p))


def load_text(source: str, path: str = "<script>") -> Survey:
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SurveyError([f"{path}{where}: not valid YAML: {problem}"]) from None
    return _Builder(path, source).build(data)


_BOOL_TAG = "tag:yaml.org,2002:bool"


def _bool_words(source: str) -> dict[tuple[str, ...], str]:
    """Where YAML read a word as true/false (an unquoted Yes, No, On, Off), the word as
    written, by its path ("questions", "0", "options", "1", "label"), so the suggested fix
    quotes the word staff wrote."""
    try:
        root = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    found: dict[tuple[str, ...], str] = {}
    stack: list[tuple[tuple[str, ...], yaml.Node]] = [((), root)] if root is not None else []
    while stack:
        path, node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            stack.extend(((*path, str(k.value)), v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(((*path, str(i)), v) for i, v in enumerate(node.value))
        elif isinstance(node, yaml.ScalarNode) and node.tag == _BOOL_TAG:
            found[path] = str(node.value)
    return found


class _Builder:
    def __init__(self, path: str, source: str):
        self.path = path
        self.source = source
        self.problems: list[str] = []
        self.position = 0  # the question being read, from 1
        self._bool_words: dict[tuple[str, ...], str] | None = None

    def written(self, value: bool, *path: str) -> str:
        """The word YAML read as `value` at this place in the current question, as written."""
        if self._bool_words is None:
            self._bool_words = _bool_words(self.source)
        where = ("questions", str(self.position - 1), *path)
        return self._bool_words.get(where) or ("Yes" if value else "No")

    def fail(self, where: str | None, message: str) -> None:
        self.problems.append(
            f"{self.path}: {where}: {message}" if where else f"{self.path}: {message}"
        )

    def template(
        self, where: str, text: Any, earlier: Mapping[str, Question] | None = None
    ) -> str | None:
        if text is None:
            return None
        if isinstance(text, bool) or not isinstance(text, str | int | float):
            self.fail(where, "must be text (put it in quotes)")
            return None
        text = str(text)
        try:
            templates.check(text, TEMPLATE_NAMES)
        except templates.TemplateProblem as exc:
            self.fail(where, f"template error: {exc}")
            return text
        known = earlier or {}
        for name in templates.attributes_of(text, "survey"):
            if name not in ("id", "title") and name not in getattr(self, "fields", {}):
                self.fail(where, f"survey.{name}: no such field (add it under fields:)")
        for qid in templates.attributes_of(text, "answers"):
            if qid not in known:
                self.fail(
                    where,
                    f"answers.{qid}: {qid!r} is not an earlier question "
                    "(a prompt can use only answers given before it)",
                )
            elif not known[qid].asks:
                self.fail(where, f"answers.{qid}: {qid!r} is a {known[qid].type}, with no answer")
        return text

    def build(self, data: Any) -> Survey:
        if not isinstance(data, dict):
            raise SurveyError(
                [f"{self.path}: a survey script must be a mapping with id, title and questions"]
            )
        for key in sorted(set(data) - SURVEY_KEYS):
            self.fail(None, f"unknown key {key!r} (allowed: {', '.join(sorted(SURVEY_KEYS))})")
        survey_id = data.get("id")
        if not isinstance(survey_id, str) or not _ID.match(survey_id):
            self.fail(None, "id must be lower-case letters, digits, - or _ (e.g. guide-title)")
            survey_id = str(survey_id)
        title = data.get("title")
        if not isinstance(title, str) or not title.strip():
            self.fail(None, "title is missing")
            title = str(title or "")
        keyword = data.get("keyword")
        if keyword is not None:
            keyword = str(keyword).strip().upper()
            if not re.fullmatch(r"[A-Z0-9]{2,20}", keyword):
                self.fail(None, f"keyword {keyword!r} must be one word of 2-20 letters or digits")
            elif keyword in RESERVED_KEYWORDS:
                self.fail(
                    None, f"keyword {keyword!r} is a word participants use for something else"
                )
        self.fields = self.survey_fields(data.get("fields"))
        raw_translations = data.get("translations")
        intro = self.template("intro", data.get("intro"), {})
        raw_questions = data.get("questions")
        questions: list[Question] = []
        if not isinstance(raw_questions, list) or not raw_questions:
            self.fail(None, "questions must be a list with at least one question")
            raw_questions = []
        seen: dict[str, Question] = {}
        for position, raw in enumerate(raw_questions, start=1):
            question = self.question(position, raw, seen)
            if question is not None:
                if question.id in seen:
                    self.fail(f"question {question.id!r}", f"duplicate id (question {position})")
                    continue
                seen[question.id] = question
                questions.append(question)
        outro = self.template("outro", data.get("outro"), seen)
        translations = self.translations(raw_translations, seen)
        channel_options = self.channel_options(data.get("channels"))
        if questions and not any(q.asks for q in questions):
            self.fail(None, "a survey needs at least one question that asks something")
        if self.problems:
            raise SurveyError(self.problems)
        return Survey(
            id=survey_id,
            title=title.strip(),
            questions=tuple(questions),
            intro=intro,
            outro=outro,
            keyword=keyword,
            description=data.get("description"),
            source=self.source,
            path=self.path,
            fields=self.fields,
            translations=translations,
            channel_options=channel_options,
        )

    def channel_options(self, raw: Any) -> dict[str, dict[str, Any]]:
        """`channels: {<channel>: {<option>: <value>}}`: only its shape is checked here; what
        the options mean is the named channel's to say (`involve lint`)."""
        if raw is None:
            return {}
        shape = "must map a channel's name to its options, like channels: {whatsapp: {...}}"
        if not isinstance(raw, dict):
            self.fail("channels", shape)
            return {}
        found: dict[str, dict[str, Any]] = {}
        for name, options in raw.items():
            if not isinstance(name, str) or not isinstance(options, dict):
                self.fail("channels", shape)
                continue
            found[name] = {str(key): value for key, value in options.items()}
        return found

    def translations(self, raw: Any, questions: dict[str, Question]) -> dict[str, dict[str, Any]]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.fail("translations", "must map a language (cy) to its words")
            return {}
        result: dict[str, dict[str, Any]] = {}
        for code, words in raw.items():
            where = f"translations.{code}"
            if code not in LANGUAGES or code == STAFF_LANGUAGE:
                others = ", ".join(c for c in LANGUAGES if c != STAFF_LANGUAGE)
                self.fail(where, f"not a language we can translate into (we have: {others})")
                continue
            if not isinstance(words, dict):
                self.fail(where, "must map title, intro, outro and questions to their words")
                continue
            kept: dict[str, Any] = {"questions": {}}
            for key in sorted(set(words) - {"title", "intro", "outro", "questions"}):
                self.fail(where, f"unknown key {key!r}")
            for key in ("title", "intro", "outro"):
                if key in words:
                    kept[key] = self.template(
                        f"{where}.{key}", words[key], questions if key == "outro" else {}
                    )
            given = words.get("questions") or {}
            if not isinstance(given, dict):
                self.fail(where, "questions must map question ids to their words")
                given = {}
            earlier: dict[str, Question] = {}
            for q in questions.values():
                own = given.get(q.id)
                if own is None:
                    earlier[q.id] = q
                    continue
                here = f"{where}.questions.{q.id}"
                if not isinstance(own, dict):
                    self.fail(here, "must map ask, reask, options and labels to their words")
                    continue
                for key in sorted(set(own) - TRANSLATED_QUESTION_KEYS):
                    self.fail(here, f"unknown key {key!r}")
                entry: dict[str, Any] = {}
                for key in ("ask", "say", "reask"):
                    if key in own:
                        entry[key] = self.template(f"{here}.{key}", own[key], earlier)
                options = own.get("options") or {}
                if not isinstance(options, dict):
                    self.fail(here, "options must map each option's value to its label")
                    options = {}
                entry["options"] = {}
                for value, label in options.items():
                    if isinstance(label, bool) or isinstance(value, bool):
                        self.fail(here, f"option {value!r} is read by YAML as true/false: quote it")
                        continue
                    if q.option(answer_key(value)) is None:
                        self.fail(here, f"no option {value!r} in question {q.id!r}")
                        continue
                    entry["options"][answer_key(value)] = str(label).strip()
                labels = own.get("labels") or {}
                entry["labels"] = {}
                for point, label in labels.items() if isinstance(labels, dict) else []:
                    if isinstance(label, bool) or point not in q.labels:
                        self.fail(
                            here, f"label {point!r}: not a labelled point, or unquoted yes/no"
                        )
                        continue
                    entry["labels"][point] = str(label).strip()
                kept["questions"][q.id] = entry
                earlier[q.id] = q
            result[str(code)] = kept
        return result

    def survey_fields(self, raw: Any) -> dict[str, str]:
        if raw is None:
            return {}
        if not isinstance(raw, dict) or not all(
            isinstance(k, str) and re.fullmatch(r"[a-z][a-z0-9_]*", k) for k in raw
        ):
            self.fail("fields", "must map lower-case names to text, e.g. {service: the lunch club}")
            return {}
        fields: dict[str, str] = {}
        for key, value in raw.items():
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                self.fail(f"fields.{key}", "must be text (put it in quotes)")
                continue
            if key in ("id", "title"):
                self.fail(f"fields.{key}", "survey.id and survey.title are the script's own")
                continue
            fields[key] = str(value)
        return fields

    def question(self, position: int, raw: Any, earlier: dict[str, Question]) -> Question | None:
        if not isinstance(raw, dict):
            self.fail(f"question {position}", "must be a mapping with id, type and ask")
            return None
        qid = raw.get("id")
        if not isinstance(qid, str) or not _ID.match(qid):
            self.fail(f"question {position}", "id must be lower-case letters, digits, - or _")
            return None
        where = f"question {qid!r}"
        self.position = position
        for key in sorted(set(raw) - QUESTION_KEYS):
            self.fail(where, f"unknown key {key!r} (allowed: {', '.join(sorted(QUESTION_KEYS))})")
        qtype = raw.get("type")
        if qtype not in QUESTION_TYPES:
            self.fail(where, f"type must be one of {', '.join(QUESTION_TYPES)}, got {qtype!r}")
            return None
        words = raw.get("say") if qtype in ASKS_NOTHING and "say" in raw else raw.get("ask")
        if "say" in raw and qtype not in ASKS_NOTHING:
            self.fail(where, "say is for statement and end; a question has ask")
        ask = self.template(where + " ask", words, earlier)
        if not ask:
            what = "say" if qtype in ASKS_NOTHING else "ask"
            self.fail(where, f"{what} is missing: what should we say to the person?")
            ask = ""
        optional = raw.get("optional", False)
        if not isinstance(optional, bool):
            self.fail(where, "optional must be true or false")
            optional = False
        options = self.options(where, qtype, raw.get("options"))
        low, high, labels = self.bounds(where, qtype, raw)
        max_length = raw.get("max_length", DEFAULT_TEXT_MAX_LENGTH)
        if qtype == "text":
            if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
                self.fail(where, "max_length must be a whole number of at least 1")
                max_length = DEFAULT_TEXT_MAX_LENGTH
        elif "max_length" in raw:
            self.fail(where, "max_length is only for text questions")
        sets = raw.get("sets")
        if sets is not None:
            if sets not in SETTABLE:
                self.fail(where, f"sets must be one of {', '.join(sorted(SETTABLE))}, got {sets!r}")
            elif qtype != "yesno":
                self.fail(where, "sets: recontact needs a yesno question")
        extras: list[Option] = []
        for key, (value, label, synonyms) in EXTRAS.items():
            wanted = raw.get(key, False)
            if not isinstance(wanted, bool):
                self.fail(where, f"{key} must be true or false")
            elif wanted and qtype not in ("choice", "scale", "multi"):
                self.fail(where, f"{key} is for choice, multi and scale questions")
            elif wanted:
                if any(o.value == value for o in options):
                    self.fail(where, f"{key}: an option already has the value {value!r}")
                extras.append(Option(value, label, synonyms, extra=True))
        if qtype in ASKS_NOTHING:
            for key in ("optional", "reask"):
                if key in raw:
                    self.fail(where, f"{key} is for questions; a {qtype} asks nothing")
        reask = self.template(where + " reask", raw.get("reask"), earlier)
        condition = self.when(where, raw.get("when"), earlier)
        simple = self.simple_when(raw.get("when"), condition)
        return Question(
            id=qid,
            type=qtype,
            ask=ask,
            options=options,
            optional=optional,
            when=simple,
            sets=sets,
            min=low,
            max=high,
            labels=labels,
            max_length=max_length,
            condition=condition,
            reask=reask,
            extras=tuple(extras),
        )

    def options(self, where: str, qtype: str, raw: Any) -> tuple[Option, ...]:
        if qtype not in ("choice", "multi"):
            if raw is not None:
                self.fail(where, f"options are only for choice and multi questions, not {qtype}")
            return ()
        if not isinstance(raw, list) or len(raw) < 2:
            self.fail(where, f"a {qtype} question needs options: a list of at least 2")
            return ()
        # More than 9 is fine by text and Telegram; lint says the keypad cannot carry it.
        options: list[Option] = []
        for n, item in enumerate(raw, start=1):
            if not isinstance(item, dict) or "value" not in item or "label" not in item:
                self.fail(where, f"option {n} needs a value and a label")
                continue
            extra = set(item) - {"value", "label", "synonyms"}
            if extra:
                self.fail(where, f"option {n} has unknown key {sorted(extra)[0]!r}")
            for key in ("value", "label"):
                if isinstance(item[key], bool):
                    # YAML 1.1 reads an unquoted Yes, No, On, Off, True or False as a boolean.
                    word = self.written(item[key], "options", str(n - 1), key)
                    self.fail(
                        where,
                        f"option {n} {key} is read by YAML as {str(item[key]).lower()}, "
                        f'not a word: put it in quotes, {key}: "{word}"',
                    )
            value, label = answer_key(item["value"]), str(item["label"]).strip()
            if not value or not label:
                self.fail(where, f"option {n} needs a value and a label")
                continue
            if qtype == "multi" and MULTI_SEPARATOR in value:
                self.fail(where, f"option {n} value may not contain {MULTI_SEPARATOR!r}")
            if any(o.value == value for o in options):
                self.fail(where, f"option value {value!r} appears twice")
                continue
            self.template(f"{where} option {n} label", label)
            synonyms = item.get("synonyms") or []
            if not isinstance(synonyms, list) or not all(
                isinstance(w, str | int) and not isinstance(w, bool) for w in synonyms
            ):
                self.fail(where, f"option {n} synonyms must be a list of words, e.g. [navy]")
                synonyms = []
            options.append(Option(value, label, tuple(str(w) for w in synonyms)))
        return tuple(options)

    def bounds(
        self, where: str, qtype: str, raw: dict[str, Any]
    ) -> tuple[float | None, float | None, dict[int, str]]:
        low, high = raw.get("min"), raw.get("max")
        labels: dict[int, str] = {}
        if qtype not in ("scale", "number"):
            for key in ("min", "max", "labels"):
                if key in raw:
                    self.fail(where, f"{key} is only for scale and number questions")
            return None, None, labels
        if qtype == "scale":
            low = 1 if low is None else low
            high = 5 if high is None else high
        for name, value in (("min", low), ("max", high)):
            if value is not None and (
                not isinstance(value, int | float) or isinstance(value, bool)
            ):
                self.fail(where, f"{name} must be a number")
                return None, None, labels
        if qtype == "scale" and not (float(low).is_integer() and float(high).is_integer()):
            self.fail(where, "a scale's min and max must be whole numbers")
            return None, None, labels
        if low is not None and high is not None and low >= high:
            self.fail(where, f"min ({low}) must be less than max ({high})")
            return None, None, labels
        if qtype == "scale" and (low < 0 or high > 10):
            self.fail(where, "a scale must run within 0 to 10")
        raw_labels = raw.get("labels") or {}
        if qtype == "number" and raw_labels:
            self.fail(where, "labels are only for scale questions")
        elif not isinstance(raw_labels, dict):
            self.fail(where, "labels must map scale points to words, e.g. {1: Not useful}")
        else:
            for point, text in raw_labels.items():
                if isinstance(text, bool):
                    word = self.written(text, "labels", str(point))
                    self.fail(
                        where,
                        f"label {point!r} is read by YAML as {str(text).lower()}, not a word: "
                        f'put it in quotes, {point}: "{word}"',
                    )
                    continue
                if not isinstance(point, int) or not (low <= point <= high):
                    self.fail(where, f"label {point!r} is not a point on the scale {low}-{high}")
                    continue
                labels[point] = str(text).strip()
        return (
            None if low is None else float(low),
            None if high is None else float(high),
            labels,
        )

    def when(self, where: str, raw: Any, earlier: dict[str, Question]) -> Condition | None:
        if raw is None:
            return None
        if not isinstance(raw, dict) or not raw:
            self.fail(where, "when must map an earlier question id to the answer(s) it needs")
            return None
        return self.condition(where, raw, earlier)

    def condition(self, where: str, raw: Any, earlier: dict[str, Question]) -> Condition | None:
        """`{q: value}`, `{q: [a, b]}`, `{q: {not: a}}`, `{q: {min: 1, max: 5}}`; several keys
        must all hold; `any: [...]`, `all: [...]` and `not: {...}` combine them. An id that
        names an earlier question is always that question, never an operator."""
        if not isinstance(raw, dict) or not raw:
            self.fail(where, "each condition in when must be a mapping, e.g. {title: a}")
            return None
        parts: list[Condition] = []
        for key, wanted in raw.items():
            key = str(key)
            if key in OPERATORS and key not in earlier:
                part = self.combined(where, key, wanted, earlier)
            else:
                part = self.test(where, key, wanted, earlier)
            if part is not None:
                parts.append(part)
        if len(parts) != len(raw):
            return None
        return parts[0] if len(parts) == 1 else AllOf(tuple(parts))

    def combined(
        self, where: str, key: str, wanted: Any, earlier: dict[str, Question]
    ) -> Condition | None:
        if key == "not":
            inner = self.condition(where, wanted, earlier)
            return None if inner is None else Not(inner)
        if not isinstance(wanted, list) or not wanted:
            self.fail(
                where, f"when {key}: needs a list of conditions, e.g. {key}: [{{a: 1}}, {{b: 2}}]"
            )
            return None
        parts = [self.condition(where, item, earlier) for item in wanted]
        if any(p is None for p in parts):
            return None
        kept = tuple(p for p in parts if p is not None)
        return AnyOf(kept) if key == "any" else AllOf(kept)

    def test(
        self, where: str, qid: str, wanted: Any, earlier: dict[str, Question]
    ) -> Condition | None:
        target = earlier.get(qid)
        if target is None:
            self.fail(where, f"when refers to unknown question {qid!r} (it must come earlier)")
            return None
        if not target.asks:
            self.fail(where, f"when refers to {qid!r}, a {target.type} that has no answer")
            return None
        if isinstance(wanted, dict):
            unknown = set(map(str, wanted)) - {"not", "min", "max"}
            if unknown or not wanted:
                self.fail(
                    where,
                    f"when {qid}: use a value, a list, {{not: ...}} or {{min: ..., max: ...}}"
                    + (f" (not {sorted(unknown)[0]!r})" if unknown else ""),
                )
                return None
            if "not" in wanted and ({"min", "max"} & set(wanted)):
                self.fail(where, f"when {qid}: not and min/max cannot be mixed; use not: {{...}}")
                return None
            if "not" in wanted:
                inner = self.test(where, qid, wanted["not"], earlier)
                return None if inner is None else Not(inner)
            return self.range(where, qid, target, wanted.get("min"), wanted.get("max"))
        values = tuple(answer_key(v) for v in (wanted if isinstance(wanted, list) else [wanted]))
        closed = {o.value for o in target.choices}
        for value in values:
            if closed and value not in closed:
                self.fail(
                    where,
                    f"when {qid}: {value!r} is not an answer to {qid!r} "
                    f"(it can be {', '.join(sorted(closed))})",
                )
        if not values:
            self.fail(where, f"when {qid}: an empty list matches nothing")
            return None
        return Test(qid, values)

    def range(
        self, where: str, qid: str, target: Question, low: Any, high: Any
    ) -> Condition | None:
        if target.type not in ("number", "scale"):
            self.fail(where, f"when {qid}: min and max are for number and scale questions")
            return None
        for name, value in (("min", low), ("max", high)):
            if value is not None and (
                not isinstance(value, int | float) or isinstance(value, bool)
            ):
                self.fail(where, f"when {qid}: {name} must be a number")
                return None
        if low is not None and high is not None and low > high:
            self.fail(where, f"when {qid}: min ({low}) is more than max ({high})")
            return None
        return Test(
            qid, (), None if low is None else float(low), None if high is None else float(high)
        )

    @staticmethod
    def simple_when(raw: Any, condition: Condition | None) -> dict[str, tuple[str, ...]]:
        """The contract's first form, `{q: value}` on its own, as the mapping it always was."""
        tests = (
            [condition]
            if isinstance(condition, Test)
            else (list(condition.parts) if isinstance(condition, AllOf) else [])
        )
        if not tests or not all(isinstance(t, Test) and t.values for t in tests):
            return {}
        if not isinstance(raw, dict) or len(raw) != len(tests):
            return {}
        return {t.question_id: t.values for t in tests if isinstance(t, Test)}


def discover(directory: str | Path) -> dict[str, Path]:
    """Survey id -> file, for every script in the folder (feedback files are not surveys)."""
    found: dict[str, Path] = {}
    for path in sorted(Path(directory).glob("*.y*ml")):
        if ".feedback." in path.name:
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            continue
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            found[data["id"]] = path
    return found


def is_feedback_file(path: str | Path) -> bool:
    return ".feedback." in Path(path).name


@dataclass
class Scan:
    """Every script in a folder: those that load, and a line for each that does not."""

    surveys: dict[str, Survey] = field(default_factory=dict)
    keywords: dict[str, Survey] = field(default_factory=dict)
    broken: dict[str, list[str]] = field(default_factory=dict)  # file name -> its problems
    clashes: list[str] = field(default_factory=list)  # two scripts claiming one id or keyword

    @property
    def problems(self) -> list[str]:
        return [line for lines in self.broken.values() for line in lines] + self.clashes


def scan(directory: str | Path, extra: tuple[Survey, ...] = ()) -> Scan:
    """Load every survey script in `directory` (and `extra`, already loaded, first).

    A script that fails to load is kept as a problem naming the file, never silently dropped;
    two scripts with one keyword or id are a problem too, and the first file (by name) keeps
    it, so which one answers never depends on the order a folder happens to list.
    """
    result = Scan()
    seen: dict[str, str] = {}
    loaded: list[Survey] = list(extra)
    taken = {Path(s.path).resolve() for s in extra if s.path}
    for path in sorted(Path(directory).glob("*.y*ml")):
        if is_feedback_file(path) or path.resolve() in taken:
            continue
        try:
            loaded.append(load_file(path))
        except SurveyError as exc:
            result.broken[path.name] = exc.problems
    for survey in loaded:
        where = survey.path or survey.id
        if survey.id in result.surveys:
            result.clashes.append(
                f"{where}: id {survey.id!r} is also the id of {result.surveys[survey.id].path}"
            )
            continue
        result.surveys[survey.id] = survey
        if survey.keyword:
            if survey.keyword in seen:
                result.clashes.append(
                    f"{where}: keyword {survey.keyword!r} is also the keyword of "
                    f"{seen[survey.keyword]}; texting it must start one survey: change one"
                )
                continue
            seen[survey.keyword] = where
            result.keywords[survey.keyword] = survey
    return result


def resolve(name_or_path: str, directory: str | Path) -> Survey:
    """A survey by file path, or by id within the conversations folder."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        return load_file(candidate)
    by_id = discover(directory)
    if name_or_path not in by_id:
        known = ", ".join(sorted(by_id)) or "none"
        raise SurveyError([f"no survey {name_or_path!r} in {directory} (there are: {known})"])
    return load_file(by_id[name_or_path])
