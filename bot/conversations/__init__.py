"""Conversations as stored: survey versions, people and their locks, consent, steps written.

`bot.conversations.inbox` is the one writer of what a person sends and uses these; campaigns use them to
start conversations. Nothing here commits; the caller's unit of work does.

The lock order, for everything a person touches: the participant row first (`lock_person`),
then their conversation, then what hangs off them. Every writer keeps it, so two writers for
one person queue instead of deadlocking. A writer for many people (a fan-out chunk, reminders,
closing a campaign, channel fallback) takes their rows in id order (`lock_people`), so two of
them queue too; one that touches a campaign's row takes it before any person's.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, delete, insert, literal_column, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from bot import engine
from bot.channels import Channel, for_field
from bot.channels.base import Blocked
from bot.config import Settings
from bot.conversations.suppression import suppressed
from bot.scripts.survey import Survey, load_text
from bot.storage import contacts
from bot.storage.db import Database, connection_of
from bot.storage.models import (
    Answer,
    ConsentEvent,
    ContactPoint,
    Conversation,
    Message,
    Participant,
    SurveyVersion,
    utcnow,
)
from bot.storage.prepared import Prepared, Record
from bot.storage.status import Consent, Direction, Outbound

log = logging.getLogger(__name__)

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
# The last database URL seen and its key. A URL hashes by rendering itself as a string every
# time, and a message asks `survey_for` once or twice: its engine's URL object is the same
# one each time, so it is rendered once (the password kept: two databases differ by it).
_url_key: list[tuple[Any, str]] = [(None, "")]


def _database_key(url: Any) -> str:
    last = _url_key[0]  # read and replaced whole, so threads sharing it never mix two
    if last[0] is url:
        return last[1]
    key = url.render_as_string(hide_password=False)
    _url_key[0] = (url, key)
    return key


def survey_for(session: Session, version_id: int) -> Survey:
    """The script a conversation uses. Stored versions never change, so each is read once."""
    # Bound to an engine or a connection.
    key = (_database_key(session.get_bind().engine.url), version_id)
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
    connection = connection_of(session)
    dialect = connection.dialect.name
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
    # One dict display (merged in C), not a comprehension and two updates.
    row = {
        **_INBOUND_DEFAULTS,
        "created_at": values.get("created_at") or utcnow(),
        **values,
    }
    row["updated_at"] = row["created_at"]
    found = statement.first(connection, row)
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
_INBOUND_DEFAULTS = {**dict.fromkeys(_INBOUND_COLUMNS), "direction": "in", "attempts": 0}


# --- people ------------------------------------------------------------------------------
#
# The writer reads a person as a plain row and changes them with plain statements: this is
# every message's first work, and an ORM object costs more to load than the whole step.
# Code that holds a `Participant` object (staff verbs) may pass it: it is kept in step.

_people = Participant.__table__
_points = ContactPoint.__table__
_PERSON_COLUMNS = tuple(
    _people.c[name]
    for name in ("id", "name", "language", "opted_out", "recontact", "joined_via", "channel")
)

# The person's row by id, locked: the first statement of a known person's message.
_PERSON_LOCKED = Prepared(
    select(*_PERSON_COLUMNS).where(_people.c.id == bindparam("key")).with_for_update()
)
# The sender of a message, by the contact point they wrote on: one indexed read (the unique
# (channel, address) index) joined to their row, which is locked; the contact point is read
# with it, so moving `last_inbound_at` on needs no other read.
_SENDER_LOCKED = Prepared(
    select(
        *_PERSON_COLUMNS,
        _points.c.id.label("contact_point_id"),
        _points.c.last_inbound_at,
        _points.c.verified_at,
        _points.c.unreachable_at,
    )
    .select_from(_points.join(_people, _people.c.id == _points.c.participant_id))
    .where(_points.c.channel == bindparam("channel"), _points.c.address == bindparam("address"))
    .with_for_update(of=_people)
)
_WROTE = Prepared(
    update(_points)
    .where(_points.c.id == bindparam("point_id"))
    .values(
        last_inbound_at=bindparam("wrote_at"),
        verified_at=bindparam("verified_at"),
        unreachable_at=None,
        unreachable_reason=None,
        updated_at=bindparam("wrote_at"),
    )
)


def lock_person(session: Session, participant_id: int) -> Participant | None:
    """Take the person's row lock: the first lock any writer of their data takes."""
    return session.get(Participant, participant_id, with_for_update=True)


LOCK_BATCH = 1000  # people locked by one statement


def lock_people(session: Session, participant_ids: Iterable[int]) -> list[int]:
    """Take many people's row locks, in id order: the ids of those who exist, ascending.

    Every writer that locks more than one person takes them in this order, so two such writers
    (or one and a writer of one person) queue instead of deadlocking. What the caller reads
    after this is what the last writer of each of them committed: read nothing about them
    before. On SQLite there are no row locks; the writers' turn (`bot.storage.db`) already
    holds the whole database for the transaction.
    """
    ids = sorted(set(participant_ids))
    locked: list[int] = []
    for start in range(0, len(ids), LOCK_BATCH):
        # One ordered SELECT ... FOR UPDATE: PostgreSQL locks the rows as it returns them.
        locked += session.scalars(
            select(_people.c.id)
            .where(_people.c.id.in_(ids[start : start + LOCK_BATCH]))
            .order_by(_people.c.id)
            .with_for_update()
        )
    return locked


def lock_person_row(session: Session, participant_id: int) -> Record | None:
    """`lock_person`, as a row (id, name, language, opted_out, recontact, joined_via,
    channel)."""
    return _PERSON_LOCKED.first(connection_of(session), {"key": participant_id})


_INSERT_PERSON = insert(_people).returning(_people.c.id)
_insert_point: dict[str, Any] = {}


def lock_person_at(
    session: Session,
    settings: Settings,
    channel: Channel,
    address: str,
    wrote_at: datetime | None = None,
) -> Record:
    """The person at this address on this channel, locked, as a row (`lock_person_row`'s
    columns and `contact_point_id`); someone new is created with that contact point (and
    locked). `wrote_at`: they wrote to us on it then, so it is theirs and it works: its
    `last_inbound_at` moves on (at most every `contacts.INBOUND_PRECISION`), it is verified,
    and no longer taken for unreachable."""
    connection = connection_of(session)
    where = {"channel": channel.name, "address": address}
    person = _SENDER_LOCKED.first(connection, where)
    if person is not None:
        if wrote_at is not None and (
            person.last_inbound_at is None
            or wrote_at - person.last_inbound_at >= contacts.INBOUND_PRECISION
            or person.unreachable_at is not None
        ):
            _WROTE.run(
                connection,
                {
                    "point_id": person.contact_point_id,
                    "wrote_at": max(wrote_at, person.last_inbound_at or wrote_at),
                    "verified_at": person.verified_at or wrote_at,
                },
            )
        return person
    now = utcnow()
    # The same address on the channels that share its kind (a number is texted and called):
    # someone who called us and now texts from that number is the same person.
    siblings = [c.name for c in for_field(channel.contact_field) if c.name != channel.name]
    known = connection.execute(
        select(_points.c.participant_id)
        .where(_points.c.channel.in_(siblings), _points.c.address == address)
        .limit(1)
    ).scalar()
    if known is not None and siblings:
        connection.execute(
            _insert_point_once(session),
            _point_row(known, channel.name, address, wrote_at, now, position=len(siblings) + 1),
        )
        return _locked_sender(connection, where)
    # Someone erased after opting out who writes again starts opted out: START lets them back.
    new_id = connection.execute(
        _INSERT_PERSON,
        {
            "channel": channel.name,
            "tags": [],
            "opted_out": bool(suppressed(session, settings, [address])),
            "created_at": now,
            "updated_at": now,
        },
    ).scalar_one()
    # If they wrote twice at once, the other message created them a moment ago: its contact
    # point holds the address, this insert waits for it and adds nothing, and the person just
    # made (nobody's yet) goes again. The select below then waits for the other one's lock.
    added = connection.execute(
        _insert_point_once(session), _point_row(new_id, channel.name, address, wrote_at, now)
    ).first()
    if added is None:
        connection.execute(delete(_people).where(_people.c.id == new_id))
    else:
        # As a panel import gives a number: a contact point on each channel that reaches it.
        for position, sibling in enumerate(siblings, start=1):
            row = _point_row(new_id, sibling, address, None, now, position)
            connection.execute(_insert_point_once(session), row)
    return _locked_sender(connection, where)


def _locked_sender(connection: Any, where: dict[str, Any]) -> Record:
    person = _SENDER_LOCKED.first(connection, where)
    assert person is not None, "inserted, or inserted a moment ago by the other message"
    return person


def _point_row(
    person_id: int,
    channel: str,
    address: str,
    wrote_at: datetime | None,
    now: datetime,
    position: int = 0,
) -> dict[str, Any]:
    return {
        "participant_id": person_id,
        "channel": channel,
        "address": address,
        "position": position,
        "verified_at": wrote_at,
        "last_inbound_at": wrote_at,
        "created_at": now,
        "updated_at": now,
    }


def _insert_point_once(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    statement = _insert_point.get(dialect)
    if statement is None:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        statement = _insert_point[dialect] = (
            dialect_insert(_points)
            .on_conflict_do_nothing(index_elements=["channel", "address"])
            .returning(_points.c.id)
        )
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
    _UPDATE_PERSON.run(connection_of(session), {"person_id": person.id, **changes})
    if isinstance(person, Participant):
        for key, value in changes.items():
            set_committed_value(person, key, value)


def person_at(session: Session, channel: Channel, address: str) -> Participant | None:
    """The person at this address on this channel, if we know them (no lock: for
    bookkeeping only)."""
    return session.scalar(
        select(Participant)
        .join(ContactPoint, ContactPoint.participant_id == Participant.id)
        .where(ContactPoint.channel == channel.name, ContactPoint.address == address)
    )


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
        connection_of(session),
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


def opt_out_by_carrier(
    database: Database,
    participant_id: int,
    detail: str,
    channel: str | None = None,
    address: str | None = None,
    reason: str | None = None,
) -> None:
    """The person unsubscribed at their carrier (Twilio's 21610: they texted one of its STOP
    words to our number): logged like a STOP, which holds on every channel, and that contact
    point marked opted out there (`reason`), in its own unit of work that takes the person's
    lock first."""
    with database.session() as session:
        person = lock_person(session, participant_id)
        if person is None:
            return
        if channel is not None and address is not None:
            contacts.mark(session, person.id, channel, address, opted_out=reason or detail)
        record_consent(session, person, Consent.OPT_OUT, "carrier", detail=detail)


def stop_point(
    session: Session,
    participant_id: int,
    channel: str,
    address: str,
    reason: str,
    now: datetime | None = None,
) -> bool:
    """The person blocked us on this channel at this address (a Telegram bot, a WhatsApp
    sender): that contact point is stopped, with the reason; nothing waiting to go there will
    go; the consent log says so (`point_stopped`, how: the channel; never the address). The
    person is not opted out: blocking one app is not a STOP, and their other contact points
    keep working (a campaign's fallback moves on to the next, `bot.cycle.fallback`). False
    when it was stopped already. The caller holds the person's lock."""
    now = now or utcnow()
    if not contacts.stop(session, participant_id, channel, address, reason, now):
        return False
    cancel_pending(
        session, participant_id, reason=f"stopped on {channel}", channel=channel, address=address
    )
    _log_point(session, participant_id, Consent.POINT_STOPPED, channel, reason, now)
    log.info("person %s stopped us on %s: %s", participant_id, channel, reason)
    return True


def let_in_point(
    session: Session,
    participant_id: int,
    channel: str,
    address: str,
    detail: str | None = None,
    now: datetime | None = None,
) -> bool:
    """The contact point a provider had stopped is usable again (they unblocked the bot, said
    START on it): the consent log says so (`point_let_in`). False when it was not stopped. The
    caller holds the person's lock. Their own consent is another matter: a STOP stays a STOP
    until they say START."""
    if not contacts.opted_in(session, participant_id, channel, address):
        return False
    _log_point(session, participant_id, Consent.POINT_LET_IN, channel, detail, now or utcnow())
    log.info("person %s let us in again on %s", participant_id, channel)
    return True


def _log_point(
    session: Session,
    participant_id: int,
    kind: Consent,
    channel: str,
    detail: str | None,
    now: datetime,
) -> None:
    _INSERT_CONSENT.run(
        connection_of(session),
        {
            "participant_id": participant_id,
            "kind": kind,
            "how": channel,
            "detail": detail,
            "at": now,
        },
    )


def blocked_by_recipient(
    database: Database, participant_id: int, channel: str, address: str, reason: str
) -> None:
    """A send (or its status callback) found that the person blocked us on this channel (a
    blocked Telegram bot's 403, WhatsApp's 63014): `stop_point`, in its own unit of work that
    takes the person's lock first."""
    with database.session() as session:
        if lock_person(session, participant_id) is not None:
            stop_point(session, participant_id, channel, address, reason)


def blocked_at_provider(database: Database, change: Blocked) -> bool:
    """The provider says at once that the person at this address blocked us there (Telegram's
    `my_chat_member` "kicked"), or let us in again ("member"). Blocked: exactly what our next
    send would have found out (a blocked bot's 403), without that wasted send: that contact
    point is stopped (`stop_point`); the person is not, and their texts and calls go on. Let
    in again: the contact point is usable once more (`let_in_point`). Retried deliveries
    change nothing twice. False for an address nobody holds. Its own unit of work, the
    person's lock first."""
    with database.session() as session:
        point = contacts.holder(session, change.channel, change.address)
        person = lock_person(session, point.participant_id) if point is not None else None
        if person is None:
            return False
        if change.blocked:
            stop_point(session, person.id, change.channel, change.address, change.reason)
        else:
            let_in_point(session, person.id, change.channel, change.address, change.reason)
        return True


def unreachable(
    database: Database, participant_id: int, channel: str, address: str, reason: str
) -> None:
    """The provider says this address can never be reached on this channel (an invalid
    number, a landline for texts, a chat that is gone): its contact point is marked so, and
    campaigns use their next one. Its own unit of work, the person's lock first."""
    with database.session() as session:
        if lock_person(session, participant_id) is not None:
            contacts.mark(session, participant_id, channel, address, unreachable=reason)


def cancel_pending(
    session: Session,
    participant_id: int,
    reason: str,
    channel: str | None = None,
    address: str | None = None,
    *,
    conversation_id: int | None = None,
    campaign_id: int | None = None,
    kinds: Collection[str] | None = None,
    now: datetime | None = None,
) -> None:
    """Outbound rows not yet handed to a provider will not go: all of the person's, or only
    those to one contact point (`channel` and `address`), of one conversation, of one
    campaign, of these kinds. The caller holds their lock."""
    where = [
        Message.participant_id == participant_id,
        Message.direction == Direction.OUT,
        Message.status == Outbound.PENDING,
    ]
    if channel is not None and address is not None:
        where += [Message.channel == channel, Message.address == address]
    if conversation_id is not None:
        where.append(Message.conversation_id == conversation_id)
    if campaign_id is not None:
        where.append(Message.campaign_id == campaign_id)
    if kinds is not None:
        where.append(Message.kind.in_(list(kinds)))
    session.execute(
        update(Message)
        .where(*where)
        .values(status=Outbound.CANCELLED, error_message=reason, updated_at=now or utcnow())
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
        # A literal, as the partial index `uq_conversations_one_active` says it: a bound value
        # there made SQLite prepare the statement again on every run (it re-plans whenever a
        # value a partial index depends on is bound), and PostgreSQL's generic plan passes it by.
        _conversations.c.status == literal_column(f"'{engine.ACTIVE}'"),
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
    found = ACTIVE_LOCKED.first(connection_of(session), {"participant_id": person.id})
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
    _UPDATE_CONVERSATION.run(connection_of(session), {"conversation_id": conv.id, **changes})
    if isinstance(conv, Conversation):
        for key, value in changes.items():
            set_committed_value(conv, key, value)


_CONVERSATION_LOCKED = Prepared(
    select(_conversations.c.id, _conversations.c.state)
    .where(
        _conversations.c.id == bindparam("conversation_id"),
        _conversations.c.status == engine.ACTIVE,
    )
    .with_for_update()
)


def not_shown(session: Session, conversation_id: int, invitation: bool) -> None:
    """A message of this conversation reaches the person as something else in its place (a
    sender said so, before or after handing it over): the question waiting has not been
    shown, nor, for an invitation, the survey's opening (`engine.not_shown`). Their next
    reply is then taken as "carry on", not as its answer. The caller holds the person's lock;
    a conversation that has ended is left alone."""
    conv = _CONVERSATION_LOCKED.first(connection_of(session), {"conversation_id": conversation_id})
    if conv is None:
        return
    state = engine.State.from_json(conv.state)
    marked = engine.not_shown(state, invitation)
    if marked != state:
        _update_conversation(session, conv, {"state": marked.to_json()})


def context_for(person: Any, org: str, contact: str | None = None) -> dict[str, Any]:
    """What the engine's own sentences need: `contact` is CONTACT_PHONE, said in HELP and STOP."""
    return {"name": person.name, "org": org, "language": person.language, "contact": contact}


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


def _status_of(conv: Any) -> str:
    """A conversation's status: a row read by `ACTIVE_LOCKED` (a named tuple without the
    column) is active. Its fields are asked first: `getattr` with a default built (and
    dropped) an AttributeError for every such row."""
    if isinstance(conv, tuple):
        return conv.status if "status" in conv._fields else engine.ACTIVE
    return getattr(conv, "status", engine.ACTIVE)


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
        "last_activity_at": now,
        "channel": channel,
    }
    # Set only when it changes: SQLite rewrites the entries of every index on `status` (two
    # here) whenever an UPDATE sets it, even to the value it holds. A row read by
    # `ACTIVE_LOCKED` is active.
    if step.state.status != _status_of(conv):
        changes["status"] = step.state.status
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
            connection_of(session),
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
