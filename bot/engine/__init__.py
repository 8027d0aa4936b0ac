"""The conversation engine: one for every channel, and pure.

`begin` and `step` take a survey, the conversation's state and what the person did, and return
the new state, the answers to store, the consent changes to log and the prompts to say. Channels
turn input into `Reply`/`Command` and prompts into texts, speech or buttons; storage applies the
result. Nothing here touches a database, a clock or the network, so every rule is easy to test.

The rule that matters most: nobody is ever trapped. One reply we cannot read gets a kind
re-prompt saying what we expect; a second miss keeps what they wrote, flagged unparsed, and moves
on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from bot.engine import parsing
from bot.engine.keywords import Command, Intent, intent
from bot.scripts import templates
from bot.scripts.survey import Question, Survey

MAX_MISSES = 2
IDLE_EXPIRY = timedelta(days=7)

ACTIVE, COMPLETED, STOPPED, EXPIRED = "active", "completed", "stopped", "expired"


@dataclass(frozen=True)
class Reply:
    text: str


Inbound = Reply | Command


@dataclass(frozen=True)
class State:
    question_id: str | None
    status: str = ACTIVE
    misses: int = 0
    answered: Mapping[str, str] = field(default_factory=dict)  # question id -> value

    def to_json(self) -> dict[str, Any]:
        return {
            "question_id": self.question_id,
            "status": self.status,
            "misses": self.misses,
            "answered": dict(self.answered),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> State:
        return cls(
            question_id=data.get("question_id"),
            status=data.get("status", ACTIVE),
            misses=int(data.get("misses", 0)),
            answered=dict(data.get("answered") or {}),
        )


# Prompts: what to say, channel-neutral.
@dataclass(frozen=True)
class Say:
    text: str
    kind: str = "info"  # intro | outro | help | stopped | started | confirm_stop | thanks | info


@dataclass(frozen=True)
class Ask:
    question: Question
    text: str  # the rendered `ask`
    number: int  # 1-based position in the survey, for "Question 2 of 5"
    total: int
    retry: str | None = None  # why we are asking again, with what we expect, worded for text
    choices: tuple[tuple[str, str], ...] = ()  # (value, rendered label)
    # The same retry, structured, for channels that word it themselves (a call says "press"):
    sorry: str | None = None  # "Sorry, we didn't quite catch that." - no verb, any channel
    expected: str | None = None  # "a number from 1 to 3" - what we expect, without "reply with"


Prompt = Say | Ask


@dataclass(frozen=True)
class RecordedAnswer:
    question_id: str
    value: str | None
    label: str | None
    raw: str | None
    unparsed: bool = False
    skipped: bool = False


@dataclass(frozen=True)
class Step:
    state: State
    prompts: tuple[Prompt, ...] = ()
    answers: tuple[RecordedAnswer, ...] = ()
    consent: tuple[str, ...] = ()  # opt_out | opt_in | recontact_yes | recontact_no

    @property
    def finished(self) -> bool:
        return self.state.status != ACTIVE


def first_name(name: str | None) -> str:
    """How we greet someone: "Margaret Jones" -> "Margaret"; nobody's name -> "there"."""
    words = (name or "").split()
    return words[0] if words else "there"


def _ctx(context: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": first_name(context.get("name")), "org": context.get("org") or "us"}


SORRY = "Sorry, we didn't quite catch that."
WELCOME = "You're welcome. Thank you for your help."


def retry_text(sorry: str, expected: str | None) -> str:
    """The retry as a text says it; a call words `sorry` and `expected` its own way."""
    return f"{sorry} Please reply with {expected}." if expected else sorry


def ask(
    survey: Survey,
    question: Question,
    context: Mapping[str, Any],
    retry: str | None = None,
    *,
    sorry: str | None = None,
    expected: str | None = None,
) -> Ask:
    ctx = _ctx(context)
    if retry is None and sorry is not None:
        retry = retry_text(sorry, expected)
    return Ask(
        question=question,
        text=templates.render(question.ask, ctx),
        number=survey.index(question.id) + 1,
        total=len(survey.questions),
        retry=retry,
        choices=tuple((o.value, templates.render(o.label, ctx)) for o in question.choices),
        sorry=sorry if sorry is not None else retry,
        expected=expected,
    )


def ask_again(survey: Survey, question: Question, context: Mapping[str, Any], text: str) -> Ask:
    """The question again after a reply we could not use, saying why and what we expect."""
    limit = question.max_length
    length = len((text or "").strip())
    if question.type == "text" and length > limit:
        sorry = (
            f"Sorry, that is too long for us: please keep it to {limit} characters "
            f"(yours had {length})."
        )
        return ask(survey, question, context, sorry=sorry)
    return ask(survey, question, context, sorry=SORRY, expected=parsing.expected(question))


def _applies(question: Question, answered: Mapping[str, str]) -> bool:
    return all(answered.get(qid) in wanted for qid, wanted in question.when.items())


def next_question(
    survey: Survey, after: str | None, answered: Mapping[str, str]
) -> Question | None:
    start = 0 if after is None else survey.index(after) + 1
    for question in survey.questions[start:]:
        if _applies(question, answered):
            return question
    return None


def begin(survey: Survey, context: Mapping[str, Any]) -> Step:
    prompts: list[Prompt] = []
    if survey.intro:
        prompts.append(Say(templates.render(survey.intro, _ctx(context)), "intro"))
    first = next_question(survey, None, {})
    assert first is not None, "a valid survey has a first question"
    prompts.append(ask(survey, first, context))
    return Step(State(question_id=first.id), tuple(prompts))


def _advance(
    survey: Survey,
    state: State,
    recorded: RecordedAnswer,
    context: Mapping[str, Any],
    consent: tuple[str, ...] = (),
    lead: tuple[Prompt, ...] = (),
) -> Step:
    answered = dict(state.answered)
    if recorded.value is not None and not recorded.unparsed and not recorded.skipped:
        answered[recorded.question_id] = recorded.value
    following = next_question(survey, recorded.question_id, answered)
    if following is None:
        prompts = list(lead)
        if survey.outro:
            prompts.append(Say(templates.render(survey.outro, _ctx(context)), "outro"))
        done = State(question_id=None, status=COMPLETED, answered=answered)
        return Step(done, tuple(prompts), (recorded,), consent)
    moved = State(question_id=following.id, answered=answered)
    return Step(moved, (*lead, ask(survey, following, context)), (recorded,), consent)


def _consent_for(question: Question, answer: parsing.Answer) -> tuple[str, ...]:
    if question.sets == "recontact":
        return ("recontact_yes",) if answer.value == "yes" else ("recontact_no",)
    return ()


def step(survey: Survey, state: State, inbound: Inbound, context: Mapping[str, Any]) -> Step:
    if inbound is Command.STOP:
        return Step(
            replace(state, status=STOPPED),
            (Say(stopped_text(context), "stopped"),),
            (),
            ("opt_out",),
        )
    if state.status != ACTIVE or state.question_id is None:
        return after_end(inbound, context)
    question = survey.question(state.question_id)
    if inbound is Command.START:
        return Step(
            state,
            (Say(started_text(context), "started"), ask(survey, question, context)),
            (),
            ("opt_in",),
        )
    if inbound is Command.HELP:
        return Step(state, (Say(help_text(context), "help"), ask(survey, question, context)))
    if inbound is Command.REPEAT:
        return Step(state, (ask(survey, question, context),))
    if inbound is Command.SKIP:
        if not question.optional:
            hint = "This one needs an answer, but any answer is fine."
            return Step(state, (ask(survey, question, context, retry=hint),))
        skipped = RecordedAnswer(question.id, None, None, None, skipped=True)
        return _advance(survey, state, skipped, context)
    assert isinstance(inbound, Reply)
    meant = intent(inbound.text)
    # Neither is an answer, so neither is stored nor counted as a miss.
    if meant is Intent.STOP_REQUEST:
        return Step(state, (Say(confirm_stop_text(context), "confirm_stop"),))
    if meant is Intent.WHO:
        return Step(state, (Say(who_text(context), "help"), ask(survey, question, context)))
    parsed = parsing.parse(question, inbound.text)
    if isinstance(parsed, parsing.Answer):
        recorded = RecordedAnswer(question.id, parsed.value, parsed.label, inbound.text)
        return _advance(survey, state, recorded, context, _consent_for(question, parsed))
    if state.misses + 1 >= MAX_MISSES:
        kept = (inbound.text or "").strip()
        recorded = RecordedAnswer(
            question.id, kept or None, kept or None, inbound.text, unparsed=True
        )
        thanks = Say("Thank you, we have noted that.", "info")
        return _advance(survey, replace(state, misses=0), recorded, context, lead=(thanks,))
    return Step(
        replace(state, misses=state.misses + 1),
        (ask_again(survey, question, context, inbound.text),),
    )


def after_end(inbound: Inbound, context: Mapping[str, Any]) -> Step:
    """What to say to someone with no conversation in progress."""
    idle = State(question_id=None, status=COMPLETED)
    if inbound is Command.STOP:
        return Step(idle, (Say(stopped_text(context), "stopped"),), (), ("opt_out",))
    if inbound is Command.START:
        return Step(idle, (Say(started_text(context), "started"),), (), ("opt_in",))
    meant = intent(inbound.text) if isinstance(inbound, Reply) else None
    if meant is Intent.THANKS:
        # "thanks" or a thumbs up after the last question: HELP would puzzle; a short word
        # back says it arrived, and asks nothing, so it does not start a conversation.
        return Step(idle, (Say(WELCOME, "thanks"),))
    if meant is Intent.STOP_REQUEST:
        return Step(idle, (Say(confirm_stop_text(context), "confirm_stop"),))
    if meant is Intent.WHO:
        return Step(idle, (Say(who_text(context), "help"),))
    return Step(idle, (Say(help_text(context), "help"),))


def is_expired(last_activity: datetime, now: datetime, idle_for: timedelta = IDLE_EXPIRY) -> bool:
    return now - last_activity >= idle_for


def stopped_text(context: Mapping[str, Any]) -> str:
    return (
        f"You will not hear from {_ctx(context)['org']} again. "
        "Thank you for your help so far. Reply START if you change your mind."
    )


def started_text(context: Mapping[str, Any]) -> str:
    return f"Welcome back. {_ctx(context)['org']} may contact you again. Reply STOP at any time to stop."


def confirm_stop_text(context: Mapping[str, Any]) -> str:
    # Asked, not acted on: a free-text "stop" might be about something else, and STOP is the
    # one word carriers and the contract both honour.
    return "Do you want us to stop all messages? Reply STOP to confirm."


def who_text(context: Mapping[str, Any]) -> str:
    return (
        f"This is {_ctx(context)['org']}. We ask people for their views to improve our services. "
        "Reply STOP if you would rather we did not contact you."
    )


def help_text(context: Mapping[str, Any]) -> str:
    return (
        f"This is {_ctx(context)['org']}, asking for your views to improve our services. "
        "Reply REPEAT to hear the question again, SKIP to leave out an optional one, "
        "or STOP to stop all messages."
    )
