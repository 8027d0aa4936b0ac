"""rq jobs. Each takes ids, never objects, and may run twice without doing anything twice.

`send_messages` claims its outbox rows (pending -> claimed) before calling the provider, so two
runs of the same job send once. A worker that dies between the claim and recording the result
leaves the row claimed; `reconcile_outbox` settles it by asking the provider whether it went.
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from bot import conversations, delivery, outbox, pacing, runtime
from bot.errors import ChannelOff, PermanentError, RecipientOptedOut, SendError, TemporaryError
from bot.logmask import mask_phones
from bot.models import Message, Participant, utcnow
from bot.providers.twilio import Handed, TwilioSender

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
CLAIM_TIMEOUT = timedelta(minutes=3)  # longer than any send can take (the HTTP timeout is 15 s)
STALE_PENDING = timedelta(seconds=60)
MAX_PACING_WAIT = 20.0  # seconds a job may wait for its rate slot before handing back
RECORD_EVERY = 25  # results written per transaction while a batch is sent
SEND_THREADS = 4  # provider calls in flight at once within one job
RECONCILE_BATCH = 2000
FANOUT_STALL = timedelta(minutes=10)

_senders: dict[str, TwilioSender] = {}


SENDING_CHANNELS = ("sms",)  # keypad calls and Telegram plug in here when their senders land


def sender_for(channel: str) -> TwilioSender:
    settings = runtime.settings()
    if channel not in SENDING_CHANNELS:
        raise ChannelOff(f"sending by {channel} is not available yet")
    if channel not in _senders or _senders[channel].settings is not settings:
        _senders[channel] = TwilioSender(settings)
    return _senders[channel]


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    base = min(30 * 2 ** max(attempts - 1, 0), 3600)
    return timedelta(seconds=max(base * random.uniform(0.8, 1.2), retry_after or 0))


def send_message(message_id: int) -> str:
    """Send one outbox row; what happened to it, in words."""
    return send_messages([message_id]).get(message_id, "no such outbound message")


@dataclass
class _Claimed:
    id: int
    channel: str
    address: str | None
    body: str | None
    attempts: int


def send_messages(message_ids: list[int]) -> dict[int, str]:
    """Send a batch of outbox rows over one provider connection, paced by SEND_RATE.

    Rows are claimed (pending -> claimed) in one transaction and their results recorded every
    few sends, so a job that runs twice sends nothing twice, and a worker killed mid-batch
    leaves only claimed rows for the reconciler to settle.
    """
    settings, database = runtime.settings(), runtime.database()
    now = utcnow()
    outcome: dict[int, str] = {}
    held: dict[datetime, list[int]] = {}
    claimed: list[_Claimed] = []
    with database.session() as session:
        rows = session.execute(
            select(Message, Participant.opted_out, Participant.erased_at)
            .outerjoin(Participant, Participant.id == Message.participant_id)
            .where(Message.id.in_(message_ids))
            .order_by(Message.id)
            .with_for_update(of=Message)
        ).all()
        for message, opted_out, erased_at in rows:
            if message.direction != "out":
                continue
            if message.status != "pending":
                outcome[message.id] = f"already {message.status}"
                continue
            if message.participant_id is None or opted_out or erased_at is not None:
                message.status, message.error_message = (
                    "cancelled",
                    "the person opted out or was erased",
                )
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
            message.status, message.claimed_at = "claimed", now
            message.attempts += 1
            claimed.append(
                _Claimed(
                    message.id, message.channel, message.address, message.body, message.attempts
                )
            )
    if held:
        outbox.dispatch_many(runtime.redis(), [(ids, due) for due, ids in held.items()])
    if claimed:
        outcome.update(_send_claimed(claimed, settings.send_rate))
    return outcome


def _send_claimed(claimed: list[_Claimed], rate: float) -> dict[int, str]:
    """Hand the claimed rows over, a few at a time in parallel (the provider call is mostly
    waiting on the network), each at the moment its rate slot begins."""
    outcome: dict[int, str] = {}
    limiter = pacing.RateLimiter(runtime.redis(), rate)
    interval = 1.0 / rate
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=SEND_THREADS) as pool:
        for first in range(0, len(claimed), RECORD_EVERY):
            group = claimed[first : first + RECORD_EVERY]
            planned: list[tuple[_Claimed, float | SendError]] = []
            sendable: list[_Claimed] = []
            for message in group:
                try:
                    sender_for(message.channel)
                    sendable.append(message)
                except SendError as exc:
                    planned.append((message, exc))
            by_sender: dict[str, list[_Claimed]] = {}
            for message in sendable:
                by_sender.setdefault(sender_for(message.channel).sender_key, []).append(message)
            later: list[int] = []
            resume_at: datetime | None = None
            for key, messages in by_sender.items():
                wait, granted = limiter.reserve(key, count=len(messages), within=MAX_PACING_WAIT)
                now = time.monotonic() - start
                planned += [
                    (m, now + wait + i * interval) for i, m in enumerate(messages[:granted])
                ]
                if granted < len(messages):
                    # The queue ahead is long: the rest wait in the scheduler, not in this job.
                    later += [m.id for m in messages[granted:]]
                    at = utcnow() + timedelta(seconds=wait + granted * interval)
                    resume_at = at if resume_at is None else max(resume_at, at)
            outcome.update(_record(_run(pool, planned, start)))
            if later:
                rest = later + [m.id for m in claimed[first + RECORD_EVERY :]]
                outcome.update(_hand_back(rest, resume_at or utcnow()))
                return outcome
    return outcome


def _run(
    pool: ThreadPoolExecutor, planned: list[tuple[_Claimed, float | SendError]], start: float
) -> list[tuple[_Claimed, Handed | SendError]]:
    def send(message: _Claimed, at: float | SendError) -> Handed | SendError:
        if isinstance(at, SendError):
            return at
        delay = start + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            if not message.address:
                raise PermanentError(f"no {message.channel} address for this person")
            return sender_for(message.channel).send_sms(
                message.address, message.body or "", message.id
            )
        except SendError as exc:
            return exc

    futures = [(message, pool.submit(send, message, at)) for message, at in planned]
    return [(message, future.result()) for message, future in futures]


def _record(results: list[tuple[_Claimed, Handed | SendError]]) -> dict[int, str]:
    """Write what happened to each claimed row, in one transaction."""
    if not results:
        return {}
    outcome: dict[int, str] = {}
    retries: list[tuple[int, datetime]] = []
    now = utcnow()
    with runtime.database().session() as session:
        rows = {
            m.id: m
            for m in session.scalars(
                select(Message).where(Message.id.in_([c.id for c, _ in results])).with_for_update()
            )
        }
        for claimed, result in results:
            message = rows[claimed.id]
            if isinstance(result, Handed):
                message.provider_id = message.provider_id or result.sid
                message.sent_at = now
                if message.status == "claimed":
                    message.status = "pending"  # so that advance() may move it on from here
                    delivery.advance(message, delivery.TWILIO_STATUS.get(result.status, "queued"))
                outcome[claimed.id] = f"handed over as {result.sid}"
            elif isinstance(result, TemporaryError) and claimed.attempts < MAX_ATTEMPTS:
                when = now + backoff(claimed.attempts, result.retry_after)
                if message.status == "claimed":
                    message.status, message.send_after = "pending", when
                message.error_message, message.error_code = str(result), result.code
                retries.append((claimed.id, when))
                outcome[claimed.id] = mask_phones(f"retry at {when.isoformat()}: {result}")
            else:
                note = (
                    f"gave up after {claimed.attempts} attempts: "
                    if isinstance(result, TemporaryError)
                    else ""
                )
                message.status = "failed"
                message.error_code, message.error_message = result.code, f"{note}{result}"
                if isinstance(result, RecipientOptedOut) and message.participant_id:
                    person = session.get(Participant, message.participant_id)
                    conversations.record_consent(
                        session, person, "opt_out", "carrier", detail=str(result)
                    )
                log.warning("message %s failed: %s", claimed.id, mask_phones(str(result)))
                outcome[claimed.id] = mask_phones(f"failed: {result}")
    if retries:
        outbox.dispatch_many(runtime.redis(), [([mid], when) for mid, when in retries])
    return outcome


def _hand_back(message_ids: list[int], when: datetime) -> dict[int, str]:
    with runtime.database().session() as session:
        for message in session.scalars(
            select(Message).where(Message.id.in_(message_ids)).with_for_update()
        ):
            if message.status == "claimed":
                message.status, message.send_after = "pending", when
                message.attempts = max(message.attempts - 1, 0)
    outbox.dispatch_many(runtime.redis(), [(message_ids, when)])
    return dict.fromkeys(message_ids, f"waiting for a send slot until {when.isoformat()}")


def _record_handed(message_id: int, handed: Handed) -> str:
    with runtime.database().session() as session:
        attempts = session.get(Message, message_id).attempts
    claimed = _Claimed(message_id, "sms", None, None, attempts)
    return _record([(claimed, handed)])[message_id]


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
    return {"requeued": len(due), "settled": settled, "resent": resent, **_campaign_upkeep(now)}


def _settle(message: Message, now: datetime) -> str:
    try:
        sender = sender_for(message.channel)
        found = sender.find_sms(
            message.address or "", message.body or "", message.claimed_at or now
        )
    except SendError as exc:
        log.warning("could not settle message %s yet: %s", message.id, mask_phones(str(exc)))
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


def fan_out_job(campaign_id: int) -> dict[str, int]:
    from bot import campaigns

    return campaigns.fan_out(runtime.redis(), campaign_id)


def _campaign_upkeep(now: datetime) -> dict[str, int]:
    """Resume fan-outs and reminders whose jobs were lost; move on people whose survey went idle."""
    from bot import campaigns, engine, reminders
    from bot.models import Campaign, Conversation, Invitation

    database, redis = runtime.database(), runtime.redis()
    resumed = reminded = promoted = 0
    with database.session() as session:
        stalled = session.scalars(
            select(Campaign.id).where(
                Campaign.status.in_(("launching", "launched")),
                Campaign.fanout_done_at.is_(None),
                Campaign.launched_at <= now - FANOUT_STALL,
                (Campaign.send_at.is_(None)) | (Campaign.send_at <= now - FANOUT_STALL),
            )
        ).all()
        due_reminders = [
            c.id
            for c in session.scalars(
                select(Campaign).where(
                    Campaign.status == "launched",
                    Campaign.reminder_after_hours.is_not(None),
                    Campaign.reminders_sent_at.is_(None),
                    Campaign.fanout_done_at.is_not(None),
                )
            )
            if max(c.send_at or c.launched_at, c.launched_at)
            + timedelta(hours=c.reminder_after_hours)
            <= now - FANOUT_STALL
        ]
        idle = session.execute(
            select(Conversation.id, Conversation.participant_id)
            .join(
                Invitation,
                (Invitation.participant_id == Conversation.participant_id)
                & (Invitation.status == "waiting"),
            )
            .where(
                Conversation.status == engine.ACTIVE,
                Conversation.last_activity_at <= now - engine.IDLE_EXPIRY,
            )
            .limit(RECONCILE_BATCH)
        ).all()
    for campaign_id in stalled:
        outbox.queue(redis).enqueue(fan_out_job, campaign_id, job_timeout=3600)
        resumed += 1
    for campaign_id in due_reminders:
        reminded += reminders.send_reminders(redis, campaign_id)
    for conversation_id, participant_id in idle:
        with database.session() as session:
            conv = session.get(Conversation, conversation_id, with_for_update=True)
            if conv.status != engine.ACTIVE:
                continue
            conv.status = engine.EXPIRED
            ids = campaigns.promote_waiting(session, participant_id, runtime.settings())
        outbox.dispatch(redis, [(mid, None) for mid in ids])
        promoted += len(ids)
    return {"fanouts_resumed": resumed, "reminders_sent": reminded, "waiting_invited": promoted}
