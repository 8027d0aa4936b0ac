"""POST /webhooks/twilio/sms: a text from a participant, answered inline with TwiML."""

from __future__ import annotations

import logging
import re

from flask import Blueprint, Response, current_app, request
from sqlalchemy import insert
from twilio.twiml.messaging_response import MessagingResponse

from bot import conversations, fastpath, outbox, runtime
from bot.channels import sms
from bot.config import Settings
from bot.models import Message, utcnow
from bot.phone import InvalidPhoneNumber, normalise_phone
from bot.text import clean_text
from webhooks.signatures import twilio_signed_sms

bp = Blueprint("twilio_sms", __name__, url_prefix="/webhooks/twilio")
log = logging.getLogger(__name__)
E164 = re.compile(r"\+[1-9]\d{7,14}")
SORRY = "Sorry, something went wrong on our side. We have kept your message and will look into it."


def twiml(texts: list[str]) -> Response:
    response = MessagingResponse()
    for text in texts:
        response.message(text)
    return Response(str(response), mimetype="application/xml")


@bp.post("/sms")
@twilio_signed_sms
def inbound_sms() -> Response:
    settings: Settings = current_app.extensions["involve.settings"]
    form = request.form
    sid = form.get("MessageSid") or form.get("SmsSid")
    sender = clean_text(form.get("From", ""))
    if not sid or not sender:
        return Response("MessageSid and From are required", status=400, mimetype="text/plain")
    body = clean_text(form.get("Body", ""))
    if E164.fullmatch(sender):
        phone = sender  # Twilio sends E.164 already; parsing it again is a tenth of the request
    else:
        try:
            phone = normalise_phone(sender)
        except InvalidPhoneNumber:
            phone = sender  # a short code or alphanumeric sender: keep it as it came
    database, now = runtime.database(), utcnow()
    inbound = sms.parse(body)
    received = {
        "channel": "sms",
        "kind": "inbound",
        "address": phone,
        "body": body,
        "provider_id": sid,
        "created_at": now,
    }
    try:
        # A known person answering their current question: the common case, done directly.
        fast = fastpath.handle_reply(
            database, "sms", phone, sid, body, inbound, now, settings.org_name, sms.render
        )
        if fast is not None:
            return twiml(list(fast[1]))
        with database.session() as session:
            person = conversations.participant_by_phone(session, phone)
            outcome = conversations.handle_inbound(
                session,
                person,
                "sms",
                inbound,
                now,
                settings.org_name,
                keywords=runtime.library().keywords(),
                raw=body,
            )
            conversation_id = outcome.conversation.id if outcome.conversation else None
            # Recorded last, in the same transaction: a delivery seen before rolls back all of
            # the above, and a concurrent one waits here for the first to commit.
            inbound_id = conversations.insert_inbound_once(
                session,
                **received,
                status="processed",
                participant_id=person.id,
                conversation_id=conversation_id,
            )
            if inbound_id is None:
                raise _SeenBefore
            texts = sms.render(outcome.prompts)
            if texts:
                session.execute(
                    insert(Message.__table__),
                    [
                        {
                            "direction": "out",
                            "channel": "sms",
                            "kind": "reply",
                            "address": phone,
                            "body": text,
                            "status": "replied",
                            "participant_id": person.id,
                            "in_reply_to_id": inbound_id,
                            "conversation_id": conversation_id,
                            "created_at": now,
                            "updated_at": now,
                            "sent_at": now,
                            "attempts": 0,
                        }
                        for text in texts
                    ],
                )
        if outcome.queued:
            _dispatch_quietly(outcome.queued)
        return twiml(texts)
    except (_SeenBefore, fastpath.SeenBefore):
        return twiml([])  # a retry or a duplicate delivery changes nothing
    except Exception:
        log.exception("could not process SMS %s", sid)
    # Keep what they sent even when handling it failed, so nothing is lost.
    with database.session() as session:
        kept = conversations.insert_inbound_once(
            session, **received, status="error", error_message="processing failed; see logs"
        )
    return twiml([SORRY] if kept is not None else [])


class _SeenBefore(Exception):
    pass


def _dispatch_quietly(message_ids: tuple[int, ...]) -> None:
    """Enqueue follow-on sends; if Redis is away, the worker's reconciler finds the rows."""
    try:
        outbox.dispatch(runtime.redis(), [(mid, None) for mid in message_ids])
    except Exception:
        log.warning("could not enqueue messages %s now; the reconciler will", message_ids)
