"""The outbox: every outbound message is a row first, then an rq job carrying its id.

`add` writes the row inside the caller's unit of work; `dispatch` enqueues the jobs after that
work has committed (a job must never run before its row exists). If Redis loses the job, the
reconciler finds the row still pending and enqueues it again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from redis import Redis
from rq import Queue
from sqlalchemy.orm import Session

from bot.models import Message, Participant, utcnow

QUEUE = "involve"


def address_for(person: Participant, channel: str) -> str | None:
    if channel in ("sms", "voice"):
        return person.phone
    if channel == "telegram":
        return str(person.telegram_chat_id) if person.telegram_chat_id is not None else None
    return None


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
    return message


def queue(redis: Redis) -> Queue:
    return Queue(QUEUE, connection=redis)


def dispatch(redis: Redis, messages: Iterable[tuple[int, datetime | None]]) -> None:
    """Enqueue a send job for each (message id, send_after); future ones wait in rq's scheduler."""
    from bot.jobs import send_message

    q = queue(redis)
    now = utcnow()
    for message_id, send_after in messages:
        if send_after is not None and send_after > now:
            q.enqueue_at(send_after, send_message, message_id, job_timeout=120)
        else:
            q.enqueue(send_message, message_id, job_timeout=120)
