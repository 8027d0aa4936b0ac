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
from bot.engine.keywords import (
    Command,
    Intent,
    agreeing,
    confirms_stop,
    declines_stop,
    intent,
)
from bot.i18n import N_, STAFF_LANGUAGE, language_of, org_name_in, switch_word, t
from bot.scripts import templates
from bot.scripts.survey import MULTI_SEPARATOR, Question, Survey, holds, tests_in

MAX_MISSES = 2
IDLE_EXPIRY = timedelta(days=7)

ACTIVE, COMPLETED, STOPPED, EXPIRED = "active", "completed", "stopped", "expired"
UNSEEN_INTRO, UNSEEN_QUESTION = "intro", "question"  # `State.unseen`


@dataclass(frozen=True)
class Reply:
    text: str


@dataclass(frozen=True)
class Toggle:
    """A tap on one answer of a list of all that apply (Telegram's buttons): on if it was off,
    off if it was on. Nothing is stored until `Done`."""

    value: str


@dataclass(frozen=True)
class Done:
    """The person has picked all that apply."""


Inbound = Reply | Command | Toggle | Done


@dataclass(frozen=True)
class State:
    question_id: str | None
    status: str = ACTIVE
    misses: int = 0
    answered: Mapping[str, str] = field(default_factory=dict)  # question id -> value
    # Questions asked whose answer we could not use (unreadable after two tries, or skipped):
    # a later question that depends on one of them is skipped knowingly, and says so.
    unusable: tuple[str, ...] = ()
    picked: tuple[str, ...] = ()  # a list of all that apply, tapped so far (not yet an answer)
    # We asked "Do you want us to stop all messages?": their next reply answers that, not the
    # question (a "yes" there is no consent to anything).
    stop_asked: bool = False
    # Thanked once for a "yes" or "ok" that answered the invitation, not the question; a
    # second such reply counts as a miss, so nobody goes round and round.
    thanked: bool = False
    # A reply that could mean two things, asked about ("Did you mean No?"): {"value", "raw"}
    # of the likelier answer. A yes stores it; anything else is read afresh.
    unsure: Mapping[str, str] | None = None
    # A reply too long to use is kept (unparsed) for staff while we ask for a shorter one;
    # the answer that follows takes its place.
    kept: bool = False
    # What of the survey the person has not been shown, although we wrote to them: our last
    # message reached them as something else in its place (an approved template that names
    # the survey but asks nothing). UNSEEN_INTRO: nothing yet (an invitation); UNSEEN_QUESTION:
    # the waiting question (a reminder). Their next reply cannot be its answer (`step`).
    unseen: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "question_id": self.question_id,
            "status": self.status,
            "misses": self.misses,
            "answered": dict(self.answered),
        }
        if self.unusable:
            data["unusable"] = list(self.unusable)
        if self.picked:
            data["picked"] = list(self.picked)
        if self.stop_asked:
            data["stop_asked"] = True
        if self.thanked:
            data["thanked"] = True
        if self.unsure:
            data["unsure"] = dict(self.unsure)
        if self.kept:
            data["kept"] = True
        if self.unseen:
            data["unseen"] = self.unseen
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> State:
        unsure = data.get("unsure")  # mostly None: no ABC's isinstance asked of it
        return cls(
            question_id=data.get("question_id"),
            status=data.get("status", ACTIVE),
            misses=int(data.get("misses", 0)),
            answered=dict(data.get("answered") or {}),
            unusable=tuple(data.get("unusable") or ()),
            picked=tuple(data.get("picked") or ()),
            stop_asked=bool(data.get("stop_asked")),
            thanked=bool(data.get("thanked")),
            unsure=dict(unsure) if unsure is not None and isinstance(unsure, Mapping) else None,
            kept=bool(data.get("kept")),
            unseen=data.get("unseen") or None,
        )


# Prompts: what to say, channel-neutral.
@dataclass(frozen=True)
class Say:
    text: str
    # intro | outro | help | stopped | started | confirm_stop | opted_out | thanks | info
    kind: str = "info"
    # The same reply in fewer words, each wording shorter than the one before, for a text
    # that must keep it and the question after it within two SMS segments (a long ORG_NAME,
    # a long question); none where `text` is short already.
    shorter: tuple[str, ...] = ()


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
    picked: tuple[str, ...] = ()  # for a list of all that apply: the values tapped so far
    language: str = STAFF_LANGUAGE  # what the renderers word their own instructions in


Prompt = Say | Ask


@dataclass(frozen=True)
class RecordedAnswer:
    question_id: str
    value: str | None
    label: str | None  # for a question skipped knowingly: why, as the export shows it
    raw: str | None
    unparsed: bool = False
    skipped: bool = False
    language: str = STAFF_LANGUAGE  # the language the person answered in
    # This takes the place of the words kept for staff from a reply too long to use.
    replaces_kept: bool = False


@dataclass(frozen=True)
class Step:
    state: State
    prompts: tuple[Prompt, ...] = ()
    answers: tuple[RecordedAnswer, ...] = ()
    consent: tuple[str, ...] = ()  # opt_out | opt_in | recontact_yes | recontact_no
    language: str | None = None  # the person asked to switch to this language

    @property
    def finished(self) -> bool:
        return self.state.status != ACTIVE


# A title the panel's lists put first: whoever wrote "Mrs Margaret Jones" is greeted as they
# are addressed on paper, "Mrs Jones", not "Mrs".
_TITLES = {
    "mr",
    "mrs",
    "ms",
    "miss",
    "mx",
    "dr",
    "rev",
    "revd",
    "sir",
    "dame",
    "prof",
    "lady",
    "lord",
}


def first_name(name: str | None) -> str:
    """How we greet someone: "Margaret Jones" -> "Margaret", "Jones, Mary" -> "Mary",
    "Mrs Margaret Jones" -> "Mrs Jones"; nobody's name -> "there"."""
    text = " ".join((name or "").split())
    if "," in text:  # "Surname, First" as lists are often sorted
        surname, _, rest = text.partition(",")
        text = f"{rest.strip()} {surname.strip()}".strip()
    words = text.split()
    if not words:
        return "there"
    if words[0].rstrip(".").casefold() in _TITLES:
        return f"{words[0]} {words[-1]}" if len(words) > 1 else "there"
    return words[0]


def _ctx(
    context: Mapping[str, Any],
    survey: Survey | None = None,
    answered: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What a prompt can use: the person's first name, our name, the survey's own fields and,
    for piping, every earlier answer (`answers.q` its label, `answers.q.value` its code)."""
    ctx: dict[str, Any] = {
        "name": first_name(context.get("name")),
        # In their language: a Welsh sentence names the organisation by its Welsh name.
        "org": org_name_in(context.get("org") or "us", _lang(context)),
    }
    if survey is not None:
        given = context.get("answered") if answered is None else answered
        ctx["answers"] = piped_answers(survey, given or {})
        ctx["survey"] = {**survey.fields, "id": survey.id, "title": survey.title}
    return ctx


def answer_label(question: Question, value: str) -> str:
    """The words for a stored value: an option's label, a date written out, or the value."""
    if question.type == "multi":
        labels = [
            (o.label if (o := question.option(v)) is not None else v)
            for v in value.split(MULTI_SEPARATOR)
        ]
        return f"{', '.join(labels[:-1])} and {labels[-1]}" if len(labels) > 1 else labels[0]
    option = question.option(value)
    if option is not None:
        return option.label
    if question.type == "date":
        parsed = parsing._date(value)
        return parsed.label if parsed else value
    return value


def _stored_label(question: Question, value: str) -> str:
    """An answer's label as the database keeps it: in the script's (staff) language, and a
    list of all that apply joined by "; " as the export shows it."""
    if question.type == "multi":
        return "; ".join(
            (o.label if (o := question.option(v)) is not None else v)
            for v in value.split(MULTI_SEPARATOR)
        )
    return answer_label(question, value)


def piped_answers(survey: Survey, answered: Mapping[str, str]) -> dict[str, templates.Piped]:
    """Every question's answer as a prompt shows it; one with no answer reads as nothing
    (lint warns where that can happen)."""
    result: dict[str, templates.Piped] = {}
    for question in survey.questions:
        value = answered.get(question.id)
        if value is None:
            result[question.id] = templates.Piped("", "")
        else:
            result[question.id] = templates.Piped(answer_label(question, value), value)
    return result


SORRY = N_("Sorry, we didn't quite catch that.")
WELCOME = N_("You're welcome. Thank you for your help.")


def retry_text(sorry: str, expected: str | None, language: str | None = None) -> str:
    """The retry as a text says it; a call words `sorry` and `expected` its own way."""
    if not expected:
        return sorry
    reply = t(language, "Please reply with {expected}.", expected=expected)
    return f"{sorry} {reply}"


def _lang(context: Mapping[str, Any]) -> str:
    return language_of(context.get("language"))


def ask(
    survey: Survey,
    question: Question,
    context: Mapping[str, Any],
    retry: str | None = None,
    *,
    sorry: str | None = None,
    expected: str | None = None,
    answered: Mapping[str, str] | None = None,
    picked: tuple[str, ...] = (),
) -> Ask:
    language = _lang(context)
    survey = survey.in_language(language)
    question = survey.question(question.id)
    # Most questions and labels are plain text, which `render` returns as written: the
    # context (every earlier answer worded for piping) is made only for a template.
    if question.templated:
        ctx = _ctx(context, survey, answered)
        text = templates.render(question.ask, ctx)
        choices = tuple((o.value, templates.render(o.label, ctx)) for o in question.choices)
    else:
        text, choices = question.plain_words
    if retry is None and sorry is not None:
        retry = retry_text(sorry, expected, language)
    return Ask(
        question=question,
        text=text,
        number=survey.number(question),
        total=len(survey.asked),
        retry=retry,
        choices=choices,
        sorry=sorry if sorry is not None else retry,
        expected=expected,
        picked=picked,
        language=language,
    )


SORRY_FOR = {
    "out_of_range": N_("Sorry, that is outside the range we can take."),
    "negated": N_("Sorry, we could not tell which answer you meant."),
    "several": N_("Sorry, please choose just one answer."),
    "unclear": N_("Sorry, we could not tell what you meant."),
    "unit": N_("Sorry, please give the number in the unit the question asks for."),
    "age_unit": N_("Sorry, please give your age in years."),
}
YESNO_UNCLEAR = N_("Sorry, we could not tell if that means yes or no.")


TOO_LONG = N_("Sorry, that is too long for us.")
SHORTER = N_("Please send a shorter message, about {lines}.")
LINE_CHARACTERS = 80  # about a line of a text, as people think of one


def lines_for(limit: int, language: str | None = None) -> str:
    """A length limit as people picture it: "one line", "two lines", "6 lines"."""
    lines = max(1, round(limit / LINE_CHARACTERS))
    if lines == 1:
        return t(language, "one line")
    if lines == 2:
        return t(language, "two lines")
    return t(language, "{count} lines", count=lines)


def did_you_mean(
    survey: Survey, question: Question, answer: parsing.Answer, context: Mapping[str, Any]
) -> Ask:
    """ "Did you mean No?", asked as a yes/no question in the place of the question (same
    id), so every channel offers its own yes and no: words, buttons or keys 1 and 2."""
    language = _lang(context)
    local = survey.in_language(language).question(question.id)
    named = answer.label
    if question.type == "scale" and answer.label != answer.value:
        named = f"{answer.value} ({answer.label})"
    words = t(language, "Did you mean {answer}?", answer=named)
    confirm = Question(id=question.id, type="yesno", ask=words, yes_no=local.yes_no)
    return Ask(
        question=confirm,
        text=words,
        number=survey.number(question),
        total=len(survey.asked),
        choices=tuple((o.value, o.label) for o in confirm.choices),
        language=language,
    )


def screened_out(
    survey: Survey, question: Question, answered: Mapping[str, str], value: str
) -> bool:
    """An answer outside a number's range that the script ends the survey for, straight
    after the question (a screen-out: `type: end` when: {age: {max: 17}}), with its own
    words, rather than telling the person the rule and carrying on."""
    return route(survey, question.id, {**answered, question.id: value}).ended_early


def ask_again(
    survey: Survey,
    question: Question,
    context: Mapping[str, Any],
    text: str,
    reason: str = "unreadable",
    answered: Mapping[str, str] | None = None,
) -> Ask:
    """The question again after a reply we could not use, saying why and what we expect: in
    the script's own words (`reask`) where it gives them, and always the range or length."""
    language = _lang(context)
    local = survey.in_language(language).question(question.id)
    own = (
        templates.render(local.reask, _ctx(context, survey.in_language(language), answered))
        if local.reask
        else None
    )
    if question.type == "text" and len((text or "").strip()) > question.max_length:
        # Nobody counts characters: say how long, in lines. Their words are kept for staff.
        shorter = t(language, SHORTER, lines=lines_for(question.max_length, language))
        sorry = f"{own} {shorter}" if own else f"{t(language, TOO_LONG)} {shorter}"
        return ask(survey, question, context, sorry=sorry, answered=answered)
    if reason == "unclear" and question.type == "yesno":
        sorry = own or t(language, YESNO_UNCLEAR)
    else:
        sorry = own or t(language, SORRY_FOR.get(reason, SORRY))
    return ask(
        survey,
        question,
        context,
        sorry=sorry,
        expected=parsing.expected(local, language),
        answered=answered,
    )


def _applies(question: Question, answered: Mapping[str, str]) -> bool:
    return holds(question.condition, answered) is True


def next_question(
    survey: Survey, after: str | None, answered: Mapping[str, str]
) -> Question | None:
    """The next question that asks something (statements and endings are passed over)."""
    start = 0 if after is None else survey.index(after) + 1
    for question in survey.questions[start:]:
        if _applies(question, answered):
            if question.type == "end":
                return None
            if question.asks:
                return question
    return None


@dataclass(frozen=True)
class Route:
    """Where a survey goes from one question: what it says on the way (statements, and an
    ending's closing words), the next question or none, and what it skips knowingly."""

    says: tuple[Question, ...]
    question: Question | None
    ended_early: bool
    skipped: tuple[RecordedAnswer, ...]


def route(
    survey: Survey,
    after: str | None,
    answered: Mapping[str, str],
    unusable: tuple[str, ...] = (),
) -> Route:
    start = 0 if after is None else survey.index(after) + 1
    says: list[Question] = []
    skipped: list[RecordedAnswer] = []
    for question in survey.questions[start:]:
        verdict = holds(question.condition, answered)
        if verdict is None:
            # It rests on an answer we do not have. Where that is one the person gave but we
            # could not use (or they skipped), staff must see why this was not asked.
            missing = [
                t.question_id
                for t in tests_in(question.condition)
                if t.question_id not in answered and t.question_id in unusable
            ]
            if missing and question.asks:
                because = ", ".join(dict.fromkeys(missing))
                skipped.append(
                    RecordedAnswer(
                        question.id,
                        None,
                        f"(not asked: no usable answer to {because})",
                        None,
                        skipped=True,
                    )
                )
                unusable = (*unusable, question.id)
            continue
        if not verdict:
            continue
        if question.type == "statement":
            says.append(question)
            continue
        if question.type == "end":
            return Route(tuple([*says, question]), None, True, tuple(skipped))
        return Route(tuple(says), question, False, tuple(skipped))
    return Route(tuple(says), None, False, tuple(skipped))


def _said(
    survey: Survey, routed: Route, context: Mapping[str, Any], answered: Mapping[str, str]
) -> list[Prompt]:
    if not routed.says:
        return []
    ctx = _ctx(context, survey, answered)
    return [
        Say(templates.render(q.ask, ctx), "outro" if q.type == "end" else "info")
        for q in routed.says
    ]


def _spoken_in(survey: Survey, context: Mapping[str, Any]) -> Mapping[str, Any]:
    """The context a survey is held in with this person: in their language if the script has
    it, else in the script's own, so no message is half Welsh and half English."""
    language = _lang(context)
    if language == STAFF_LANGUAGE or language in survey.translations:
        return context
    return {**context, "language": STAFF_LANGUAGE}


def begin(survey: Survey, context: Mapping[str, Any]) -> Step:
    context = _spoken_in(survey, context)
    survey = survey.in_language(_lang(context))
    prompts: list[Prompt] = []
    if survey.intro:
        prompts.append(Say(templates.render(survey.intro, _ctx(context, survey, {})), "intro"))
    routed = route(survey, None, {})
    prompts.extend(_said(survey, routed, context, {}))
    if routed.question is None:
        # A script that ends before its first question (a screen-out on nothing) just ends.
        return Step(State(question_id=None, status=COMPLETED), tuple(prompts))
    prompts.append(ask(survey, routed.question, context, answered={}))
    return Step(State(question_id=routed.question.id), tuple(prompts))


def _advance(
    survey: Survey,
    state: State,
    recorded: RecordedAnswer,
    context: Mapping[str, Any],
    consent: tuple[str, ...] = (),
    lead: tuple[Prompt, ...] = (),
) -> Step:
    survey = survey.in_language(_lang(context))
    if state.kept:
        recorded = replace(recorded, replaces_kept=True)
    answered = dict(state.answered)
    unusable = tuple(state.unusable)
    if recorded.value is not None and not recorded.unparsed and not recorded.skipped:
        answered[recorded.question_id] = recorded.value
    else:
        unusable = (*unusable, recorded.question_id)
    routed = route(survey, recorded.question_id, answered, unusable)
    unusable = (*unusable, *(r.question_id for r in routed.skipped))
    records = (recorded, *routed.skipped)
    prompts = [*lead, *_said(survey, routed, context, answered)]
    if routed.question is None:
        if survey.outro and not routed.ended_early:
            prompts.append(
                Say(templates.render(survey.outro, _ctx(context, survey, answered)), "outro")
            )
        done = State(question_id=None, status=COMPLETED, answered=answered, unusable=unusable)
        return Step(done, tuple(prompts), records, consent)
    moved = State(question_id=routed.question.id, answered=answered, unusable=unusable)
    prompts.append(ask(survey, routed.question, context, answered=answered))
    return Step(moved, tuple(prompts), records, consent)


def _consent_for(question: Question, answer: parsing.Answer) -> tuple[str, ...]:
    if question.sets == "recontact":
        return ("recontact_yes",) if answer.value == "yes" else ("recontact_no",)
    return ()


def meaning(state: State, inbound: Inbound) -> Inbound:
    """What an input means in this state: "yes" just after we asked whether to stop all
    messages is STOP, whatever question is waiting."""
    if (
        state.stop_asked
        and isinstance(inbound, Reply)
        and (
            confirms_stop(inbound.text)
            # A worded yes: a key or a tapped "1" picks an option, it does not answer us.
            or (parsing.says_yes(inbound.text) and not any(c.isdigit() for c in inbound.text))
        )
    ):
        return Command.STOP
    return inbound


def not_shown(state: State, invitation: bool) -> State:
    """The state once a message of ours reached the person as something else in its place
    (an approved template): an invitation (`invitation`), before anything was answered,
    showed nothing of the survey; any other showed not the waiting question. A conversation
    with no question waiting is as it was."""
    if state.status != ACTIVE or state.question_id is None:
        return state
    nothing_yet = invitation and not state.answered and not state.unusable
    if state.unseen == UNSEEN_INTRO or nothing_yet:
        return replace(state, unseen=UNSEEN_INTRO)
    return replace(state, unseen=UNSEEN_QUESTION)


def _carries_on(state: State, inbound: Inbound) -> bool:
    """From someone who has not seen the waiting question, is this "begin" or "carry on"
    rather than something to act on? STOP, START, HELP and REPEAT are acted on (all but STOP
    show the question), and so are a worded wish to stop, "who is this?", a language's name
    and the answer to "Do you want us to stop all messages?"; SKIP cannot skip what they
    have not seen."""
    if state.stop_asked:
        return False
    if inbound is Command.SKIP or isinstance(inbound, Toggle | Done):
        return True
    if not isinstance(inbound, Reply):
        return False
    if switch_word(inbound.text) is not None:
        return False  # CYMRAEG: the question, in Welsh
    return intent(inbound.text) not in (Intent.STOP_REQUEST, Intent.WHO)


def _show_unseen(survey: Survey, state: State, context: Mapping[str, Any]) -> Step:
    """What they have not seen: the survey's opening (intro, statements, first question) or
    the waiting question. Nothing is stored: what they wrote cannot be its answer."""
    question = survey.question(state.question_id or "")
    shown = replace(state, unseen=None, unsure=None)
    if state.unseen == UNSEEN_INTRO:
        opening = begin(survey, context)
        if opening.state.question_id == question.id:
            return Step(shown, opening.prompts)
    return Step(shown, (ask(survey, question, context, answered=state.answered),))


def step(survey: Survey, state: State, inbound: Inbound, context: Mapping[str, Any]) -> Step:
    """What a person's input does to their conversation.

    Where our last message reached them as something else in its place (`State.unseen`: an
    approved template naming the survey), the question waiting is one they have not seen,
    so their reply ("Yes", "ok", "2") cannot be its answer, least of all a consent's: it is
    taken as "begin" or "carry on", and they are shown what they missed. STOP still stops."""
    if state.unseen is not None and state.status == ACTIVE and state.question_id is not None:
        if _carries_on(state, inbound):
            return _show_unseen(survey, state, context)
        done = _step(survey, state, inbound, context)
        if any(isinstance(p, Ask) for p in done.prompts):
            done = replace(done, state=replace(done.state, unseen=None))  # shown now
        return done
    return _step(survey, state, inbound, context)


def _step(survey: Survey, state: State, inbound: Inbound, context: Mapping[str, Any]) -> Step:
    inbound = meaning(state, inbound)
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
    written_in = _lang(context)  # theirs, noted on what they write even where we speak English
    # For piping, wherever it is asked; in the script's language if it has none of theirs.
    context = {**_spoken_in(survey, context), "answered": state.answered}
    # Asked once: whatever comes next settles it, so the question is back in front of them.
    # (The state is rebuilt only where it changes: `replace` is slow, and most replies find
    # neither this nor `unsure` set.)
    asked_to_stop = state.stop_asked
    if asked_to_stop:
        state = replace(state, stop_asked=False)
    if (
        asked_to_stop
        and isinstance(inbound, Reply)
        and (
            declines_stop(inbound.text)
            or (question.type == "yesno" and intent(inbound.text) is not Intent.STOP_REQUEST)
        )
    ):
        # A no to stopping; and on a yes/no question anything else too, since a "no" or
        # "maybe" there answered us, not the question (it may be about consent).
        carry_on = Say(t(_lang(context), "Thank you. We will carry on."), "info")
        return Step(state, (carry_on, ask(survey, question, context)))
    # We asked "Did you mean No?": a yes stores that answer, a no asks the question again
    # (as a miss, so nobody goes round for ever); anything else is read afresh.
    pending = state.unsure
    if pending is not None:
        state = replace(state, unsure=None)
    if pending is not None and isinstance(inbound, Reply):
        confirmed = parsing.yes_or_no(inbound.text)
        if confirmed == "yes":
            value = pending["value"]
            label = _stored_label(question, value)
            recorded = RecordedAnswer(
                question.id, value, label, pending.get("raw"), language=written_in
            )
            consent = _consent_for(question, parsing.Answer(value, label))
            return _advance(survey, state, recorded, context, consent)
        if confirmed == "no":
            return _missed(
                survey, state, question, pending.get("raw") or "", "unclear", context, written_in
            )
    if inbound is Command.START:
        return Step(state, (started_say(context), ask(survey, question, context)), (), ("opt_in",))
    if inbound is Command.HELP:
        return Step(state, (help_say(context), ask(survey, question, context)))
    if inbound is Command.REPEAT:
        return Step(state, (ask(survey, question, context),))
    if inbound is Command.SKIP:
        if not question.optional:
            hint = t(_lang(context), "This one needs an answer, but any answer is fine.")
            return Step(state, (ask(survey, question, context, retry=hint),))
        skipped = RecordedAnswer(question.id, None, None, None, skipped=True)
        return _advance(survey, state, skipped, context)
    if isinstance(inbound, Toggle | Done):
        return _tapped(survey, state, question, inbound, context)
    assert isinstance(inbound, Reply)
    if not (inbound.text or "").strip():
        # A picture, a sticker, an empty text: nothing to read, so not a miss.
        nothing = t(_lang(context), "We could not find any words in your message.")
        return Step(state, (ask(survey, question, context, retry=nothing),))
    switched = switch_word(inbound.text)
    if switched is not None and _could_be_an_answer(question, inbound.text):
        switched = None  # "English" to "Which language do you speak at home?" is an answer
    if switched is not None:
        # CYMRAEG / ENGLISH: the same question again in that language; not an answer or a miss.
        moved = _spoken_in(survey, {**context, "language": switched})
        return Step(state, (ask(survey, question, moved),), language=switched)
    # One of the question's own answers is that answer ("No more" as an option), whatever
    # else the words could mean.
    meant = None if parsing.names_an_option(question, inbound.text) else intent(inbound.text)
    # Neither is an answer, so neither is stored nor counted as a miss.
    if meant is Intent.STOP_REQUEST:
        confirm = Say(confirm_stop_text(context), "confirm_stop")
        return Step(replace(state, stop_asked=True), (confirm,))
    if meant is Intent.WHO:
        return Step(state, (who_say(context), ask(survey, question, context)))
    language = _lang(context)
    # Read against the question in their language (its labels, and the English ones too).
    local = survey.in_language(language).question(question.id)
    parsed = parsing.parse(local, inbound.text, written_in)
    if isinstance(parsed, parsing.Unsure):
        # It could mean two things: asked, never stored as a guess.
        pending = {"value": parsed.answer.value, "raw": inbound.text}
        confirm = did_you_mean(survey, question, parsed.answer, context)
        return Step(replace(state, unsure=pending), (confirm,))
    if (
        isinstance(parsed, parsing.Miss)
        and parsed.reason == "out_of_range"
        and parsed.value is not None
        and screened_out(survey, question, state.answered, parsed.value)
    ):
        # Outside the range, and the script ends the survey for it with its own words.
        parsed = parsing.Answer(parsed.value, parsed.value)
    if isinstance(parsed, parsing.Answer):
        # Stored in the staff language, whatever it was answered in; the language is noted.
        label = _stored_label(question, parsed.value) if question.choices else parsed.label
        recorded = RecordedAnswer(
            question.id, parsed.value, label, inbound.text, language=written_in
        )
        return _advance(survey, state, recorded, context, _consent_for(question, parsed))
    if (
        question.type != "yesno"
        and not state.thanked
        and (meant is Intent.THANKS or agreeing(inbound.text))
    ):
        # "Yes", "of course", "ok", a thumbs up: saying yes to taking part (the invitation
        # asked), not a wrong answer. Thanked and asked again, once, without a miss.
        thanks = Say(t(language, "Thank you."), "thanks")
        return Step(replace(state, thanked=True), (thanks, ask(survey, question, context)))
    return _missed(survey, state, question, inbound.text, parsed.reason, context, written_in)


def _missed(
    survey: Survey,
    state: State,
    question: Question,
    text: str,
    reason: str,
    context: Mapping[str, Any],
    written_in: str,
) -> Step:
    """A reply we could not use: asked again, saying why; after a second miss their words
    are kept, flagged unreadable, and the survey goes on."""
    language = _lang(context)
    if state.misses + 1 >= MAX_MISSES and question.sets != "recontact":
        # (A question that sets consent to hear back is asked until it is answered, skipped
        # or stopped: "maybe" kept as their words would leave the consent to an import's flag.)
        # Their words are kept, flagged unreadable, for staff to read; never stored as the
        # answer (no value, no label), so no count, branch or export takes them for one.
        recorded = RecordedAnswer(question.id, None, None, text, unparsed=True, language=written_in)
        thanks = Say(t(language, "Thank you, we have noted that."), "info")
        return _advance(survey, replace(state, misses=0), recorded, context, lead=(thanks,))
    again = ask_again(survey, question, context, text, reason)
    if reason == "too_long":
        # Too long to use, but theirs: kept for staff (flagged unreadable) until a shorter
        # answer takes its place, so nothing is lost if they never send one.
        kept = RecordedAnswer(
            question.id,
            None,
            None,
            text,
            unparsed=True,
            language=written_in,
            replaces_kept=state.kept,
        )
        moved = replace(state, misses=state.misses + 1, kept=True)
        return Step(moved, (again,), (kept,))
    return Step(replace(state, misses=state.misses + 1), (again,))


def _could_be_an_answer(question: Question, text: str) -> bool:
    """A language's name is an answer where the question could take it as one, unless it is
    written in capitals as we tell people to ("Text CYMRAEG for Welsh")."""
    word = (text or "").strip().strip(".!")
    if word.isupper():
        return False
    said = parsing.simplify(word)
    named = {parsing.simplify(n) for o in question.choices for n in (o.label, o.value, *o.synonyms)}
    return question.type == "text" or said in named


def _tapped(
    survey: Survey,
    state: State,
    question: Question,
    inbound: Toggle | Done,
    context: Mapping[str, Any],
) -> Step:
    """Taps on a list of all that apply: each toggles one answer; Done stores them together."""
    if question.type != "multi":
        return Step(state, (ask(survey, question, context),))  # a button from another question
    if isinstance(inbound, Toggle):
        option = question.option(inbound.value)
        if option is None:
            return Step(state, (ask(survey, question, context, picked=state.picked),))
        if option.extra:
            # "Don't know" stands alone: it is the answer, whatever was tapped before.
            recorded = RecordedAnswer(question.id, option.value, option.label, option.label)
            return _advance(survey, replace(state, picked=()), recorded, context)
        picked = (
            tuple(v for v in state.picked if v != option.value)
            if option.value in state.picked
            else (*state.picked, option.value)
        )
        return Step(replace(state, picked=picked), (ask(survey, question, context, picked=picked),))
    if not state.picked:
        sorry = t(_lang(context), "Please tap at least one answer, then Done.")
        return Step(state, (ask(survey, question, context, sorry=sorry),))
    value = MULTI_SEPARATOR.join(o.value for o in question.options if o.value in state.picked)
    label = "; ".join(o.label for o in question.options if o.value in state.picked)
    recorded = RecordedAnswer(question.id, value, label, label, language=_lang(context))
    return _advance(survey, replace(state, picked=()), recorded, context)


def after_end(
    inbound: Inbound,
    context: Mapping[str, Any],
    closed: Survey | None = None,
    by_staff: bool = False,
) -> Step:
    """What to say to someone with no conversation in progress; `closed` is the survey whose
    conversation has just ended unanswered for a week, if their reply is what found that, or
    (`by_staff`) whose campaign staff closed while they were answering."""
    idle = State(question_id=None, status=COMPLETED)
    if inbound is Command.STOP:
        return Step(idle, (Say(stopped_text(context), "stopped"),), (), ("opt_out",))
    if inbound is Command.START:
        return Step(idle, (started_say(context),), (), ("opt_in",))
    meant = intent(inbound.text) if isinstance(inbound, Reply) else None
    switched = switch_word(inbound.text) if isinstance(inbound, Reply) else None
    if switched is not None:
        said = Say(t(switched, "We will write to you in English."), "info")
        return Step(idle, (said,), language=switched)
    if meant is Intent.THANKS:
        # "thanks" or a thumbs up after the last question: HELP would puzzle; a short word
        # back says it arrived, and asks nothing, so it does not start a conversation.
        return Step(idle, (Say(t(_lang(context), WELCOME), "thanks"),))
    if meant is Intent.STOP_REQUEST:
        return Step(idle, (Say(confirm_stop_text(context), "confirm_stop"),))
    if meant is Intent.WHO:
        return Step(idle, (who_say(context),))
    if closed is not None and isinstance(inbound, Reply) and by_staff:
        # Never dropped silently: the answer came after the survey closed, and it says so.
        late = t(
            _lang(context),
            "Sorry, this survey has closed, so we could not use your answer. "
            "Thank you for your help so far.",
        )
        return Step(idle, (Say(late, "info"),))
    if closed is not None and isinstance(inbound, Reply):
        # A late answer: say plainly it could not be used, and how to begin again.
        late = t(
            _lang(context),
            "Sorry, this survey closed after a week with no reply, so we could not use your "
            "answer. Thank you for your help so far.",
        )
        if closed.keyword:
            late += " " + t(
                _lang(context), "Text {keyword} to start it again.", keyword=closed.keyword
            )
        return Step(idle, (Say(late, "info"),))
    return Step(idle, (Say(idle_help_text(context), "help"),))


def is_expired(last_activity: datetime, now: datetime, idle_for: timedelta = IDLE_EXPIRY) -> bool:
    return now - last_activity >= idle_for


def reach_a_person(context: Mapping[str, Any], otherwise: bool = True) -> str:
    """How to reach a person (CONTACT_PHONE); with no number, how else to reach staff, or
    nothing where `otherwise` is False (after a stop, which says nothing it cannot keep)."""
    number = context.get("contact")
    if number:
        return t(_lang(context), "To speak to a person, call {number}.", number=number)
    if not otherwise:
        return ""
    return t(_lang(context), "To speak to a person, contact us in the usual way.")


def _and_reach(text: str, reach: str) -> str:
    return f"{text} {reach}" if reach else text


def stopped_text(context: Mapping[str, Any]) -> str:
    stopped = t(
        _lang(context),
        "You will not hear from {org} again. "
        "Thank you for your help so far. Reply START if you change your mind.",
        org=_ctx(context)["org"],
    )
    return _and_reach(stopped, reach_a_person(context, otherwise=False))


def started_text(context: Mapping[str, Any]) -> str:
    return t(
        _lang(context),
        "Welcome back. {org} may contact you again. Reply STOP at any time to stop.",
        org=_ctx(context)["org"],
    )


def started_say(context: Mapping[str, Any]) -> Say:
    """START answered; in a text beside a long question, without our name."""
    short = t(_lang(context), "Welcome back. Reply STOP at any time to stop.")
    return Say(started_text(context), "started", (short,))


def confirm_stop_text(context: Mapping[str, Any]) -> str:
    # Asked, not acted on: a free-text "stop" might be about something else, and STOP is the
    # one word carriers and the contract both honour.
    return t(_lang(context), "Do you want us to stop all messages? Reply STOP to confirm.")


def who_text(context: Mapping[str, Any]) -> str:
    return t(
        _lang(context),
        "This is {org}. We ask people for their views to improve our services. "
        "Reply STOP if you would rather we did not contact you.",
        org=_ctx(context)["org"],
    )


def who_say(context: Mapping[str, Any]) -> Say:
    """ "Who is this?" answered; in a text beside a long question, our name and how to stop."""
    return Say(who_text(context), "help", (_who_and_stop(context),))


def _who_and_stop(context: Mapping[str, Any]) -> str:
    return t(
        _lang(context), "This is {org}. Reply STOP to stop all messages.", org=_ctx(context)["org"]
    )


def idle_help_text(context: Mapping[str, Any]) -> str:
    """HELP, or a message we cannot place, from someone with no question waiting."""
    helped = t(
        _lang(context),
        "This is {org}, asking for your views to improve our services. We have no questions "
        "for you just now, and will send you one when we do. Reply STOP to stop all messages.",
        org=_ctx(context)["org"],
    )
    return _and_reach(helped, reach_a_person(context))


def help_text(context: Mapping[str, Any]) -> str:
    helped = t(
        _lang(context),
        "This is {org}. Reply REPEAT for the question again, SKIP to skip an optional one, "
        "or STOP to stop all messages.",
        org=_ctx(context)["org"],
    )
    return _and_reach(helped, reach_a_person(context))


def help_say(context: Mapping[str, Any]) -> Say:
    """HELP answered. In a text beside a long question (or with a long ORG_NAME), in fewer
    words, so a text and its question keep within two SMS segments in all: who we are, how
    to stop and how to reach a person; at the least, who we are and how to stop, which the
    contract says HELP always tells. (REPEAT is the first to go: the question is there, in
    the same text.)"""
    reach = reach_a_person(context)
    who_and_stop = _who_and_stop(context)
    return Say(help_text(context), "help", (_and_reach(who_and_stop, reach), who_and_stop))
