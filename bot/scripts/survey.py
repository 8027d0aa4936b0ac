"""Survey scripts: load the YAML format of CONTRACT.md into typed, validated objects.

Every mistake is one line naming the file, the question and what is wrong, and all of a file's
mistakes are reported together so staff fix them in one pass.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.scripts import templates

QUESTION_TYPES = ("choice", "yesno", "scale", "number", "text")
SURVEY_KEYS = {"id", "title", "keyword", "intro", "questions", "outro", "description"}
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
}
SETTABLE = {"recontact"}
TEMPLATE_NAMES = {"name"}
MAX_KEYPAD_OPTIONS = 9  # one key press each: 1 to 9 (0 skips, * repeats)
DEFAULT_TEXT_MAX_LENGTH = 1000
RESERVED_KEYWORDS = {
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "START",
    "HELP",
    "REPEAT",
    "SKIP",
    "YES",
    "NO",
    "INFO",
    "UNSTOP",
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

    def option(self, value: str) -> Option | None:
        return next((o for o in self.options if o.value == value), None)

    @property
    def choices(self) -> tuple[Option, ...]:
        """What a person picks from, numbered from 1, for every closed question type."""
        if self.type == "choice":
            return self.options
        if self.type == "yesno":
            return (Option("yes", "Yes"), Option("no", "No"))
        if self.type == "scale":
            assert self.min is not None and self.max is not None
            return tuple(
                Option(str(n), self.labels.get(n, str(n)))
                for n in range(int(self.min), int(self.max) + 1)
            )
        return ()


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

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.source.encode("utf-8")).hexdigest()

    def question(self, question_id: str) -> Question:
        for q in self.questions:
            if q.id == question_id:
                return q
        raise KeyError(question_id)

    def index(self, question_id: str) -> int:
        return next(i for i, q in enumerate(self.questions) if q.id == question_id)


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


class _Builder:
    def __init__(self, path: str, source: str):
        self.path = path
        self.source = source
        self.problems: list[str] = []

    def fail(self, where: str | None, message: str) -> None:
        self.problems.append(
            f"{self.path}: {where}: {message}" if where else f"{self.path}: {message}"
        )

    def template(self, where: str, text: Any) -> str | None:
        if text is None:
            return None
        if not isinstance(text, str | int | float):
            self.fail(where, "must be text")
            return None
        text = str(text)
        try:
            templates.check(text, TEMPLATE_NAMES)
        except templates.TemplateProblem as exc:
            self.fail(where, f"template error: {exc}")
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
        intro = self.template("intro", data.get("intro"))
        outro = self.template("outro", data.get("outro"))
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
        )

    def question(self, position: int, raw: Any, earlier: dict[str, Question]) -> Question | None:
        if not isinstance(raw, dict):
            self.fail(f"question {position}", "must be a mapping with id, type and ask")
            return None
        qid = raw.get("id")
        if not isinstance(qid, str) or not _ID.match(qid):
            self.fail(f"question {position}", "id must be lower-case letters, digits, - or _")
            return None
        where = f"question {qid!r}"
        for key in sorted(set(raw) - QUESTION_KEYS):
            self.fail(where, f"unknown key {key!r} (allowed: {', '.join(sorted(QUESTION_KEYS))})")
        qtype = raw.get("type")
        if qtype not in QUESTION_TYPES:
            self.fail(where, f"type must be one of {', '.join(QUESTION_TYPES)}, got {qtype!r}")
            return None
        ask = self.template(where + " ask", raw.get("ask"))
        if not ask:
            self.fail(where, "ask is missing: what should we say to the person?")
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
        when = self.when(where, raw.get("when"), earlier)
        return Question(
            id=qid,
            type=qtype,
            ask=ask,
            options=options,
            optional=optional,
            when=when,
            sets=sets,
            min=low,
            max=high,
            labels=labels,
            max_length=max_length,
        )

    def options(self, where: str, qtype: str, raw: Any) -> tuple[Option, ...]:
        if qtype != "choice":
            if raw is not None:
                self.fail(where, f"options are only for choice questions, not {qtype}")
            return ()
        if not isinstance(raw, list) or len(raw) < 2:
            self.fail(where, "a choice question needs options: a list of at least 2")
            return ()
        if len(raw) > MAX_KEYPAD_OPTIONS:
            self.fail(where, f"at most {MAX_KEYPAD_OPTIONS} options (one key each on a phone)")
        options: list[Option] = []
        for n, item in enumerate(raw, start=1):
            if not isinstance(item, dict) or "value" not in item or "label" not in item:
                self.fail(where, f"option {n} needs a value and a label")
                continue
            extra = set(item) - {"value", "label"}
            if extra:
                self.fail(where, f"option {n} has unknown key {sorted(extra)[0]!r}")
            value, label = answer_key(item["value"]), str(item["label"]).strip()
            if not value or not label:
                self.fail(where, f"option {n} needs a value and a label")
                continue
            if any(o.value == value for o in options):
                self.fail(where, f"option value {value!r} appears twice")
                continue
            self.template(f"{where} option {n} label", label)
            options.append(Option(value, label))
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
                if not isinstance(point, int) or not (low <= point <= high):
                    self.fail(where, f"label {point!r} is not a point on the scale {low}-{high}")
                    continue
                labels[point] = str(text).strip()
        return (
            None if low is None else float(low),
            None if high is None else float(high),
            labels,
        )

    def when(
        self, where: str, raw: Any, earlier: dict[str, Question]
    ) -> dict[str, tuple[str, ...]]:
        if raw is None:
            return {}
        if not isinstance(raw, dict) or not raw:
            self.fail(where, "when must map an earlier question id to the answer(s) it needs")
            return {}
        result: dict[str, tuple[str, ...]] = {}
        for qid, wanted in raw.items():
            target = earlier.get(str(qid))
            if target is None:
                self.fail(where, f"when refers to unknown question {qid!r} (it must come earlier)")
                continue
            values = tuple(
                answer_key(v) for v in (wanted if isinstance(wanted, list) else [wanted])
            )
            closed = {o.value for o in target.choices}
            for value in values:
                if closed and value not in closed:
                    self.fail(
                        where,
                        f"when {qid}: {value!r} is not an answer to {qid!r} "
                        f"(it can be {', '.join(sorted(closed))})",
                    )
            result[str(qid)] = values
        return result


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
