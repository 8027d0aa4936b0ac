"""Conversations as stored: survey versions, people and their locks, consent, steps written.

`bot.conversations.inbox` is the one writer of what a person sends and uses these; campaigns use them to
start conversations. Nothing here commits; the caller's unit of work does.

The lock order, for everything a person touches: the participant row first (`lock_person`),
then their conversation, then what hangs off them. Every writer keeps it, so two writers for
one person queue instead of deadlocking.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from bot import engine
from bot.channels import Channel, all_channels
from bot.config import Settings
from bot.conversations.suppression import suppressed
from bot.scripts.survey import Survey, load_text
from bot.storage.db import Database
from bot.storage.models import (
    Answer,
    ConsentEvent,
    Conversation,
    Message,
    Participant,
    SurveyVersion,
    utcnow,
)
from bot.storage.prepared import Prepared, Record
from bot.storage.status import Consent, Direction, Outbound

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


_by_version_id: dict[tuple[Any, int], Survey] = {}


def survey_for(session: Session, version_id: int) -> Survey:
    """The script a conversation uses. Stored versions never change, so each is read once."""
    key = (session.get_bind().url, version_id)
    survey = _by_version_id.get(key)
    if survey is None:
        survey = survey_of(session.get(SurveyVersion, version_id))
        if len(_by_version_id) > 1024:
            _by_version_id.clear()
        _by_version_id[key] = survey
    return survey


def forget_cached_surveys() -> None:
    """Stored versions never change or go, so they are cached by id; only a database wiped
    under a running process (the tests) needs this."""
    _by_version_id.clear()


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
        statement = _insert_once[dialect] = Prepared(
            insert(Message.__table__)
            .on_conflict_do_nothing(index_elements=["channel", "direction", "provider_id"])
            .returning(Message.__table__.c.id)
        )
    row = {column: None for column in _INBOUND_COLUMNS}
    row.update(direction="in", attempts=0, created_at=values.get("created_at") or utcnow())
    row.update(values)
    row["updated_at"] = row["created_at"]
    found = statement.first(session.connection(), row)
    return found.id if found is not None else None


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
#
# The writer reads a person as a plain row and changes them with plain statements: this is
# every message's first work, and an ORM object costs more to load than the whole step.
# Code that holds a `Participant` object (staff verbs) may pass it: it is kept in step.

_people = Participant.__table__


@lru_cache(maxsize=1)
def _person_columns() -> tuple[Any, ...]:
    # Every channel's address column, so `channel.address_of(row)` works on the row.
    fields = sorted({channel.address_field for channel in all_channels()})
    names = ("id", "name", "language", "opted_out", "recontact", "joined_via", *fields)
    return tuple(_people.c[name] for name in names)


@lru_cache(maxsize=8)
def _person_row_locked(address_field: str | None) -> Prepared:
    # Built once per address column: this is every inbound message's first statement.
    key = _people.c[address_field] if address_field else _people.c.id
    return Prepared(select(*_person_columns()).where(key == bindparam("key")).with_for_update())


def lock_person(session: Session, participant_id: int) -> Participant | None:
    """Take the person's row lock: the first lock any writer of their data takes."""
    return session.get(Participant, participant_id, with_for_update=True)


def lock_person_row(session: Session, participant_id: int) -> Record | None:
    """`lock_person`, as a row (id, name, language, opted_out, recontact, joined_via and
    the address columns)."""
    return _person_row_locked(None).first(session.connection(), {"key": participant_id})


_insert_person: dict[tuple[str, str], Any] = {}


def lock_person_at(session: Session, settings: Settings, channel: Channel, address: str) -> Record:
    """The person at this address, locked, as a row; someone new is created (and locked)."""
    connection = session.connection()
    value = channel.column_value(address)
    statement = _person_row_locked(channel.address_field)
    person = statement.first(connection, {"key": value})
    if person is not None:
        return person
    now = utcnow()
    # Someone erased after opting out who writes again starts opted out: START lets them back.
    # If they wrote twice at once, the other message created them a moment ago: nothing is
    # inserted, and the select below waits for that one's lock.
    connection.execute(
        _insert_person_once(session, channel.address_field),
        {
            channel.address_field: value,
            "channel": channel.name,
            "tags": [],
            "opted_out": bool(suppressed(session, settings, [address])),
            "created_at": now,
            "updated_at": now,
        },
    )
    person = statement.first(connection, {"key": value})
    assert person is not None, "inserted, or inserted a moment ago by the other message"
    return person


def _insert_person_once(session: Session, address_field: str) -> Any:
    dialect = session.get_bind().dialect.name
    statement = _insert_person.get((dialect, address_field))
    if statement is None:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        statement = _insert_person[(dialect, address_field)] = dialect_insert(
            _people
        ).on_conflict_do_nothing(index_elements=[address_field])
    return statement


_UPDATE_PERSON = Prepared(_people.update().where(_people.c.id == bindparam("person_id")))


def set_person(session: Session, person: Any, **values: Any) -> None:
    """Change a person's own columns (language, joined_via, consent); the caller holds their
    lock. A `Participant` object passed in is kept in step, not marked to be written again."""
    # As the ORM would: what already holds is not written, and `updated_at` moves only on a
    # real change (the same recontact answer twice changes nothing but the consent log).
    changes = {k: v for k, v in values.items() if not hasattr(person, k) or getattr(person, k) != v}
    if not changes:
        return
    changes["updated_at"] = utcnow()
    _UPDATE_PERSON.run(session.connection(), {"person_id": person.id, **changes})
    if isinstance(person, Participant):
        for key, value in changes.items():
            set_committed_value(person, key, value)


def person_at(session: Session, channel: Channel, address: str) -> Participant | None:
    """The person at this address, if we know them (no lock: for bookkeeping only)."""
    column = getattr(Participant, channel.address_field)
    try:
        value = channel.column_value(address)
    except ValueError:
        return None
    return session.scalar(select(Participant).where(column == value))


_INSERT_CONSENT = Prepared(insert(ConsentEvent.__table__))


def record_consent(
    session: Session,
    person: Any,
    kind: str,
    how: str,
    detail: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Log a consent change and apply it; False when it changes nothing (STOP twice).
    `person` is a locked row or `Participant`: its `opted_out` is what holds now."""
    if kind == Consent.OPT_OUT:
        if person.opted_out:
            return False
        set_person(session, person, opted_out=True)
    elif kind == Consent.OPT_IN:
        if not person.opted_out:
            return False
        set_person(session, person, opted_out=False)
    elif kind in (Consent.RECONTACT_YES, Consent.RECONTACT_NO):
        set_person(session, person, recontact=kind == Consent.RECONTACT_YES)
    else:
        raise ValueError(f"unknown consent kind {kind!r}")
    _INSERT_CONSENT.run(
        session.connection(),
        {
            "participant_id": person.id,
            "kind": kind,
            "how": how,
            "detail": detail,
            "at": now or utcnow(),
        },
    )
    if kind == Consent.OPT_OUT:
        cancel_pending(session, person.id, reason="opted out")
    return True


def opt_out_by_carrier(database: Database, participant_id: int, detail: str) -> None:
    """The person unsubscribed at their carrier: logged like a STOP, in its own unit of work
    that takes the person's lock first."""
    with database.session() as session:
        person = lock_person(session, participant_id)
        if person is not None:
            record_consent(session, person, Consent.OPT_OUT, "carrier", detail=detail)


def cancel_pending(session: Session, participant_id: int, reason: str) -> None:
    """Outbound rows not yet handed to a provider will not go."""
    session.execute(
        update(Message)
        .where(
            Message.participant_id == participant_id,
            Message.direction == Direction.OUT,
            Message.status == Outbound.PENDING,
        )
        .values(status=Outbound.CANCELLED, error_message=reason, updated_at=utcnow())
    )


# --- conversations -----------------------------------------------------------------------

_conversations = Conversation.__table__
ACTIVE_LOCKED_STATEMENT = (
    select(
        _conversations.c.id,
        _conversations.c.survey_version_id,
        _conversations.c.campaign_id,
        _conversations.c.state,
        _conversations.c.started_at,
        _conversations.c.last_activity_at,
        _conversations.c.channel,
    )
    .where(
        _conversations.c.participant_id == bindparam("participant_id"),
        _conversations.c.status == engine.ACTIVE,
    )
    .with_for_update()
)
# The columns to set come with each call's parameters; compiled once per set of columns.
ACTIVE_LOCKED = Prepared(ACTIVE_LOCKED_STATEMENT)
_UPDATE_CONVERSATION = Prepared(
    _conversations.update().where(_conversations.c.id == bindparam("conversation_id"))
)
_INSERT_ANSWER = Prepared(insert(Answer.__table__))


def active_conversation(session: Session, person: Any, now: datetime) -> Record | None:
    """The person's conversation in progress, locked, as a row (id, survey_version_id,
    campaign_id, state, started_at, last_activity_at); one idle too long ends here."""
    found = ACTIVE_LOCKED.first(session.connection(), {"participant_id": person.id})
    return unless_expired(session, found, now)


def unless_expired(session: Session, conv: Any, now: datetime) -> Any:
    """The conversation read by `ACTIVE_LOCKED`, or None: one idle too long ends here."""
    if conv is not None and engine.is_expired(conv.last_activity_at, now):
        end_conversation(session, conv, engine.EXPIRED)
        return None
    return conv


def end_conversation(session: Session, conv: Any, status: str, now: datetime | None = None) -> None:
    """It ends here (stopped, expired): its state says so too."""
    changes: dict[str, Any] = {"status": status, "state": {**conv.state, "status": status}}
    if now is not None:
        changes["last_activity_at"] = now
    _update_conversation(session, conv, changes)


def _update_conversation(session: Session, conv: Any, changes: dict[str, Any]) -> None:
    _UPDATE_CONVERSATION.run(session.connection(), {"conversation_id": conv.id, **changes})
    if isinstance(conv, Conversation):
        for key, value in changes.items():
            set_committed_value(conv, key, value)


def context_for(person: Any, org: str) -> dict[str, Any]:
    return {"name": person.name, "org": org, "language": person.language}


def start_conversation(
    session: Session,
    person: Any,
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
        **_conversation_row(person, version.id, campaign_id, channel, step, now, started_at=now)
    )
    session.add(conv)
    session.flush()
    return conv, step


def start_many(
    session: Session,
    survey: Survey,
    version_id: int,
    campaign_id: int,
    starting: list[tuple[Any, str]],
    now: datetime,
    org: str,
) -> list[tuple[int, engine.Step]]:
    """Begin a campaign's survey for many (person, channel) at once, in one statement, as not
    yet started (nobody has answered): each conversation's id and first step, in order. The
    caller has made sure nothing else is in progress for these people."""
    if not starting:
        return []
    steps = [engine.begin(survey, context_for(person, org)) for person, _ in starting]
    ids = session.scalars(
        insert(Conversation.__table__).returning(
            Conversation.__table__.c.id, sort_by_parameter_order=True
        ),
        [
            _conversation_row(person, version_id, campaign_id, channel, step, now, started_at=None)
            for (person, channel), step in zip(starting, steps, strict=True)
        ],
    ).all()
    return list(zip(ids, steps, strict=True))


def _conversation_row(
    person: Any,
    version_id: int,
    campaign_id: int | None,
    channel: str,
    step: engine.Step,
    now: datetime,
    started_at: datetime | None,
) -> dict[str, Any]:
    return {
        "participant_id": person.id,
        "survey_version_id": version_id,
        "campaign_id": campaign_id,
        "channel": channel,
        "status": engine.ACTIVE,
        "state": step.state.to_json(),
        "started_at": started_at,
        "last_activity_at": now,
        "completed_at": None,
    }


def write_step(
    session: Session,
    person: Any,
    conv: Any,
    step: engine.Step,
    channel: str,
    now: datetime,
) -> None:
    """Write a step's result: the conversation's state, the answers, a language asked for.
    `person` and `conv` are the locked rows (or objects, kept in step)."""
    if step.language is not None:
        set_person(session, person, language=step.language)  # from now on, everywhere
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
    _update_conversation(session, conv, changes)
    replaced = [r.question_id for r in step.answers if r.replaces_kept]
    if replaced:
        # The words of a reply too long to use, kept until this answer took their place.
        session.execute(
            delete(Answer.__table__).where(
                Answer.__table__.c.conversation_id == conv.id,
                Answer.__table__.c.question_id.in_(replaced),
                Answer.__table__.c.unparsed.is_(True),
            )
        )
    if step.answers:
        _INSERT_ANSWER.run(
            session.connection(),
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
                    "language": recorded.language,
                    "channel": channel,
                    "answered_at": now,
                }
                for recorded in step.answers
            ],
        )
