"""Issue 13's property: no reply to any example script, on any channel, crashes the engine or a
renderer, or stores an answer outside its question's values.

Derandomized and bounded, so every run plays the same replies in a few seconds.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import engine
from bot.channels.sms import render as sms
from bot.channels.telegram import render as telegram
from bot.channels.voice import render as voice
from bot.engine.keywords import Command
from bot.scripts.survey import MULTI_SEPARATOR, Question, Survey, discover, load_file
from tests.conftest import CONVERSATIONS

BOUNDED = settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SURVEYS = {sid: load_file(path) for sid, path in sorted(discover(CONVERSATIONS).items())}
CTX = {"name": "Gwen Jones", "org": "Age Better"}

# What people send: words, numbers, stars, dates, negations, lists, keys, and nonsense.
reply = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "1",
            "2",
            "3",
            "6",
            "9",
            "10",
            "16",
            "0",
            "-1",
            "1,5",
            "1 3",
            "13",
            "1 and 3",
            "5 stars",
            "seventy two",
            "not poor",
            "good and poor",
            "Very poor",
            "dk",
            "Don't know",
            "yes",
            "ie",
            "na",
            "no",
            "3/4/1948",
            "31/2/1948",
            "03041948",
            "x" * 600,
            "",
            "  ",
            "#",
            "*",
            "0#",
            "stop texting me",
            "who is this",
            "1.5",
            "1,000",
            "★★★",
            "skip",
            "help",
            "repeat",
            "CYMRAEG",
            "English",
            "ydw",
            "naddo",
            "Ddim yn gwybod",
            "3 Ebrill 1948",
        ]
    ),
    st.from_regex(r"[0-9#*]{1,9}", fullmatch=True),
)
channel = st.sampled_from(["sms", "voice", "telegram"])
language = st.sampled_from([None, "en", "cy"])


def _inbound(
    survey: Survey, where: str, text: str, question: Question, tap: int
) -> engine.Inbound | None:
    if where == "sms":
        inbound = sms.parse(text)
    elif where == "voice":
        inbound = voice.parse(text, question) if tap % 2 else voice.parse("", question, speech=text)
    else:
        markup = telegram.keyboard(engine.ask(survey, question, CTX))
        buttons = [b for row in markup.inline_keyboard for b in row] if markup else []
        if buttons and tap % 3:
            press = telegram.Press.read(str(buttons[tap % len(buttons)].callback_data))
            assert press is not None
            inbound = press(question)
        else:
            inbound = telegram.parse(text)
    return None if inbound is Command.STOP else inbound


def _render(where: str, prompts: tuple[engine.Prompt, ...]) -> None:
    if where == "sms":
        sms.render(prompts)
    elif where == "voice":
        voice.render(prompts)
    else:
        telegram.render(prompts)


def _valid(question: Question, value: str) -> bool:
    if question.type == "multi":
        parts = value.split(MULTI_SEPARATOR)
        extras = {o.value for o in question.extras}
        own = {o.value for o in question.options}
        return (len(parts) == 1 and parts[0] in extras) or all(p in own for p in parts)
    if question.choices:
        return value in {o.value for o in question.choices}
    if question.type == "number":
        number = float(value)
        return (question.min is None or number >= question.min) and (
            question.max is None or number <= question.max
        )
    if question.type == "date":
        return dt.date.fromisoformat(value).isoformat() == value
    if question.type == "text":
        return 0 < len(value) <= question.max_length
    return False


@pytest.mark.parametrize("survey_id", sorted(SURVEYS))
@BOUNDED
@given(
    where=channel,
    speaks=language,
    replies=st.lists(st.tuples(reply, st.integers(min_value=0, max_value=50)), max_size=25),
)
def test_no_reply_crashes_or_stores_an_answer_outside_its_question(
    survey_id, where, speaks, replies
):
    survey = SURVEYS[survey_id]
    context = {**CTX, "language": speaks}
    step = engine.begin(survey, context)
    _render(where, step.prompts)
    for text, tap in replies:
        if step.finished:
            break
        question = survey.question(step.state.question_id)
        inbound = _inbound(survey, where, text, question, tap)
        if inbound is None:
            continue
        step = engine.step(survey, step.state, inbound, context)
        if step.language is not None:
            context = {**context, "language": step.language}  # CYMRAEG / ENGLISH
        _render(where, step.prompts)
        for recorded in step.answers:
            asked = survey.question(recorded.question_id)
            if recorded.unparsed:
                assert recorded.value is None and recorded.label is None
            elif recorded.skipped:
                assert recorded.value is None
            else:
                assert recorded.value is not None and _valid(asked, recorded.value), (
                    asked.id,
                    recorded,
                )
            assert asked.asks
