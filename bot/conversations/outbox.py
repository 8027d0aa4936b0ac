"""The outbox: every outbound message is a row first, then an rq job carrying its id.

`add` (one row) and `add_many` (a campaign's invitations, in one statement) write rows made by
one function, `outgoing`, inside the caller's unit of work and queue them for after the commit;
the unit of work (`bot.storage.db.Database.session`) then calls `dispatch`, so a job never runs before its
row exists and no caller enqueues by hand. If Redis loses the job, the reconciler finds the row
still pending and enqueues it again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from redis import Redis
from rq import Queue
from sqlalchemy import insert
from sqlalchemy.orm import Session

from bot.storage import contacts
from bot.storage.db import queue_after_commit
from bot.storage.models import Message, Participant, utcnow
from bot.storage.status import Direction, Outbound

QUEUE = "involve"
SEND_JOB = "bot.commands.jobs.send_messages"  # the rq job that sends a batch of rows


def outgoing(
    person: Participant,
    channel: str,
    body: str,
    kind: str,
    *,
    campaign_id: int | None = None,
    conversation_id: int | None = None,
    send_after: datetime | None = None,
    now: datetime | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """An outbound row, pending: the one shape every message we send starts as. It goes to
    `address` (where they just wrote from), else to the person's first usable contact point
    on the channel (`bot.storage.contacts`); with none, the row is still written and the
    sender fails it, saying so."""
    now = now or utcnow()
    if address is None and isinstance(person, Participant):
        address = contacts.first_usable(person.contact_points, channel)
    return {
        "participant_id": person.id,
        "conversation_id": conversation_id,
        "campaign_id": campaign_id,
        "in_reply_to_id": None,
        "direction": Direction.OUT,
        "channel": channel,
        "kind": kind,
        "address": address,
        "body": body,
        "provider_id": None,
        "status": Outbound.PENDING,
        "error_code": None,
        "error_message": None,
        "attempts": 0,
        "send_after": send_after,
        "claimed_at": None,
        "sent_at": None,
        "created_at": now,
        "updated_at": now,
    }


def add(
    session: Session,
    person: Any,
    channel: str,
    body: str,
    kind: str,
    *,
    campaign_id: int | None = None,
    conversation_id: int | None = None,
    send_after: datetime | None = None,
    address: str | None = None,
) -> Message:
    """One message to send, as an ORM row (its caller may change it before the commit).
    `person` is a `Participant` or the writer's locked row (then their address is one read)."""
    message = Message(
        **outgoing(
            person,
            channel,
            body,
            kind,
            campaign_id=campaign_id,
            conversation_id=conversation_id,
            send_after=send_after,
            address=address or contacts.address_for(session, person, channel),
        )
    )
    session.add(message)
    session.flush()
    queue_after_commit(session, [(message.id, send_after)])
    return message


def add_many(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Many messages to send (rows made by `outgoing`), in one statement: their ids, in order."""
    if not rows:
        return []
    ids = session.scalars(
        insert(Message.__table__).returning(Message.__table__.c.id, sort_by_parameter_order=True),
        rows,
    ).all()
    queue_after_commit(session, [(i, row["send_after"]) for i, row in zip(ids, rows, strict=True)])
    return list(ids)


def queue(redis: Redis) -> Queue:
    return Queue(QUEUE, connection=redis)


BATCH = 500  # messages a send job carries: one provider connection, one claim, few commits


def dispatch(redis: Redis, messages: Iterable[tuple[int, datetime | None]]) -> None:
    """Enqueue send jobs for (message id, send_after) pairs; future ones wait in rq's scheduler."""
    groups: dict[datetime | None, list[int]] = {}
    for message_id, send_after in messages:
        groups.setdefault(send_after, []).append(message_id)
    dispatch_many(redis, [(ids, when) for when, ids in groups.items()])


def dispatch_many(redis: Redis, groups: Iterable[tuple[list[int], datetime | None]]) -> None:
    q = queue(redis)
    now = utcnow()
    jobs = []
    for ids, when in groups:
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            # Long enough to pace a whole batch at a slow SEND_RATE.
            timeout = 120 + 30 * len(chunk)
            # result_ttl=0: rq would keep what a send returns (provider errors quoting the
            # number) in Redis for an hour, beyond the reach of erasure; the row says it all.
            if when is not None and when > now:
                q.enqueue_at(when, SEND_JOB, chunk, job_timeout=timeout, result_ttl=0)
            else:
                jobs.append(Queue.prepare_data(SEND_JOB, (chunk,), timeout=timeout, result_ttl=0))
    if jobs:
        q.enqueue_many(jobs)
