"""The one status writer: what a provider says became of a message we sent.

A status moves only forward, whatever order the provider's callbacks arrive in. A callback is
applied here and only here (`record`): the person's lock first, as every writer of a person's
data takes it, then the message's; the status moves on; a channel's declared "try again after
X" (`Channel.retry_policy`) makes the next try; an unsubscribe at the carrier opts the person
out; a block on one channel stops that contact point only. Provider endpoints (`webhooks/`) only read the callback into a `StatusReport`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot import channels, conversations
from bot.channels.base import RetryPolicy
from bot.config import Settings
from bot.conversations import outbox
from bot.providers.errors import (
    RecipientBlocked,
    RecipientOptedOut,
    RecipientUnreachable,
    SendError,
    TemporaryError,
)
from bot.sending import pacing
from bot.storage.db import Database
from bot.storage.models import Invitation, Message, Participant, utcnow
from bot.storage.status import Direction, Outbound

log = logging.getLogger(__name__)

# Our statuses, by how far along they are. Final ones never change again.
RANK = {
    "pending": 0,
    "claimed": 1,
    "queued": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "cancelled": 4,
    "replied": 4,
}
FINAL = {status for status, rank in RANK.items() if rank == 4}

TWILIO_STATUS = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "queued",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "cancelled",
    # calls
    "initiated": "queued",
    "ringing": "queued",
    "in-progress": "sent",
    "answered": "sent",
    "completed": "delivered",
    "busy": "undelivered",
    "no-answer": "undelivered",
}


def advance(
    message: Message, status: str, error_code: str | None = None, error_message: str | None = None
) -> bool:
    """Apply `status` if it moves the message on; repeats and late arrivals change nothing."""
    if status not in RANK:
        return False
    if message.status in FINAL or RANK[status] <= RANK.get(message.status, 0):
        return False
    message.status = status
    if error_code:
        message.error_code = error_code
    if error_message:
        message.error_message = error_message
    message.updated_at = utcnow()
    return True


@dataclass(frozen=True)
class StatusReport:
    """A provider's status callback, as its endpoint read it."""

    provider: str  # who said so, for the consent log: "Twilio"
    provider_id: str  # the provider's id for the message (or call)
    status: str  # ours (a key of RANK)
    raw_status: str  # the provider's own word ("no-answer"), for a channel's retry policy
    error_code: str | None = None
    error_text: str | None = None
    message_id: int | None = None  # our row id, where the callback URL carries it


def record(
    database: Database,
    settings: Settings,
    report: StatusReport,
    classify: Callable[[str | None], SendError | None],
) -> bool:
    """Apply a status callback; False when no message of ours is the one it is about.
    `classify` turns the provider's error code into the error tree (`bot.providers.errors`)."""
    about: tuple[int, str, str, SendError] | None = None
    with database.session() as session:
        found = _find(session, report.message_id, report.provider_id, lock=False)
        if found is None:
            return False  # not ours, or already erased: nothing to update
        # The person's lock first, as every writer of a person's data takes it (a retry,
        # below, writes to their invitations and the outbox); then the message's.
        if found.participant_id is not None:
            conversations.lock_person(session, found.participant_id)
        message = _find(session, report.message_id, report.provider_id, lock=True)
        if message is None:
            return False
        message.provider_id = message.provider_id or report.provider_id
        if message.status in (Outbound.PENDING, Outbound.CLAIMED):
            # The callback beat the sender's own write: the provider has it, so it was handed over.
            message.status = Outbound.PENDING
        moved = advance(message, report.status, report.error_code, report.error_text)
        if moved and message.channel in channels.NAMES:
            policy = channels.get(message.channel).retry_policy(settings)
            if policy is not None:
                try_again(session, message, report.raw_status, policy, classify)
        error = classify(report.error_code)
        if error is not None and message.participant_id and message.address:
            about = (message.participant_id, message.channel, message.address, error)
    if about is not None:
        # After the message's transaction: the person's lock is always taken first. A carrier
        # opt-out stops them; a block stops that contact point; an invalid number marks it
        # unreachable.
        about_the_address(database, *about, detail=f"{report.provider} {report.error_code}")
    return True


def _find(session: Session, message_id: int | None, sid: str, lock: bool) -> Message | None:
    """Our outbound message a callback is about: by the row id we put in its URL, else by
    the provider's id."""
    message = None
    if message_id is not None:
        message = session.get(Message, message_id, with_for_update=lock, populate_existing=lock)
        if message is not None and (
            message.direction != Direction.OUT or message.provider_id not in (None, sid)
        ):
            message = None
    if message is None:
        query = select(Message).where(
            Message.direction == Direction.OUT, Message.provider_id == sid
        )
        message = session.scalar(query.with_for_update() if lock else query)
    return message


def _worth_again(
    policy: RetryPolicy,
    message: Message,
    raw_status: str,
    classify: Callable[[str | None], SendError | None],
) -> bool:
    if raw_status in policy.statuses:
        return True
    if raw_status == "failed" and policy.passing_failures:
        # Failed for good (a bad number) is never tried again; only a passing failure is.
        return message.error_code is None or isinstance(
            classify(message.error_code), TemporaryError
        )
    return False


def try_again(
    session: Session,
    message: Message,
    raw_status: str,
    policy: RetryPolicy,
    classify: Callable[[str | None], SendError | None],
    now: datetime | None = None,
) -> Message | None:
    """The next try of new contact that did not get through, on the channel's schedule, as a
    new outbox row; None when the policy says no more. The caller holds the person's lock."""
    if message.kind not in pacing.NEW_CONTACT or not _worth_again(
        policy, message, raw_status, classify
    ):
        return None
    now = now or utcnow()
    tries = max(message.attempts, 1)  # tries made for this message so far
    person = session.get(Participant, message.participant_id) if message.participant_id else None
    if tries > len(policy.schedule) or person is None or person.opted_out:
        message.error_message = f"not reached after {tries} {policy.tries} ({raw_status})"
        return None
    again = outbox.add(
        session,
        person,
        message.channel,
        message.body or "",
        message.kind,
        campaign_id=message.campaign_id,
        conversation_id=message.conversation_id,
        send_after=now + policy.schedule[tries - 1],
        address=message.address,  # the address that did not answer, not another of theirs
    )
    again.attempts = message.attempts  # the next claim makes it one more try
    message.status = Outbound.CANCELLED
    message.error_message = f"{raw_status}: {policy.again} as message {again.id}"
    message.updated_at = now
    # The invitation follows its latest try, so campaign counts see one row per person.
    for column in (Invitation.message_id, Invitation.reminder_message_id):
        session.execute(update(Invitation).where(column == message.id).values({column: again.id}))
    log.info("message %s not through (%s); trying again as %s", message.id, raw_status, again.id)
    return again


def about_the_address(
    database: Database,
    participant_id: int,
    channel: str,
    address: str,
    error: SendError,
    detail: str | None = None,
) -> None:
    """What a failure (from a send, or a status callback) says about the person's address, for
    good: unsubscribed at the carrier (they are opted out, and that contact point is marked),
    blocked us on this channel (that contact point is stopped, with what was waiting to go
    there; the person and their other contact points are not), or never reachable on this
    channel (the contact point is marked; their others still are). Anything else says nothing
    about the address. Its own unit of work, the person's lock first: call it after the
    message's transaction. `detail`: for the consent log."""
    if isinstance(error, RecipientOptedOut):
        conversations.opt_out_by_carrier(
            database, participant_id, detail or str(error), channel, address, error.reason
        )
    elif isinstance(error, RecipientBlocked):
        conversations.blocked_by_recipient(database, participant_id, channel, address, error.reason)
    elif isinstance(error, RecipientUnreachable):
        conversations.unreachable(database, participant_id, channel, address, error.reason)
