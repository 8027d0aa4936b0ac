"""`involve lint`: a script's errors, and warnings about what a participant would receive.

Warnings: a question nobody can reach, a text longer than 2 segments, a question that leaves no
room beside it for the engine's replies (HELP, a re-prompt...) in their fewest words, and any
character outside GSM-7, which turns the whole text into UCS-2 (70 characters a segment
instead of 160).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bot import channels, engine
from bot.config import CONTACT_PHONE_MAX, ORG_NAME_MAX
from bot.cycle import feedback
from bot.engine import Ask, Say
from bot.engine.keywords import Command
from bot.engine.parsing import simplify
from bot.i18n import STAFF_LANGUAGE
from bot.scripts import gsm, templates
from bot.scripts.survey import (
    MULTI_SEPARATOR,
    Question,
    Survey,
    SurveyError,
    answer_key,
    is_feedback_file,
    load_file,
    missing_translations,
    scan,
    tests_in,
)

SAMPLE_CONTEXT = {"name": "Elizabeth", "org": "our involvement team"}
MAX_SEGMENTS = 2
# A question must leave room beside it for every reply, whatever the charity's settings: the
# longest ORG_NAME and CONTACT_PHONE they allow (in GSM-7, as the service's own words are).
LONGEST_ORG = ("Longest organisation name " * 3)[:ORG_NAME_MAX]
LONGEST_CONTACT = "0" * CONTACT_PHONE_MAX
# What a person can send while a question waits that the engine answers with words of its
# own and then the question again.
WAITING_INPUTS = {
    "HELP": Command.HELP,
    "START": Command.START,
    '"who is this?"': engine.Reply("who is this?"),
    "a message with no words": engine.Reply(""),
    "SKIP": Command.SKIP,
    "a thank you": engine.Reply("ok"),
}
MAX_PATHS = 20_000


@dataclass
class LintReport:
    path: str
    survey: Survey | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Walk:
    """What following every route through a script found."""

    reached: set[str] = field(default_factory=set)  # questions, statements and endings
    empty_pipes: dict[str, set[str]] = field(default_factory=dict)  # question -> answers.x
    complete: bool = True  # False: too many routes to follow them all


def _samples(question: Question, survey: Survey) -> list[str]:
    """Answers that stand for every way a route can go after this question: each option, and
    for numbers, dates and texts the values and bounds that the script's conditions name."""
    if question.type == "multi":
        every = MULTI_SEPARATOR.join(o.value for o in question.options)
        return [o.value for o in question.choices] + [every]
    if question.choices:
        return [o.value for o in question.choices]
    found: list[str] = []
    for later in survey.questions:
        for test in tests_in(later.condition):
            if test.question_id != question.id:
                continue
            found.extend(test.values)
            for bound in (test.low, test.high):
                if bound is not None:
                    found.extend(answer_key(bound + d) for d in (-1, -0.5, 0, 0.5, 1))
    found.append("\x00something else")  # a text or number no condition names
    return list(dict.fromkeys(found))


def _possible(survey: Survey, question: Question, answered: dict[str, str], value: str) -> bool:
    """Could this be stored as the answer? A number outside the question's range only where
    an ending straight after takes it (a screen-out); the engine asks again otherwise."""
    if question.type != "number":
        return True
    try:
        number = float(value)
    except ValueError:
        return True  # the stand-in for "anything else"
    inside = (question.min is None or number >= question.min) and (
        question.max is None or number <= question.max
    )
    return inside or engine.screened_out(survey, question, answered, value)


def _outside_range(survey: Survey, question: Question) -> str:
    """A hint for a never-reached question whose condition needs a number outside the range
    its question takes."""
    for test in tests_in(question.condition):
        target = next((q for q in survey.questions if q.id == test.question_id), None)
        if target is None or target.type != "number":
            continue
        below = test.high is not None and target.min is not None and test.high < target.min
        above = test.low is not None and target.max is not None and test.low > target.max
        if below or above:
            low = "" if target.min is None else answer_key(target.min)
            high = "" if target.max is None else answer_key(target.max)
            return (
                f"; {target.id!r} takes only {low} to {high}, and an answer outside that is "
                "asked again unless an ending straight after it takes the answer"
            )
    return ""


def walk(survey: Survey) -> Walk:
    """Follow every route: each answer a later condition or prompt could depend on, and no
    usable answer at all (skipped, or unreadable after two tries)."""
    watched = {t.question_id for q in survey.questions for t in tests_in(q.condition)}
    # Pipes without a fallback: those are the ones that can read as nothing.
    piped = {q.id: templates.unguarded_attributes(q.ask, "answers") for q in survey.questions}
    used = {qid for names in piped.values() for qid in names}
    result = Walk()
    seen: set[tuple[str | None, frozenset[tuple[str, str]], tuple[str, ...]]] = set()
    paths = 0

    def go(after: str | None, answered: dict[str, str], unusable: tuple[str, ...]) -> None:
        nonlocal paths
        key = (after, frozenset(answered.items()), unusable)
        if key in seen:
            return
        seen.add(key)
        paths += 1
        if paths > MAX_PATHS:
            result.complete = False
            return
        routed = engine.route(survey, after, answered, unusable)
        question = routed.question
        for shown in (*routed.says, *([question] if question else [])):
            result.reached.add(shown.id)
            for name in piped[shown.id]:
                if name not in answered:
                    result.empty_pipes.setdefault(shown.id, set()).add(name)
        if question is None:
            return
        unusable = (*unusable, *(r.question_id for r in routed.skipped))
        if question.id not in watched and question.id not in used:
            go(question.id, answered, unusable)
            return
        for value in _samples(question, survey):
            if _possible(survey, question, answered, value):
                go(question.id, {**answered, question.id: value}, unusable)
        # No usable answer: skipped, or unreadable after two tries (any question can be).
        go(question.id, answered, (*unusable, question.id))

    go(None, {}, ())
    return result


def reachable_questions(survey: Survey) -> set[str]:
    """Every question (statement, ending) some sequence of answers leads to."""
    found = walk(survey)
    if not found.complete:
        # Too many routes to follow; say nothing rather than something wrong.
        return {q.id for q in survey.questions}
    return found.reached


def _sample_answers(survey: Survey) -> dict[str, str]:
    """An answer to every question, the longest label where there is a choice, so a text that
    pipes one in is measured about as long as it can get."""
    sample: dict[str, str] = {}
    for question in survey.questions:
        if question.choices:
            sample[question.id] = max(question.choices, key=lambda o: len(o.label)).value
        elif question.type == "date":
            sample[question.id] = "1948-09-30"
        elif question.asks:
            sample[question.id] = "x" * 30  # a short answer in words
    return sample


def _texts(survey: Survey) -> Iterator[tuple[str, str]]:
    """(where, text) for each text a participant can receive from this script."""
    context = {**SAMPLE_CONTEXT, "answered": _sample_answers(survey)}
    ctx = engine._ctx(context, survey)

    # As the channel billed by SMS segment writes them (the registry says which that is).
    texts = next(c for c in channels.all_channels() if c.segment_counted)

    def rendered(*prompts: engine.Prompt) -> str:
        return texts.render_body(prompts, "")

    first = True
    for question in survey.questions:
        where = f"question {question.id!r}"
        if not question.asks:
            what = "ending" if question.type == "end" else "statement"
            yield f"{what} {question.id!r}", rendered(Say(templates.render(question.ask, ctx)))
            continue
        ask = engine.ask(survey, question, context)
        if first and survey.intro:
            intro = Say(templates.render(survey.intro, ctx), "intro")
            yield f"{where} with the intro", rendered(intro, ask)
        else:
            yield where, rendered(ask)
        first = False
        yield f"{where} asked again", rendered(_retry(survey, question, context))
    if survey.outro:
        yield "outro", rendered(Say(templates.render(survey.outro, ctx)))


def _retry(survey: Survey, question: Question, context: dict[str, object]) -> Ask:
    return engine.ask_again(survey, question, context, "")


def _not_gsm(text: str, found: tuple[tuple[int, str], ...] | list[tuple[int, str]]) -> str:
    """One line: each character outside GSM-7 once, where it first is, and what to type instead."""
    first: dict[str, int] = {}
    for index, ch in found:
        first.setdefault(ch, index)
    named = []
    for ch, index in first.items():
        hint = gsm.SUGGESTIONS.get(ch)
        name = unicodedata.name(ch, f"U+{ord(ch):04X}").lower()
        use = f", use {hint!r}" if hint and len(hint) <= 3 else (f", use {hint}" if hint else "")
        named.append(f"{ch!r} ({name}{use}) at {_position(text, index)}")
    return (
        "outside GSM-7, so the whole text is sent as UCS-2 (70 characters a segment, not 160): "
        + "; ".join(named)
    )


def _position(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {column}"


def shared_names(survey: Survey) -> list[str]:
    """One line for each word that names two answers of one question (a synonym, a label or
    a value): a reply of that word would always be read as the first of them."""
    lines = []
    for question in survey.questions:
        owner: dict[str, str] = {}
        for option in question.choices:
            names = dict.fromkeys(
                n
                for n in (simplify(w) for w in (option.label, option.value, *option.synonyms))
                if n
            )
            for name in names:
                first = owner.setdefault(name, option.value)
                if first != option.value:
                    lines.append(
                        f"question {question.id!r}: {name!r} names both {first!r} and "
                        f"{option.value!r}; a reply {name!r} would always be read as {first!r}: "
                        "keep it on one option"
                    )
    return lines


def lint_survey(survey: Survey, report: LintReport) -> None:
    found = walk(survey)
    reached = found.reached if found.complete else {q.id for q in survey.questions}
    for question in survey.questions:
        if question.id not in reached:
            conditions = question.condition.describe() if question.condition else "no condition"
            what = {"end": "ending", "statement": "statement"}.get(question.type, "question")
            never = "never reached" if what != "question" else "never asked"
            report.warnings.append(
                f"{report.path}: {what} {question.id!r}: {never}: no answers lead to it "
                f"({conditions}){_outside_range(survey, question)}"
            )
    report.errors.extend(f"{report.path}: {line}" for line in shared_names(survey))
    report.errors.extend(f"{report.path}: {line}" for line in channels.option_problems(survey))
    for qid, names in sorted(found.empty_pipes.items()):
        for name in sorted(names):
            report.warnings.append(
                f"{report.path}: question {qid!r}: answers.{name} can be empty here "
                f"({name!r} may be skipped, unreadable or not asked on the way); it will read "
                f'as nothing: give it a fallback, {{{{ answers.{name} | default("that") }}}}'
            )
    report.warnings.extend(f"{report.path}: {line}" for line in channel_notes(survey))
    report.warnings.extend(f"{report.path}: {line}" for line in missing_translations(survey))
    report.warnings.extend(f"{report.path}: {line}" for line in no_room(survey))
    for where, text in _texts(survey):
        size = gsm.sms_size(text)
        if size.non_gsm:
            report.warnings.append(f"{report.path}: {where}: {_not_gsm(text, size.non_gsm)}")
        if size.segments > MAX_SEGMENTS:
            report.warnings.append(
                f"{report.path}: {where}: the text is {size.units} characters in {size.encoding}, "
                f"{size.segments} SMS segments (keep it to {MAX_SEGMENTS})"
            )


def no_room(survey: Survey) -> Iterator[str]:
    """One line for each question, in each language the script has, that leaves no room
    beside it for a reply the engine makes while it waits, even in the reply's fewest words
    (`Say.shorter`; a re-prompt's sorry alone): the person would get three segments or more.
    The reply goes first, in a text of its own, and is paid for twice over."""
    texts = next(c for c in channels.all_channels() if c.segment_counted)
    for language in (STAFF_LANGUAGE, *survey.translations):
        context = {
            **SAMPLE_CONTEXT,
            "org": LONGEST_ORG,
            "contact": LONGEST_CONTACT,
            "language": language,
        }
        named = "" if language == STAFF_LANGUAGE else f" in {language}"
        for question in survey.asked:
            asked = texts.render_replies([engine.ask(survey, question, context)], "")
            alone = sum(gsm.sms_size(text).segments for text in asked)
            if alone > MAX_SEGMENTS and not named:
                continue  # said already: the question alone is too long
            what, cost = max(_replies_before(texts, survey, question, context), key=lambda r: r[1])
            if cost > MAX_SEGMENTS:
                outside = "".join(dict.fromkeys(ch for _, ch in gsm.non_gsm_characters(asked[0])))
                why = f" (its {outside!r} makes the text UCS-2)" if outside else ""
                yield (
                    f"question {question.id!r}{named}: no room for a reply before it: {what} "
                    f"and the question are {cost} SMS segments in all, even in the reply's "
                    f"fewest words (keep them to {MAX_SEGMENTS}): shorten the question{why}"
                )


def _replies_before(
    texts: channels.Channel, survey: Survey, question: Question, context: dict[str, object]
) -> Iterator[tuple[str, int]]:
    """(what the person sent, what the `texts` back cost in segments) for each reply the
    engine makes while this question waits, with the question after it."""
    waiting = engine.State(question.id, answered=_sample_answers(survey))
    sent: list[tuple[str, tuple[engine.Prompt, ...]]] = [
        (what, engine.step(survey, waiting, inbound, context).prompts)
        for what, inbound in WAITING_INPUTS.items()
    ]
    for reason in (*engine.SORRY_FOR, "unreadable"):
        sent.append(("a re-prompt", (engine.ask_again(survey, question, context, "", reason),)))
    if question.type == "text":
        too_long = "x" * (question.max_length + 1)
        sent.append(("a re-prompt", (engine.ask_again(survey, question, context, too_long),)))
    for what, prompts in sent:
        if prompts and isinstance(prompts[-1], Ask) and prompts[-1].question.id == question.id:
            sizes = [gsm.sms_size(text) for text in texts.render_replies(prompts, "")]
            yield what, sum(size.segments for size in sizes)


def channel_notes(survey: Survey) -> list[str]:
    """Which channels can carry this survey, when it is not all of them."""
    carried = channels.able_to_carry(survey)
    notes = []
    for channel in channels.all_channels():
        found = survey.crowded(channel)
        if found is None:
            continue
        question, offered = found
        notes.append(
            f"question {question.id!r}: {offered} answers to pick from ({channel.title} offers "
            f"at most {channel.max_choices}): this survey can go by "
            f"{', '.join(carried) or 'no channel'} but not by {channel.name}"
        )
    return notes


def _raw_texts(data: object) -> Iterator[tuple[str, str]]:
    """(where, text) for the wording in a script that did not load, for its GSM-7 warnings."""
    if not isinstance(data, dict):
        return
    for key in ("intro", "outro"):
        if isinstance(data.get(key), str):
            yield key, data[key]
    questions = data.get("questions")
    for n, question in enumerate(questions if isinstance(questions, list) else [], start=1):
        if not isinstance(question, dict):
            continue
        where = f"question {question.get('id', n)!r}"
        if isinstance(question.get("ask"), str):
            yield where, question["ask"]
        options = question.get("options")
        for option in options if isinstance(options, list) else []:
            if isinstance(option, dict) and isinstance(option.get("label"), str):
                yield f"{where} option {option.get('value')!r}", option["label"]


def lint_file(path: str | Path) -> LintReport:
    report = LintReport(str(path))
    try:
        report.survey = load_file(path)
    except SurveyError as exc:
        report.errors.extend(exc.problems)
        # Warnings that need no valid script still show, so one pass fixes everything.
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return report
        for where, text in _raw_texts(data):
            found = gsm.non_gsm_characters(text)
            if found:
                report.warnings.append(f"{report.path}: {where}: {_not_gsm(text, found)}")
        return report
    lint_survey(report.survey, report)
    return report


def lint_feedback_file(path: str | Path) -> LintReport:
    """A `<survey id>.feedback.yaml`: checked against the survey script beside it."""
    path = Path(path)
    report = LintReport(str(path))
    survey_id = path.name.split(".feedback.", 1)[0]
    survey = scan(path.parent).surveys.get(survey_id)
    if survey is None:
        report.errors.append(
            f"{path}: no survey {survey_id!r} in {path.parent} "
            "(a feedback file is named after its survey: <survey id>.feedback.yaml)"
        )
        return report
    try:
        definition = feedback.load_file(path, survey)
    except feedback.FeedbackError as exc:
        report.errors.append(str(exc))
        return report
    texts = [("message", definition.message)] + [
        (f"outcomes.{qid}.{key}", sentence)
        for qid, sentences in definition.outcomes.items()
        for key, sentence in sentences.items()
    ]
    for where, text in texts:
        found = gsm.non_gsm_characters(text)
        if found:
            report.warnings.append(f"{path}: {where}: {_not_gsm(text, found)}")
    return report


def lint_paths(paths: list[Path]) -> list[LintReport]:
    """Each file as what it is (survey or feedback), then ids and keywords across scripts.

    A script is checked against the others in its folder too: texting a keyword two scripts
    share would start whichever happened to load last.
    """
    reports = [lint_feedback_file(p) if is_feedback_file(p) else lint_file(p) for p in paths]
    folders: dict[Path, tuple[Survey, ...]] = {}
    for report in reports:
        survey = report.survey
        if survey is None:
            continue
        folder = Path(report.path).parent
        if folder not in folders:
            linted = tuple(
                r.survey for r in reports if r.survey is not None and Path(r.path).parent == folder
            )
            folders[folder] = tuple(scan(folder, extra=linted).surveys.values()) + linted
        for other in folders[folder]:
            if Path(other.path).resolve() == Path(report.path).resolve():
                continue
            if other.id == survey.id:
                line = f"{report.path}: id {survey.id!r} is also the id of {other.path}"
            elif survey.keyword and other.keyword == survey.keyword:
                line = (
                    f"{report.path}: keyword {survey.keyword!r} is also the keyword of "
                    f"{other.path}; texting it must start one survey: change one"
                )
            else:
                continue
            if line not in report.errors:
                report.errors.append(line)
    return reports
