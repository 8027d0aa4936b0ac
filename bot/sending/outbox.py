"""The outbox: every outbound message is a row first, then an rq job carrying its id.

`add` writes the row inside the caller's unit of work and queues it for after the commit; the
unit of work (`bot.storage.db.Database.session`) then calls `dispatch`, so a job never runs before its
row exists and no caller enqueues by hand. If Redis loses the job, the reconciler finds the row
still pending and enqueues it again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from redis import Redis
from rq import Queue
from sqlalchemy.orm import Session

from bot import channels
from bot.storage.db import queue_after_commit
from bot.storage.models import Message, Participant, utcnow

QUEUE = "involve"


def address_for(person: Participant, channel: str) -> str | None:
    return channels.get(channel).address_of(person)


def add(
    session: Session,
    person: Participant,
    channel: str,
    body: str,
    kind: str,
    *,
    campaign_id: int | None = None,
    conversation_id: int | None = None,
    send_after: datetime | None = None,
) -> Message:
    message = Message(
        participant_id=person.id,
        conversation_id=conversation_id,
        campaign_id=campaign_id,
        direction="out",
        channel=channel,
        kind=kind,
        address=address_for(person, channel),
        body=body,
        status="pending",
        send_after=send_after,
        attempts=0,
        created_at=utcnow(),
    )
    session.add(message)
    session.flush()
    queue_after_commit(session, [(message.id, send_after)])
    return message


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
    from rq import Queue as RqQueue

    from bot.sending.jobs import send_messages

    q: RqQueue = queue(redis)
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
                q.enqueue_at(when, send_messages, chunk, job_timeout=timeout, result_ttl=0)
            else:
                jobs.append(
                    RqQueue.prepare_data(send_messages, (chunk,), timeout=timeout, result_ttl=0)
                )
    if jobs:
        q.enqueue_many(jobs)
