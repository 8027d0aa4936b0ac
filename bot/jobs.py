"""rq jobs. Each takes ids, never objects, and may run twice without doing anything twice.

`send_message` claims its outbox row (pending -> claimed) before calling the provider, so two
runs of the same job send once. A worker that dies between the claim and recording the result
leaves the row claimed; `reconcile_outbox` settles it by asking the provider whether it went.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timedelta

from sqlalchemy import select, update

from bot import conversations, delivery, outbox, pacing, runtime
from bot.errors import ChannelOff, PermanentError, RecipientOptedOut, SendError, TemporaryError
from bot.models import Message, Participant, utcnow
from bot.providers.twilio import Handed, TwilioSender

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
CLAIM_TIMEOUT = timedelta(minutes=3)  # longer than any send can take (the HTTP timeout is 15 s)
STALE_PENDING = timedelta(seconds=60)
MAX_PACING_WAIT = 20.0  # seconds a job may wait for its rate slot before handing back
RECONCILE_BATCH = 2000

_senders: dict[str, TwilioSender] = {}


def sender_for(channel: str) -> TwilioSender:
    settings = runtime.settings()
    if channel not in ("sms",):
        raise ChannelOff(f"sending by {channel} is not available yet")
    if channel not in _senders or _senders[channel].settings is not settings:
        _senders[channel] = TwilioSender(settings)
    return _senders[channel]


def _hand_over(sender: TwilioSender, message: Message) -> Handed:
    if not message.address:
        raise PermanentError(f"no {message.channel} address for this person")
    return sender.send_sms(message.address, message.body or "", message.id)


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    base = min(30 * 2 ** max(attempts - 1, 0), 3600)
    return timedelta(seconds=max(base * random.uniform(0.8, 1.2), retry_after or 0))


def send_message(message_id: int) -> str:
    settings, database = runtime.settings(), runtime.database()
    now = utcnow()
    later: datetime | None = None
    with database.session() as session:
        message = session.get(Message, message_id, with_for_update=True)
        if message is None or message.direction != "out":
            return "no such outbound message"
        if message.status != "pending":
            return f"already {message.status}"
        person = (
            session.get(Participant, message.participant_id) if message.participant_id else None
        )
        if person is None or person.opted_out or person.erased_at is not None:
            message.status, message.error_message = (
                "cancelled",
                "the person opted out or was erased",
            )
            return "cancelled"
        due = max(message.send_after or now, now)
        if message.kind in pacing.NEW_CONTACT:
            due = pacing.next_allowed(due, settings.quiet_hours, settings.timezone)
        if due > now + timedelta(seconds=1):
            message.send_after = later = due
        else:
            message.status, message.claimed_at = "claimed", now
            message.attempts += 1
    if later is not None:
        outbox.dispatch(runtime.redis(), [(message_id, later)])
        return f"held until {later.isoformat()}"

    try:
        sender = sender_for(message.channel)
        wait = pacing.RateLimiter(runtime.redis(), settings.send_rate).reserve(sender.sender_key)
        if wait > MAX_PACING_WAIT:
            return _retry_later(
                message_id, now + timedelta(seconds=wait), "waiting for a send slot", count=False
            )
        time.sleep(wait)
        handed = _hand_over(sender, message)
    except RecipientOptedOut as exc:
        return _failed(message_id, exc, opted_out=True)
    except PermanentError as exc:
        return _failed(message_id, exc)
    except TemporaryError as exc:
        if message.attempts >= MAX_ATTEMPTS:
            return _failed(message_id, exc, note=f"gave up after {message.attempts} attempts: ")
        return _retry_later(
            message_id,
            utcnow() + backoff(message.attempts, exc.retry_after),
            str(exc),
            code=exc.code,
        )
    return _record_handed(message_id, handed)


def _record_handed(message_id: int, handed: Handed) -> str:
    with runtime.database().session() as session:
        message = session.get(Message, message_id, with_for_update=True)
        message.provider_id = message.provider_id or handed.sid
        message.sent_at = utcnow()
        if message.status == "claimed":
            message.status = "pending"  # so that advance() may move it on from here
            delivery.advance(message, delivery.TWILIO_STATUS.get(handed.status, "queued"))
    return f"handed over as {handed.sid}"


def _retry_later(
    message_id: int, when: datetime, reason: str, code: str | None = None, count: bool = True
) -> str:
    with runtime.database().session() as session:
        message = session.get(Message, message_id, with_for_update=True)
        if message.status != "claimed":
            return f"already {message.status}"
        message.status, message.send_after = "pending", when
        message.error_message, message.error_code = reason, code
        if not count:
            message.attempts = max(message.attempts - 1, 0)
    outbox.dispatch(runtime.redis(), [(message_id, when)])
    return f"retry at {when.isoformat()}: {reason}"


def _failed(message_id: int, exc: SendError, opted_out: bool = False, note: str = "") -> str:
    with runtime.database().session() as session:
        message = session.get(Message, message_id, with_for_update=True)
        message.status = "failed"
        message.error_code, message.error_message = exc.code, f"{note}{exc}"
        message.updated_at = utcnow()
        if opted_out and message.participant_id:
            person = session.get(Participant, message.participant_id)
            conversations.record_consent(session, person, "opt_out", "carrier", detail=str(exc))
    log.warning("message %s failed: %s", message_id, exc)
    return f"failed: {exc}"


def reconcile_outbox(now: datetime | None = None) -> dict[str, int]:
    """Re-enqueue pending rows Redis may have lost, and settle rows whose worker died mid-send."""
    now = now or utcnow()
    database, redis = runtime.database(), runtime.redis()
    with database.session() as session:
        due = (
            session.execute(
                select(Message.id)
                .where(
                    Message.direction == "out",
                    Message.status == "pending",
                    (Message.send_after.is_(None)) | (Message.send_after <= now),
                    Message.updated_at <= now - STALE_PENDING,
                )
                .order_by(Message.id)
                .limit(RECONCILE_BATCH)
            )
            .scalars()
            .all()
        )
        stuck = session.scalars(
            select(Message)
            .where(
                Message.direction == "out",
                Message.status == "claimed",
                Message.claimed_at <= now - CLAIM_TIMEOUT,
            )
            .order_by(Message.id)
            .limit(RECONCILE_BATCH)
        ).all()
        # Touch what we re-enqueue, so the next run does not enqueue it again straight away.
        if due:
            session.execute(update(Message).where(Message.id.in_(due)).values(updated_at=now))
    settled = resent = 0
    for message in stuck:
        outcome = _settle(message, now)
        settled += outcome == "settled"
        resent += outcome == "resend"
    outbox.dispatch(redis, [(message_id, None) for message_id in due])
    return {"requeued": len(due), "settled": settled, "resent": resent}


def _settle(message: Message, now: datetime) -> str:
    try:
        sender = sender_for(message.channel)
        found = sender.find_sms(
            message.address or "", message.body or "", message.claimed_at or now
        )
    except SendError as exc:
        log.warning("could not settle message %s yet: %s", message.id, exc)
        return "unknown"
    with runtime.database().session() as session:
        row = session.get(Message, message.id, with_for_update=True)
        if row.status != "claimed":
            return "moved on"
        if found is not None:
            row.provider_id = row.provider_id or found.sid
            row.sent_at = row.sent_at or row.claimed_at
            row.status = "pending"
            delivery.advance(row, delivery.TWILIO_STATUS.get(found.status, "queued"))
            return "settled"
        row.status, row.updated_at = "pending", now
    outbox.dispatch(runtime.redis(), [(message.id, None)])
    return "resend"
