"""Applying the engine to stored conversations: the one path every channel's input takes.

A channel parses what arrived into a `Reply` or `Command`, calls `handle_inbound`, and renders
the prompts it gets back. This module decides which conversation the input belongs to (a person
has at most one in progress, whatever the channel), runs one engine step, and writes its result:
state, answers, consent. It never commits; the caller's unit of work does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from bot import engine
from bot.engine import Inbound, Prompt, Say
from bot.keywords import Command, start_payload
from bot.models import (
    Answer,
    ConsentEvent,
    Conversation,
    Message,
    Participant,
    Suppression,
    SurveyVersion,
    utcnow,
)
from bot.survey import Survey, load_text


@dataclass(frozen=True)
class Outcome:
    prompts: tuple[Prompt, ...]
    conversation: Conversation | None = None
    participant: Participant | None = None
    queued: tuple[int, ...] = ()  # outbox rows to dispatch once this unit of work commits


# --- surveys as stored ---------------------------------------------------------------------


def survey_version(session: Session, survey: Survey) -> SurveyVersion:
    """The stored copy of exactly this script, created the first time it is used."""
    digest = survey.content_hash
    found = session.scalar(select(SurveyVersion).where(SurveyVersion.content_hash == digest))
    if found is not None:
        return found
    version = SurveyVersion(
        survey_id=survey.id, content_hash=digest, title=survey.title, source=survey.source
    )
    try:
        with session.begin_nested():
            session.add(version)
    except IntegrityError:
        # Another process stored the same script a moment ago.
        return session.scalars(
            select(SurveyVersion).where(SurveyVersion.content_hash == digest)
        ).one()
    return version


@lru_cache(maxsize=256)
def _parse_version(content_hash: str, source: str, path: str) -> Survey:
    return load_text(source, path)


def survey_of(version: SurveyVersion) -> Survey:
    return _parse_version(
        version.content_hash, version.source, f"{version.survey_id}@{version.content_hash[:8]}"
    )


_by_version_id: dict[tuple[str, int], Survey] = {}


def survey_for_source(content_hash: str, source: str, survey_id: str) -> Survey:
    return _parse_version(content_hash, source, f"{survey_id}@{content_hash[:8]}")


def survey_for(session: Session, version_id: int) -> Survey:
    """The script a conversation uses. Stored versions never change, so each is read once."""
    key = (str(session.get_bind().url), version_id)
    survey = _by_version_id.get(key)
    if survey is None:
        survey = survey_of(session.get(SurveyVersion, version_id))
        if len(_by_version_id) > 1024:
            _by_version_id.clear()
        _by_version_id[key] = survey
    return survey


_insert_once: dict[str, Any] = {}


def insert_inbound_once(session: Session, **values: Any) -> int | None:
    """Store an inbound message unless its provider id is already stored; its id, or None.

    One statement (INSERT ... ON CONFLICT DO NOTHING): a concurrent duplicate waits for the
    first to commit and then inserts nothing. The statement is built once per dialect: this is
    the webhook's hot path.
    """
    dialect = session.get_bind().dialect.name
    statement = _insert_once.get(dialect)
    if statement is None:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        statement = _insert_once[dialect] = (
            insert(Message.__table__)
            .on_conflict_do_nothing(index_elements=["channel", "direction", "provider_id"])
            .returning(Message.__table__.c.id)
        )
    row = {column: None for column in _INBOUND_COLUMNS}
    row.update(direction="in", attempts=0, created_at=values.get("created_at") or utcnow())
    row.update(values)
    row["updated_at"] = row["created_at"]
    return session.connection().execute(statement, row).scalar()


_INBOUND_COLUMNS = (
    "participant_id",
    "conversation_id",
    "campaign_id",
    "in_reply_to_id",
    "channel",
    "kind",
    "address",
    "body",
    "provider_id",
    "status",
    "error_code",
    "error_message",
    "send_after",
    "claimed_at",
    "sent_at",
)


# --- people ------------------------------------------------------------------------------


def participant_by_phone(
    session: Session, phone: str, joined_via: str | None = None
) -> Participant:
    person = session.scalar(select(Participant).where(Participant.phone == phone))
    if person is not None:
        return person
    from bot.panel import suppression_hash

    suppressed = session.scalar(
        select(Suppression.id).where(Suppression.address_hash == suppression_hash(phone))
    )
    # Someone erased after opting out who writes again starts opted out: START lets them back.
    person = Participant(
        phone=phone, channel="sms", joined_via=joined_via, tags=[], opted_out=suppressed is not None
    )
    try:
        with session.begin_nested():
            session.add(person)
    except IntegrityError:
        return session.scalars(select(Participant).where(Participant.phone == phone)).one()
    return person


def record_consent(
    session: Session,
    person: Participant,
    kind: str,
    how: str,
    detail: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Log a consent change and apply it; False when it changes nothing (STOP twice)."""
    if kind == "opt_out":
        if person.opted_out:
            return False
        person.opted_out = True
    elif kind == "opt_in":
        if not person.opted_out:
            return False
        person.opted_out = False
    elif kind in ("recontact_yes", "recontact_no"):
        person.recontact = kind == "recontact_yes"
    else:
        raise ValueError(f"unknown consent kind {kind!r}")
    session.add(
        ConsentEvent(
            participant_id=person.id, kind=kind, how=how, detail=detail, at=now or utcnow()
        )
    )
    if kind == "opt_out":
        cancel_pending(session, person.id, reason="opted out")
    return True


def cancel_pending(session: Session, participant_id: int, reason: str) -> None:
    """Outbound rows not yet handed to a provider will not go."""
    session.execute(
        update(Message)
        .where(
            Message.participant_id == participant_id,
            Message.direction == "out",
            Message.status == "pending",
        )
        .values(status="cancelled", error_message=reason, updated_at=utcnow())
    )


# --- conversations -----------------------------------------------------------------------


def active_conversation(
    session: Session, person: Participant, now: datetime
) -> Conversation | None:
    conv = session.scalar(
        select(Conversation)
        .where(Conversation.participant_id == person.id, Conversation.status == engine.ACTIVE)
        .with_for_update()
    )
    if conv is not None and engine.is_expired(conv.last_activity_at, now):
        conv.status = engine.EXPIRED
        conv.state = {**conv.state, "status": engine.EXPIRED}
        session.flush()
        return None
    return conv


def context_for(person: Participant, org: str) -> dict[str, Any]:
    return {"name": person.name, "org": org}


def start_conversation(
    session: Session,
    person: Participant,
    survey: Survey,
    channel: str,
    now: datetime,
    org: str,
    campaign_id: int | None = None,
) -> tuple[Conversation, engine.Step]:
    """Begin a survey; the caller has made sure nothing else is in progress for this person."""
    version = survey_version(session, survey)
    step = engine.begin(survey, context_for(person, org))
    conv = Conversation(
        participant_id=person.id,
        survey_version_id=version.id,
        campaign_id=campaign_id,
        channel=channel,
        status=engine.ACTIVE,
        state=step.state.to_json(),
        started_at=now,
        last_activity_at=now,
    )
    session.add(conv)
    session.flush()
    return conv, step


def _apply(
    session: Session,
    person: Participant,
    conv: Conversation,
    step: engine.Step,
    channel: str,
    now: datetime,
) -> None:
    """Write a step's result with plain statements (this is every webhook's hot path), and keep
    the loaded conversation in step without marking it for the ORM to write again."""
    changes: dict[str, Any] = {
        "state": step.state.to_json(),
        "status": step.state.status,
        "last_activity_at": now,
        "channel": channel,
    }
    if step.state.status == engine.COMPLETED:
        changes["completed_at"] = now
    if conv.started_at is None and step.answers:
        changes["started_at"] = now
    session.execute(
        update(Conversation.__table__).where(Conversation.__table__.c.id == conv.id).values(changes)
    )
    for key, value in changes.items():
        set_committed_value(conv, key, value)
    if step.answers:
        session.execute(
            insert(Answer.__table__),
            [
                {
                    "conversation_id": conv.id,
                    "participant_id": person.id,
                    "question_id": recorded.question_id,
                    "value": recorded.value,
                    "label": recorded.label,
                    "raw_text": recorded.raw,
                    "unparsed": recorded.unparsed,
                    "skipped": recorded.skipped,
                    "channel": channel,
                    "answered_at": now,
                }
                for recorded in step.answers
            ],
        )


def handle_inbound(
    session: Session,
    person: Participant,
    channel: str,
    inbound: Inbound,
    now: datetime,
    org: str,
    keywords: Mapping[str, Survey] | None = None,
    raw: str | None = None,
) -> Outcome:
    """One thing a person sent, on any channel: run it through their conversation.

    `keywords` maps survey keywords to surveys a person may start by texting the word (or
    `/start word`); `raw` is the text as sent, for finding that word.
    """
    context = context_for(person, org)
    conv = active_conversation(session, person, now)
    if inbound is Command.STOP:
        changed = record_consent(session, person, "opt_out", channel, now=now)
        if conv is not None:
            conv.status = engine.STOPPED
            conv.state = {**conv.state, "status": engine.STOPPED}
            conv.last_activity_at = now
        # Confirmed once: a second STOP gets no answer.
        prompts = (Say(engine.stopped_text(context), "stopped"),) if changed else ()
        return Outcome(prompts, conv, person)
    if inbound is Command.START:
        changed = record_consent(session, person, "opt_in", channel, now=now)
        survey = _keyword_survey(raw, keywords)
        if conv is None and survey is not None:
            return _begin(session, person, survey, channel, now, org)
        prompts: tuple[Prompt, ...] = (
            (Say(engine.started_text(context), "started"),) if changed else ()
        )
        if conv is not None:
            survey_now = survey_for(session, conv.survey_version_id)
            prompts += (
                engine.ask(survey_now, survey_now.question(conv.state["question_id"]), context),
            )
        elif not changed:
            prompts = (Say(engine.help_text(context), "help"),)
        return Outcome(prompts, conv, person)
    if person.opted_out:
        # They asked us to stop; answer only to say how to start again.
        text = (
            "You asked us not to contact you. Reply START if you would like to hear from us again."
        )
        return Outcome((Say(text, "help"),), conv, person)
    if conv is None:
        survey = _keyword_survey(raw, keywords)
        if survey is not None:
            return _begin(session, person, survey, channel, now, org)
        if person.joined_via is None:
            person.joined_via = f"wrote by {channel}"
        return Outcome(engine.after_end(inbound, context).prompts, None, person)
    survey = survey_for(session, conv.survey_version_id)
    step = engine.step(survey, engine.State.from_json(conv.state), inbound, context)
    _apply(session, person, conv, step, channel, now)
    queued: tuple[int, ...] = ()
    if step.finished:
        from bot.campaigns import promote_waiting
        from bot.runtime import settings as current_settings

        queued = tuple(promote_waiting(session, person.id, current_settings()))
    for kind in step.consent:
        record_consent(
            session,
            person,
            kind,
            channel,
            detail=f"survey {survey.id}",
            now=now,
        )
    return Outcome(step.prompts, conv, person, queued)


def _keyword_survey(raw: str | None, keywords: Mapping[str, Survey] | None) -> Survey | None:
    if not keywords or not raw:
        return None
    word = start_payload(raw) or raw.strip().strip(".!").upper()
    return keywords.get(word)


def _begin(
    session: Session, person: Participant, survey: Survey, channel: str, now: datetime, org: str
) -> Outcome:
    conv, step = start_conversation(session, person, survey, channel, now, org)
    if person.joined_via is None:
        person.joined_via = f"keyword {survey.keyword}"
    return Outcome(step.prompts, conv, person)
