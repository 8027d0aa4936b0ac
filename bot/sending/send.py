"""Sending the outbox, and the reconciler. The rq jobs that run these are in
`bot.commands.jobs`; everything here takes the database, Redis and settings as arguments, and
may run twice without doing anything twice.

`send_batch` claims each outbox row (pending -> claimed) just before its provider call, so two
runs of one job send once, and a worker that dies mid-batch leaves claimed only the rows that
were in flight or just handed over. `reconcile` settles those by asking the provider whether
each went, re-enqueues what Redis lost and retries inbound messages whose handling failed; the
worker runs it every minute whatever else it is doing (`bot.commands.worker`), with the
campaigns' upkeep (`bot.cycle.upkeep`).
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from bot import channels, conversations, engine
from bot.channels import Handed, Outgoing, Sender
from bot.config import Settings
from bot.conversations import inbox, outbox
from bot.logmask import mask_phones
from bot.providers.errors import SendError, TemporaryError
from bot.sending import delivery, pacing
from bot.storage.db import Database
from bot.storage.models import (
    Campaign,
    ConsentEvent,
    ContactPoint,
    Conversation,
    Message,
    Participant,
    utcnow,
)
from bot.storage.status import Consent, Direction, Kind, Outbound

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
# Longer than a claimed row can take to be handed over: it is claimed just before the provider
# call, whose HTTP timeout is 15 s, and recorded within a group of RECORD_EVERY.
CLAIM_TIMEOUT = timedelta(seconds=90)
STALE_PENDING = timedelta(seconds=60)
MAX_PACING_WAIT = 20.0  # seconds a job may wait for its rate slot before handing back
RECORD_EVERY = 25  # results written per transaction while a batch is sent
SEND_THREADS = 4  # provider calls in flight at once within one job
RECONCILE_BATCH = 2000


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    base = min(30 * 2 ** max(attempts - 1, 0), 3600)
    return timedelta(seconds=max(base * random.uniform(0.8, 1.2), retry_after or 0))


# --- sending ------------------------------------------------------------------------------


@dataclass
class _Planned:
    id: int
    channel: str
    address: str
    body: str
    kind: str
    attempts: int
    outgoing: Outgoing | None = None  # as the sender gets it; None: the row's own fields
    participant_id: int | None = None
    conversation_id: int | None = None
    # Claimed as going in something else's place (`_goes_in_place`), its conversation marked.
    marked_unseen: bool = False

    def as_outgoing(self) -> Outgoing:
        return self.outgoing or Outgoing(self.id, self.address, self.body, self.kind)


# What a sender may choose a message's form by, read with the row (`Outgoing`): when the
# person last wrote from this address, the survey the message belongs to (by its campaign, or
# its conversation), and their name.
_LAST_INBOUND = (
    select(ContactPoint.last_inbound_at)
    .where(
        ContactPoint.channel == Message.channel,
        ContactPoint.address == Message.address,
        ContactPoint.participant_id == Message.participant_id,
    )
    .correlate(Message)
    .scalar_subquery()
)
_SURVEY_VERSION = func.coalesce(Campaign.survey_version_id, Conversation.survey_version_id)


def _with_details(query: Select[Any]) -> Select[Any]:
    return (
        query.add_columns(Participant.name, _LAST_INBOUND, _SURVEY_VERSION)
        .outerjoin(Campaign, Campaign.id == Message.campaign_id)
        .outerjoin(Conversation, Conversation.id == Message.conversation_id)
    )


def _outgoing(
    session: Session,
    settings: Settings,
    message: Message,
    name: str | None,
    last_inbound_at: datetime | None,
    version_id: int | None,
) -> Outgoing:
    survey = conversations.survey_for(session, version_id) if version_id is not None else None
    return Outgoing(
        message.id,
        message.address or "",
        message.body or "",
        message.kind,
        last_inbound_at=last_inbound_at,
        options=survey.channel_options.get(message.channel, {}) if survey else {},
        variables={
            "name": engine.first_name(name),
            "org": settings.org_name,
            "survey": survey.title if survey else "",
        },
    )


def send_batch(
    database: Database, redis: Redis, settings: Settings, message_ids: list[int]
) -> dict[int, str]:
    """Send outbox rows over pooled provider connections, paced by SEND_RATE per sender."""
    now = utcnow()
    outcome: dict[int, str] = {}
    held: dict[datetime, list[int]] = {}
    ready: list[_Planned] = []
    with database.session() as session:
        rows = session.execute(
            _with_details(
                select(Message, Participant.opted_out, Participant.erased_at).outerjoin(
                    Participant, Participant.id == Message.participant_id
                )
            )
            .where(Message.id.in_(message_ids))
            .order_by(Message.id)
        ).all()
        for message, opted_out, erased_at, name, last_inbound_at, version_id in rows:
            if message.direction != Direction.OUT:
                continue
            if message.status != Outbound.PENDING:
                outcome[message.id] = f"already {message.status}"
                continue
            if (
                message.participant_id is None
                or erased_at is not None
                or (opted_out and not _answers_since_stop(session, message))
            ):
                message.status = Outbound.CANCELLED
                message.error_message = "the person opted out or was erased"
                outcome[message.id] = "cancelled"
                continue
            due = max(message.send_after or now, now)
            if message.kind in pacing.NEW_CONTACT:
                due = pacing.next_allowed(due, settings.quiet_hours, settings.timezone)
            if due > now + timedelta(seconds=1):
                message.send_after = due
                held.setdefault(due, []).append(message.id)
                outcome[message.id] = f"held until {due.isoformat()}"
                continue
            if not message.address:
                message.status = Outbound.FAILED
                message.error_message = f"no {message.channel} address for this person"
                outcome[message.id] = "failed: no address"
                continue
            ready.append(
                _Planned(
                    message.id,
                    message.channel,
                    message.address,
                    message.body or "",
                    message.kind,
                    message.attempts,
                    _outgoing(session, settings, message, name, last_inbound_at, version_id),
                    message.participant_id,
                    message.conversation_id,
                )
            )
    if held:
        outbox.dispatch_many(redis, [(ids, due) for due, ids in held.items()])
    if ready:
        outcome.update(_send_paced(database, redis, settings, ready))
    return outcome


def _answers_since_stop(session: Session, message: Message) -> bool:
    """A reply written after the person's STOP answers what they sent since (the STOP's own
    confirmation, "send START to hear from us again"): on a channel that replies through the
    outbox it must still go. Anything written before the STOP does not."""
    if message.kind != Kind.REPLY:
        return False
    stopped_at = session.scalar(
        select(func.max(ConsentEvent.at)).where(
            ConsentEvent.participant_id == message.participant_id,
            ConsentEvent.kind == Consent.OPT_OUT,
        )
    )
    return stopped_at is not None and message.created_at >= stopped_at


def _sender(settings: Settings, channel: str) -> Sender:
    return channels.get(channel).sender(settings)


def _send_paced(
    database: Database, redis: Redis, settings: Settings, ready: list[_Planned]
) -> dict[int, str]:
    """Hand rows over a few at a time in parallel (the provider call is mostly waiting on the
    network), each at the moment its rate slot begins."""
    outcome: dict[int, str] = {}
    limiter = pacing.RateLimiter(redis, settings.send_rate)
    interval = 1.0 / settings.send_rate
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=SEND_THREADS) as pool:
        for first in range(0, len(ready), RECORD_EVERY):
            group = ready[first : first + RECORD_EVERY]
            planned: list[tuple[_Planned, float | SendError]] = []
            by_sender: dict[str, list[_Planned]] = {}
            for message in group:
                try:
                    key = _sender(settings, message.channel).sender_key
                except SendError as exc:
                    planned.append((message, exc))
                    continue
                by_sender.setdefault(key, []).append(message)
            later: list[int] = []
            resume_at: datetime | None = None
            for key, messages in by_sender.items():
                wait, granted = limiter.reserve(key, count=len(messages), within=MAX_PACING_WAIT)
                offset = time.monotonic() - start
                planned += [
                    (m, offset + wait + i * interval) for i, m in enumerate(messages[:granted])
                ]
                if granted < len(messages):
                    # The queue ahead is long: the rest wait in the scheduler, not in this job.
                    later += [m.id for m in messages[granted:]]
                    at = utcnow() + timedelta(seconds=wait + granted * interval)
                    resume_at = at if resume_at is None else max(resume_at, at)
            results = _run(database, settings, pool, planned, start)
            outcome.update(_record(database, redis, results))
            if later:
                rest = later + [m.id for m in ready[first + RECORD_EVERY :]]
                outcome.update(_hand_back(database, redis, rest, resume_at or utcnow()))
                return outcome
    return outcome


def _goes_in_place(settings: Settings, message: _Planned) -> bool:
    """Will this message of a conversation, handed over now, reach the person as something
    else in its body's place (an approved template outside a provider's reply window), so
    that the question it carries is not shown? Its channel says (`Channel.replaces_body`)."""
    if message.conversation_id is None or message.participant_id is None:
        return False
    channel = channels.get(message.channel)
    return channel.replaces_body(message.as_outgoing(), settings, utcnow())


def _claim(database: Database, message_id: int, in_place: _Planned | None = None) -> bool:
    """pending -> claimed, just before the provider call; False if another run has it.

    A message that will go in something else's place (`in_place`, `_goes_in_place`) is
    claimed holding the person's lock (the first lock, as every writer of theirs takes it),
    and their conversation is marked "not shown" in the same transaction: so a reply that
    comes while it is being handed over, before its result is written, already meets the
    mark and is not taken as the answer to a question they never saw."""
    with database.session() as session:
        if in_place is not None:
            assert in_place.participant_id is not None and in_place.conversation_id is not None
            conversations.lock_person(session, in_place.participant_id)
        claimed = session.execute(
            update(Message.__table__)
            .where(
                Message.__table__.c.id == message_id, Message.__table__.c.status == Outbound.PENDING
            )
            .values(
                status=Outbound.CLAIMED,
                claimed_at=utcnow(),
                attempts=Message.__table__.c.attempts + 1,
            )
        ).rowcount
        if claimed == 1 and in_place is not None:
            assert in_place.conversation_id is not None
            invitation = in_place.kind == Kind.INVITATION
            conversations.not_shown(session, in_place.conversation_id, invitation)
    return claimed == 1


_NOT_CLAIMED = "not claimed"


def _run(
    database: Database,
    settings: Settings,
    pool: ThreadPoolExecutor,
    planned: list[tuple[_Planned, float | SendError]],
    start: float,
) -> list[tuple[_Planned, Handed | SendError | str]]:
    def send(message: _Planned, at: float | SendError) -> Handed | SendError | str:
        if isinstance(at, SendError):
            return at
        delay = start + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        in_place = _goes_in_place(settings, message)
        if not _claim(database, message.id, message if in_place else None):
            return _NOT_CLAIMED
        message.marked_unseen = in_place
        try:
            return _sender(settings, message.channel).send(message.as_outgoing())
        except SendError as exc:
            return exc

    futures = [(message, pool.submit(send, message, at)) for message, at in planned]
    return [(message, future.result()) for message, future in futures]


def _record(
    database: Database, redis: Redis, results: list[tuple[_Planned, Handed | SendError | str]]
) -> dict[int, str]:
    """Write what happened to each claimed row, in one transaction."""
    results = [(m, r) for m, r in results if r is not _NOT_CLAIMED]
    if not results:
        return {}
    outcome: dict[int, str] = {}
    retries: list[tuple[int, datetime]] = []
    about: list[tuple[int, str, str, SendError]] = []
    unseen_after_all: list[tuple[_Planned, datetime]] = []
    now = utcnow()
    with database.session() as session:
        rows = {
            m.id: m
            for m in session.scalars(
                select(Message).where(Message.id.in_([c.id for c, _ in results])).with_for_update()
            )
        }
        for planned, result in results:
            message = rows[planned.id]
            attempts = message.attempts
            if isinstance(result, Handed):
                if result.replaced and not planned.marked_unseen and planned.conversation_id:
                    unseen_after_all.append((planned, message.claimed_at or now))
                message.provider_id = message.provider_id or result.sid
                message.sent_at = now
                if message.status == Outbound.CLAIMED:
                    message.status = Outbound.PENDING  # so that advance() may move it on
                    delivery.advance(message, delivery.TWILIO_STATUS.get(result.status, "queued"))
                outcome[planned.id] = f"handed over as {result.sid}"
            elif isinstance(result, TemporaryError) and attempts < MAX_ATTEMPTS:
                when = now + backoff(attempts, result.retry_after)
                if message.status in (Outbound.CLAIMED, Outbound.PENDING):
                    message.status, message.send_after = Outbound.PENDING, when
                message.error_message, message.error_code = str(result), result.code
                retries.append((planned.id, when))
                outcome[planned.id] = mask_phones(f"retry at {when.isoformat()}: {result}")
            else:
                assert isinstance(result, SendError)
                note = (
                    f"gave up after {attempts} attempts: "
                    if isinstance(result, TemporaryError)
                    else ""
                )
                message.status = Outbound.FAILED
                message.error_code, message.error_message = result.code, f"{note}{result}"
                if message.participant_id and message.address:
                    about.append((message.participant_id, message.channel, message.address, result))
                log.warning("message %s failed: %s", planned.id, result.code or "no code")
                outcome[planned.id] = mask_phones(f"failed: {result}")
    # After the rows' transaction, each in its own with the person's lock first.
    for participant_id, channel, address, error in about:
        delivery.about_the_address(database, participant_id, channel, address, error)
    for planned, claimed_at in unseen_after_all:
        _not_shown_after_all(database, planned, claimed_at)
    if retries:
        outbox.dispatch_many(redis, [([mid], when) for mid, when in retries])
    return outcome


def _not_shown_after_all(database: Database, planned: _Planned, claimed_at: datetime) -> None:
    """The sender says a message went in something else's place though it was not expected to
    (the provider judged its reply window closed after all): its conversation is marked now, in
    its own unit of work with the person's lock first, unless they have written since it was
    claimed. What they wrote then was handled as it came (a reply faster than a provider's
    refusal and our second try: the one gap left), and the mark would now wrongly hold back
    the answer to a question shown since."""
    assert planned.participant_id is not None and planned.conversation_id is not None
    with database.session() as session:
        if conversations.lock_person(session, planned.participant_id) is None:
            return
        wrote_since = session.scalar(
            select(Message.id)
            .where(
                Message.conversation_id == planned.conversation_id,
                Message.direction == Direction.IN,
                Message.created_at >= claimed_at,
            )
            .limit(1)
        )
        if wrote_since is None:
            invitation = planned.kind == Kind.INVITATION
            conversations.not_shown(session, planned.conversation_id, invitation)


def _hand_back(
    database: Database, redis: Redis, message_ids: list[int], when: datetime
) -> dict[int, str]:
    with database.session() as session:
        session.execute(
            update(Message)
            .where(Message.id.in_(message_ids), Message.status == Outbound.PENDING)
            .values(send_after=when)
        )
    outbox.dispatch_many(redis, [(message_ids, when)])
    return dict.fromkeys(message_ids, f"waiting for a send slot until {when.isoformat()}")


# --- the reconciler -----------------------------------------------------------------------


def reconcile(
    database: Database, redis: Redis, settings: Settings, now: datetime | None = None
) -> dict[str, int]:
    """Re-enqueue what Redis may have lost, settle rows whose worker died mid-send, and retry
    inbound messages whose handling failed."""
    now = now or utcnow()
    with database.session() as session:
        due = session.scalars(
            select(Message.id)
            .where(
                Message.direction == Direction.OUT,
                Message.status == Outbound.PENDING,
                (Message.send_after.is_(None)) | (Message.send_after <= now),
                Message.updated_at <= now - STALE_PENDING,
            )
            .order_by(Message.id)
            .limit(RECONCILE_BATCH)
        ).all()
        stuck = session.scalars(
            select(Message)
            .where(
                Message.direction == Direction.OUT,
                Message.status == Outbound.CLAIMED,
                Message.claimed_at <= now - CLAIM_TIMEOUT,
            )
            .order_by(Message.id)
            .limit(RECONCILE_BATCH)
        ).all()
        # Touch what we re-enqueue, so the next run does not enqueue it again straight away.
        if due:
            session.execute(update(Message).where(Message.id.in_(due)).values(updated_at=now))
        retries = inbox.due_retries(session, now)
    settled = resent = 0
    for message in stuck:
        result = _settle(database, redis, settings, message, now)
        settled += result == "settled"
        resent += result == "resend"
    outbox.dispatch(redis, [(message_id, None) for message_id in due])
    for message_id in retries:
        outbox.queue(redis).enqueue(inbox.RETRY_JOB, message_id, job_timeout=300, result_ttl=0)
    return {
        "requeued": len(due),
        "settled": settled,
        "resent": resent,
        "inbound_retried": len(retries),
    }


def _settle(
    database: Database, redis: Redis, settings: Settings, message: Message, now: datetime
) -> str:
    with database.session() as session:
        read = session.execute(
            _with_details(
                select(Message).outerjoin(Participant, Participant.id == Message.participant_id)
            ).where(Message.id == message.id)
        ).one()
        outgoing = _outgoing(session, settings, *read)
    try:
        found = _sender(settings, message.channel).find(outgoing, message.claimed_at or now)
    except SendError as exc:
        log.warning(
            "could not settle message %s yet: %s", message.id, exc.code or type(exc).__name__
        )
        return "unknown"
    with database.session() as session:
        row = session.get(Message, message.id, with_for_update=True)
        if row.status != Outbound.CLAIMED:
            return "moved on"
        if found is not None:
            row.provider_id = row.provider_id or found.sid
            row.sent_at = row.sent_at or row.claimed_at
            row.status = Outbound.PENDING
            delivery.advance(row, delivery.TWILIO_STATUS.get(found.status, "queued"))
            return "settled"
        row.status, row.updated_at = Outbound.PENDING, now
    outbox.dispatch(redis, [(message.id, None)])
    return "resend"
