"""POST /webhooks/twilio/status: delivery callbacks for texts and calls we sent."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, request
from sqlalchemy import select

from bot import channels, conversations
from bot.commands import runtime
from bot.providers.twilio import classify_code
from bot.sending import delivery
from bot.sending.errors import RecipientOptedOut
from bot.storage.models import Message, as_id
from bot.storage.status import Direction, Outbound
from bot.text import clean_text
from webhooks.signatures import stable_sid, twilio_signed

bp = Blueprint("twilio_status", __name__, url_prefix="/webhooks/twilio")


@bp.post("/status")
@twilio_signed
def status_callback() -> Response:
    form = request.form
    sid = form.get("MessageSid") or form.get("CallSid")
    raw_status = (
        form.get("MessageStatus") or form.get("SmsStatus") or form.get("CallStatus") or ""
    ).lower()
    status = delivery.TWILIO_STATUS.get(raw_status)
    # Signed, but still only text: cut to what the columns hold, without NULs, so an odd
    # callback is a 204 and never a database error.
    error_code = clean_text(form.get("ErrorCode") or "")[:20] or None
    error_text = clean_text(form.get("ErrorMessage") or "")[:1000] or None
    if not sid or status is None or stable_sid(sid) != sid:
        return Response(status=204)  # no message of ours has a sid like that
    message_id = as_id(request.args.get("m", ""))
    database = runtime.database()
    opted_out_person: int | None = None
    with database.session() as session:
        found = _find(session, message_id, sid, lock=False)
        if found is None:
            return Response(status=204)  # not ours, or already erased: nothing to update
        # The person's lock first, as every writer of a person's data takes it (a call's
        # retry, below, writes to their invitations and the outbox); then the message's.
        if found.participant_id is not None:
            conversations.lock_person(session, found.participant_id)
        message = _find(session, message_id, sid, lock=True)
        if message is None:
            return Response(status=204)
        message.provider_id = message.provider_id or sid
        if message.status in (Outbound.PENDING, Outbound.CLAIMED):
            # The callback beat the sender's own write: Twilio has it, so it was handed over.
            message.status = Outbound.PENDING
        moved = delivery.advance(message, status, error_code, error_text)
        if moved and message.channel in channels.NAMES:
            # A call not answered is tried again by its channel, on its schedule.
            channels.get(message.channel).after_status(
                session, message, raw_status, current_app.extensions["involve.settings"]
            )
        error = classify_code(error_code)
        if isinstance(error, RecipientOptedOut) and message.participant_id:
            opted_out_person = message.participant_id
    if opted_out_person is not None:
        # After the message's transaction: the person's lock is always taken first.
        conversations.opt_out_by_carrier(database, opted_out_person, f"Twilio {error_code}")
    return Response(status=204)


def _find(session: Any, message_id: int | None, sid: str, lock: bool) -> Message | None:
    """Our outbound message this callback is about: by the row id we put in its URL, else by
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
