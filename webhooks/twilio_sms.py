"""POST /webhooks/twilio/sms: a text from a participant, answered inline with TwiML."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, request
from sqlalchemy.exc import IntegrityError
from twilio.twiml.messaging_response import MessagingResponse

from bot import conversations, runtime
from bot.channels import sms
from bot.config import Settings
from bot.models import Message, utcnow
from bot.phone import InvalidPhoneNumber, normalise_phone
from webhooks.signatures import twilio_signed

bp = Blueprint("twilio_sms", __name__, url_prefix="/webhooks/twilio")
log = logging.getLogger(__name__)
SORRY = "Sorry, something went wrong on our side. We have kept your message and will look into it."


def twiml(texts: list[str]) -> Response:
    response = MessagingResponse()
    for text in texts:
        response.message(text)
    return Response(str(response), mimetype="application/xml")


@bp.post("/sms")
@twilio_signed
def inbound_sms() -> Response:
    settings: Settings = current_app.extensions["involve.settings"]
    form = request.form
    sid = form.get("MessageSid") or form.get("SmsSid")
    sender = form.get("From", "")
    if not sid or not sender:
        return Response("MessageSid and From are required", status=400, mimetype="text/plain")
    body = form.get("Body", "")
    try:
        phone = normalise_phone(sender)
    except InvalidPhoneNumber:
        phone = sender  # a short code or alphanumeric sender: keep it as it came
    database, now = runtime.database(), utcnow()
    inbound = Message(
        direction="in",
        channel="sms",
        kind="inbound",
        address=phone,
        body=body,
        provider_id=sid,
        status="received",
        created_at=now,
    )
    try:
        with database.session() as session:
            try:
                with session.begin_nested():
                    session.add(inbound)
            except IntegrityError:
                return twiml([])  # seen before: a retry or a duplicate delivery changes nothing
            person = conversations.participant_by_phone(session, phone)
            inbound.participant_id = person.id
            outcome = conversations.handle_inbound(
                session,
                person,
                "sms",
                sms.parse(body),
                now,
                settings.org_name,
                keywords=runtime.library().keywords(),
                raw=body,
            )
            inbound.conversation_id = outcome.conversation.id if outcome.conversation else None
            inbound.status = "processed"
            texts = sms.render(outcome.prompts)
            for text in texts:
                session.add(
                    Message(
                        direction="out",
                        channel="sms",
                        kind="reply",
                        address=phone,
                        body=text,
                        status="replied",
                        participant_id=person.id,
                        in_reply_to_id=inbound.id,
                        conversation_id=inbound.conversation_id,
                        created_at=now,
                        sent_at=now,
                    )
                )
        return twiml(texts)
    except Exception:
        log.exception("could not process SMS %s", sid)
    # Keep what they sent even when handling it failed, so nothing is lost.
    try:
        with database.session() as session:
            session.add(
                Message(
                    direction="in",
                    channel="sms",
                    kind="inbound",
                    address=phone,
                    body=body,
                    provider_id=sid,
                    status="error",
                    error_message="processing failed; see logs",
                    created_at=now,
                )
            )
    except IntegrityError:
        return twiml([])
    return twiml([SORRY])
