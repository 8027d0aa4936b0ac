""" "You said, we did": a personal message telling each person how their input was used.

Staff write one template and, per question, what changed for each answer. Each person who
answered and agreed to hear back gets the message on the channel they answered on, naming their
own answers. It goes through the outbox (quiet hours, pacing, STOP) at most once per person per
campaign: sending again reaches only those who have not had it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from bot import channels, conversations, engine
from bot.conversations import outbox
from bot.cycle import exports
from bot.cycle.exports import participant_key
from bot.cycle.panel import _own_recontact_answers
from bot.privacy import contact_state
from bot.scripts import gsm, templates
from bot.scripts.survey import Survey
from bot.storage import contacts
from bot.storage.models import (
    Answer,
    Campaign,
    ConsentEvent,
    Conversation,
    Message,
    Participant,
    SurveyVersion,
)
from bot.storage.status import Consent, Kind, Outbound

TEMPLATE_NAMES = {"name", "answers", "outcomes", "summary"}
# Seconds to render everyone's message. Each render has its own limit (bot.scripts.templates); this
# one stops a template just under that limit, times thousands of people, holding a web
# worker (and the campaign's row lock) for an hour. A normal message takes microseconds.
PLAN_TIME_LIMIT = 30.0
MAX_SEGMENTS = 2
ALREADY = (Outbound.PENDING, Outbound.CLAIMED, Outbound.QUEUED, Outbound.SENT, Outbound.DELIVERED)


class FeedbackError(ValueError):
    """The definition cannot be used; the message names the line or field and the problem."""


@dataclass(frozen=True)
class QuestionSummary:
    """What `summary.<question>` shows: "Your health, your way was chosen by 61% of 212 people"."""

    answered: int
    winner: str | None = None
    percent: int | None = None
    count: int | None = None
    tied: tuple[str, ...] = ()  # every option sharing the top count, when more than one does

    def __str__(self) -> str:
        people = f"{self.answered} {'person' if self.answered == 1 else 'people'}"
        if self.winner is None:
            return f"{people} answered"
        if len(self.tied) > 1:
            names = ", ".join(self.tied[:-1]) + f" and {self.tied[-1]}"
            return f"{names} were chosen equally, each by {self.percent}% of {people}"
        return f"{self.winner} was chosen by {self.percent}% of {people}"


@dataclass(frozen=True)
class Definition:
    message: str
    outcomes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def parse_definition(payload: Any, survey: Survey) -> Definition:
    if not isinstance(payload, Mapping):
        raise FeedbackError(
            'send {"message": TEMPLATE, "outcomes": {QUESTION: {ANSWER or "*": TEXT}}}'
        )
    unknown = sorted(set(payload) - {"message", "outcomes", "dry_run"})
    if unknown:
        raise FeedbackError(f"unknown field {unknown[0]!r}")
    message = payload.get("message")
    if not isinstance(message, str) or not message.strip():
        raise FeedbackError("message is missing: the template each person receives")
    try:
        templates.check(message, TEMPLATE_NAMES)
    except templates.TemplateProblem as exc:
        raise FeedbackError(f"message: {exc}") from None
    raw = payload.get("outcomes") or {}
    if not isinstance(raw, Mapping):
        raise FeedbackError("outcomes must map question ids to {answer value or '*': sentence}")
    outcomes: dict[str, dict[str, str]] = {}
    ids = {q.id: q for q in survey.questions}
    for question_id, by_answer in raw.items():
        question = ids.get(str(question_id))
        if question is None:
            raise FeedbackError(
                f"outcomes: {question_id!r} is not a question of {survey.id!r} (there are: {', '.join(ids)})"
            )
        if not isinstance(by_answer, Mapping):
            raise FeedbackError(
                f"outcomes.{question_id} must map answer values (or '*') to a sentence"
            )
        allowed = {o.value for o in question.choices} | {"*"}
        cleaned: dict[str, str] = {}
        for value, sentence in by_answer.items():
            key = "yes" if value is True else "no" if value is False else str(value)
            if question.choices and key not in allowed:
                raise FeedbackError(
                    f"outcomes.{question_id}: {key!r} is not an answer (use one of: {', '.join(sorted(allowed))})"
                )
            if not question.choices and key != "*":
                raise FeedbackError(f"outcomes.{question_id}: free answers can only use '*'")
            if not isinstance(sentence, str) or not sentence.strip():
                raise FeedbackError(f"outcomes.{question_id}.{key} must be a sentence")
            cleaned[key] = sentence.strip()
        outcomes[question.id] = cleaned
    return Definition(message, outcomes)


def load_file(path: Path, survey: Survey) -> Definition:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FeedbackError(
            f"{path}: no such file (write the message and outcomes there)"
        ) from None
    except yaml.YAMLError as exc:
        raise FeedbackError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse_definition(data, survey)
    except FeedbackError as exc:
        raise FeedbackError(f"{path}: {exc}") from None


def summaries(session: Session, campaign: Campaign) -> dict[str, QuestionSummary]:
    result: dict[str, QuestionSummary] = {}
    for entry in exports.summary(session, campaign)["questions"]:
        options = entry.get("options")
        if options:
            best = max(options, key=lambda o: o["count"])
            if best["count"]:
                tied = tuple(o["label"] for o in options if o["count"] == best["count"])
                result[entry["id"]] = QuestionSummary(
                    entry["answered"], best["label"], round(best["percent"]), best["count"], tied
                )
                continue
        result[entry["id"]] = QuestionSummary(entry["answered"])
    return result


@dataclass(frozen=True)
class Recipient:
    participant_id: int
    external_id: str | None
    channel: str
    message: str
    consent: str = ""  # what their agreement to hear back rests on, as the preview says it


@dataclass
class Plan:
    recipients: list[Recipient] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


def plan(session: Session, campaign: Campaign, definition: Definition) -> Plan:
    """Who gets what, and who is skipped and why; renders every message (so errors show now)."""
    survey = conversations.survey_of(session.get(SurveyVersion, campaign.survey_version_id))
    overall = summaries(session, campaign)
    result = Plan()
    rows = session.execute(
        select(Conversation, Participant)
        .join(Participant, Participant.id == Conversation.participant_id)
        .where(Conversation.campaign_id == campaign.id)
        .order_by(Conversation.id)
        .options(selectinload(Participant.contact_points))
    ).all()
    had = set(
        session.scalars(
            select(Message.participant_id).where(
                Message.campaign_id == campaign.id,
                Message.kind == Kind.FEEDBACK,
                Message.status.in_(ALREADY),
            )
        )
    )
    # Every answer in the campaign in one query, not one query a person.
    by_conversation: dict[int, dict[str, Answer]] = {}
    for answer in session.scalars(
        select(Answer)
        .join(Conversation, Conversation.id == Answer.conversation_id)
        .where(Conversation.campaign_id == campaign.id, Answer.skipped.is_(False))
    ):
        by_conversation.setdefault(answer.conversation_id, {})[answer.question_id] = answer
    asked = [q for q in survey.questions if q.sets == "recontact"]
    own_earlier = _own_recontact_answers(session, [person.id for _, person in rows])
    started = time.monotonic()
    for conv, person in rows:
        if time.monotonic() - started > PLAN_TIME_LIMIT:
            raise FeedbackError(
                f"message: rendering everyone's message took too long (over {PLAN_TIME_LIMIT:g} s):"
                " make the template simpler"
            )
        answers = by_conversation.get(conv.id, {})
        who = participant_key(person.id, person.external_id)
        reason = _why_not(person, answers, had)
        consent = None
        if not reason:
            consent, reason = _consent(person, answers, asked, own_earlier.get(person.id))
        if not reason:
            reason = _cannot_carry(person, conv.channel)
        if reason:
            result.skipped.append({"participant": who, "reason": reason})
            continue
        # Built afresh for each person, and frozen again by templates.render: nothing one
        # person's render does can reach the next person's message.
        context = {
            "name": engine.first_name(person.name),
            "answers": {
                q.id: (answers[q.id].label or "") if q.id in answers else ""
                for q in survey.questions
            },
            "outcomes": _outcomes(survey, definition, answers),
            "summary": overall,
        }
        try:
            text = templates.render(definition.message, context)
        except templates.TemplateProblem as exc:
            raise FeedbackError(f"message: {exc}") from None
        result.recipients.append(
            Recipient(person.id, person.external_id, conv.channel, text, consent or "")
        )
    return result


def _consent(
    person: Participant,
    answers: Mapping[str, Answer],
    asked: list[Any],
    own_earlier: ConsentEvent | None,
) -> tuple[str | None, str | None]:
    """(what their consent to hear back rests on, None) or (None, why they are skipped).

    Where this survey asked its own recontact question, their answer to it decides; with no
    readable answer there ("maybe", or they stopped before it) only an answer they gave
    themselves earlier counts, never an import's or staff's flag alone.
    """
    for question in asked:
        answer = answers.get(question.id)
        if answer is not None and not answer.unparsed and answer.value in ("yes", "no"):
            if answer.value == "no":
                return None, "said no to hearing back in this survey"
            return f"their answer in this survey ({question.id}: {answer.label})", None
    if own_earlier is not None and own_earlier.kind == Consent.RECONTACT_YES:
        when = f"{own_earlier.at:%d %b %Y}"
        return f"their own earlier answer (by {own_earlier.how}, {when})", None
    if asked:
        return None, (
            f"no readable answer to {asked[0].id} in this survey; the panel's flag alone is "
            "not enough"
        )
    return "the panel import or staff (recontact: yes)", None


def _why_not(
    person: Participant, answers: Mapping[str, Answer], had: set[int | None]
) -> str | None:
    if person.erased_at is not None:
        return "erased"
    if person.opted_out:
        return "opted out"
    if not answers:
        return "did not answer"
    if person.recontact is not True:
        return "did not agree to hear back"
    if person.id in had:
        return "already sent"
    return None


def _cannot_carry(person: Participant, channel: str) -> str | None:
    """Why the channel they answered on cannot reach them now ("stopped on Telegram: bot
    blocked (Telegram 403)"), or None when it can."""
    if contacts.first_usable(person.contact_points, channel) is not None:
        return None
    there = [point for point in person.contact_points if point.channel == channel]
    return contact_state(there[0]) if there else f"no {channels.get(channel).title} address"


def _outcomes(survey: Survey, definition: Definition, answers: Mapping[str, Answer]) -> str:
    """The outcome sentences that match this person's own answers, in question order."""
    sentences = []
    for question in survey.questions:
        by_answer = definition.outcomes.get(question.id)
        answer = answers.get(question.id)
        if not by_answer or answer is None:
            continue
        sentence = (
            by_answer.get(answer.value or "") if not answer.unparsed else None
        ) or by_answer.get("*")
        if sentence:
            sentences.append(sentence)
    return " ".join(sentences)


def preview(plan_: Plan) -> dict[str, Any]:
    recipients = []
    for r in plan_.recipients:
        entry: dict[str, Any] = {
            "participant": participant_key(r.participant_id, r.external_id),
            "channel": r.channel,
            "message": r.message,
            "consent": r.consent,
        }
        warnings = []
        if channels.get(r.channel).segment_counted:
            size = gsm.sms_size(r.message)
            entry.update(segments=size.segments, encoding=size.encoding)
            if size.segments > MAX_SEGMENTS:
                warnings.append(f"{size.segments} SMS segments (keep it to {MAX_SEGMENTS})")
            for index, ch in size.non_gsm[:3]:
                warnings.append(
                    f"{gsm.describe_character(ch)} at character {index + 1} is outside GSM-7: sent as UCS-2"
                )
        entry["warnings"] = warnings
        recipients.append(entry)
    return {"recipients": recipients, "skipped": plan_.skipped}


def send(session: Session, campaign: Campaign, plan_: Plan) -> list[int]:
    """Queue each recipient's message in the outbox; they go once the unit of work commits."""
    ids = []
    for recipient in plan_.recipients:
        person = session.get(Participant, recipient.participant_id)
        message = outbox.add(
            session,
            person,
            recipient.channel,
            recipient.message,
            Kind.FEEDBACK,
            campaign_id=campaign.id,
        )
        ids.append(message.id)
    return ids


def counts(session: Session, campaign: Campaign) -> dict[str, int]:
    by_status = dict(
        session.execute(
            select(Message.status, func.count())
            .where(Message.campaign_id == campaign.id, Message.kind == Kind.FEEDBACK)
            .group_by(Message.status)
        ).all()
    )
    people = (
        session.scalar(
            select(func.count(func.distinct(Conversation.participant_id))).where(
                Conversation.campaign_id == campaign.id
            )
        )
        or 0
    )
    reached = (
        session.scalar(
            select(func.count(func.distinct(Message.participant_id))).where(
                Message.campaign_id == campaign.id, Message.kind == Kind.FEEDBACK
            )
        )
        or 0
    )
    return {
        "queued": by_status.get(Outbound.PENDING, 0)
        + by_status.get(Outbound.CLAIMED, 0)
        + by_status.get("queued", 0),
        "sent": by_status.get("sent", 0),
        "delivered": by_status.get("delivered", 0),
        "failed": by_status.get(Outbound.FAILED, 0) + by_status.get(Outbound.UNDELIVERED, 0),
        "skipped": max(people - reached, 0),
    }
