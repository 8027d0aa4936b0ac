"""`involve lint`: a script's errors, and warnings about what a participant would receive.

Warnings: a question nobody can reach, a text longer than 2 segments, and any character outside
GSM-7, which turns the whole text into UCS-2 (70 characters a segment instead of 160).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bot import engine, gsm
from bot.channels.sms import render as sms
from bot.engine import Ask, Say
from bot.survey import Question, Survey, SurveyError, load_file

SAMPLE_CONTEXT = {"name": "Elizabeth", "org": "our involvement team"}
MAX_SEGMENTS = 2
MAX_PATHS = 20_000


@dataclass
class LintReport:
    path: str
    survey: Survey | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def reachable_questions(survey: Survey) -> set[str]:
    """Every question some sequence of answers leads to.

    Only questions that a `when` looks at can change the route, so only their answers are
    branched on (each choice, or no usable answer at all).
    """
    watched = {qid for q in survey.questions for qid in q.when}
    reached: set[str] = set()
    paths = 0

    def walk(after: str | None, answered: dict[str, str]) -> None:
        nonlocal paths
        paths += 1
        if paths > MAX_PATHS:
            return
        question = engine.next_question(survey, after, answered)
        if question is None:
            return
        reached.add(question.id)
        if question.id not in watched:
            walk(question.id, answered)
            return
        for option in question.choices:
            walk(question.id, {**answered, question.id: option.value})
        walk(question.id, answered)

    walk(None, {})
    if paths > MAX_PATHS:
        # Too many routes to follow; say nothing rather than something wrong.
        return {q.id for q in survey.questions}
    return reached


def _texts(survey: Survey) -> Iterator[tuple[str, str]]:
    """(where, text) for each text a participant can receive from this script."""
    questions = survey.questions

    def rendered(*prompts: engine.Prompt) -> str:
        return "\n\n".join(sms.render(prompts))

    for index, question in enumerate(questions):
        ask = engine.ask(survey, question, SAMPLE_CONTEXT)
        where = f"question {question.id!r}"
        if index == 0 and survey.intro:
            intro = Say(engine.templates.render(survey.intro, engine._ctx(SAMPLE_CONTEXT)), "intro")
            yield f"{where} with the intro", rendered(intro, ask)
        else:
            yield where, rendered(ask)
        yield f"{where} asked again", rendered(_retry(survey, question))
    if survey.outro:
        yield (
            "outro",
            rendered(Say(engine.templates.render(survey.outro, engine._ctx(SAMPLE_CONTEXT)))),
        )


def _retry(survey: Survey, question: Question) -> Ask:
    from bot.parsing import expected

    hint = f"Sorry, we didn't quite catch that. Please reply with {expected(question)}."
    return engine.ask(survey, question, SAMPLE_CONTEXT, retry=hint)


def _position(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {column}"


def lint_survey(survey: Survey, report: LintReport) -> None:
    reached = reachable_questions(survey)
    for question in survey.questions:
        if question.id not in reached:
            conditions = ", ".join(f"{k}={'/'.join(v)}" for k, v in question.when.items())
            report.warnings.append(
                f"{report.path}: question {question.id!r}: never asked: no answers lead to it ({conditions})"
            )
    for where, text in _texts(survey):
        size = gsm.sms_size(text)
        for index, ch in size.non_gsm[:5]:
            report.warnings.append(
                f"{report.path}: {where}: {gsm.describe_character(ch)} at {_position(text, index)} "
                "is outside GSM-7, so the text is sent as UCS-2 (70 characters a segment)"
            )
        if size.segments > MAX_SEGMENTS:
            report.warnings.append(
                f"{report.path}: {where}: the text is {size.units} characters in {size.encoding}, "
                f"{size.segments} SMS segments (keep it to {MAX_SEGMENTS})"
            )


def lint_file(path: str | Path) -> LintReport:
    report = LintReport(str(path))
    try:
        report.survey = load_file(path)
    except SurveyError as exc:
        report.errors.extend(exc.problems)
        return report
    lint_survey(report.survey, report)
    return report
