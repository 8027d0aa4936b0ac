"""Calling again after no answer: busy, no answer or a passing failure, on VOICE_RETRY's
schedule (default 15 minutes, 1 hour, then a day), then counted as not reached.

Each further call is a new outbox row (the unanswered one is closed with the reason), so it
has every guarantee a first call has: claimed at most once, paced by SEND_RATE, held past quiet
hours (it is new contact), and cancelled if the person stops in the meantime.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from bot.config import Settings
from bot.providers.twilio import classify_code
from bot.sending import outbox, pacing
from bot.sending.errors import TemporaryError
from bot.storage.models import Invitation, Message, Participant, utcnow
from bot.storage.status import Outbound

log = logging.getLogger(__name__)

NOT_ANSWERED = {"busy", "no-answer"}


def _worth_another_call(message: Message, raw_status: str) -> bool:
    if raw_status in NOT_ANSWERED:
        return True
    if raw_status == "failed":
        # A bad number fails for good; only a passing failure is tried again.
        return message.error_code is None or isinstance(
            classify_code(message.error_code), TemporaryError
        )
    return False


def after_status(
    session: Session,
    message: Message,
    raw_status: str,
    settings: Settings,
    now: datetime | None = None,
) -> Message | None:
    """The next call for an unanswered one, if the schedule allows; None otherwise."""
    if message.kind not in pacing.NEW_CONTACT or not _worth_another_call(message, raw_status):
        return None
    now = now or utcnow()
    calls = max(message.attempts, 1)  # calls placed for this message so far
    person = session.get(Participant, message.participant_id) if message.participant_id else None
    if calls > len(settings.voice_retry) or person is None or person.opted_out:
        message.error_message = f"not reached after {calls} calls ({raw_status})"
        return None
    when = now + settings.voice_retry[calls - 1]
    again = outbox.add(
        session,
        person,
        message.channel,
        message.body or "",
        message.kind,
        campaign_id=message.campaign_id,
        conversation_id=message.conversation_id,
        send_after=when,
    )
    again.attempts = message.attempts  # the next claim makes it one more call
    message.status = Outbound.CANCELLED
    message.error_message = f"{raw_status}: called again as message {again.id}"
    message.updated_at = now
    # The invitation follows its latest call, so campaign counts see one row per person.
    for column in (Invitation.message_id, Invitation.reminder_message_id):
        session.execute(update(Invitation).where(column == message.id).values({column: again.id}))
    log.info("call %s not answered (%s); calling again as %s", message.id, raw_status, again.id)
    return again
