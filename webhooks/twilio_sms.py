"""POST /webhooks/twilio/sms: a text from a participant, answered inline with TwiML.

Thin on purpose: the signature is checked, the channel reads Twilio's form, the one writer
(`bot.conversations.inbox.receive`) applies it, and the replies it stored are returned as TwiML.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from bot import channels
from bot.commands import runtime
from bot.config import Settings
from bot.conversations import inbox
from webhooks.signatures import twilio_signed_inbound

bp = Blueprint("twilio_sms", __name__, url_prefix="/webhooks/twilio")
CHANNEL = channels.serving(__name__)  # the channel that lists this module


DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'


def twiml(texts: list[str] | tuple[str, ...]) -> Response:
    """What twilio's MessagingResponse writes for these texts, character for character
    (`tests/test_twilio_sms.py` holds them to it), written directly: building its element tree
    and serialising it cost a tenth of a text's whole handling."""
    if not texts:
        return Response(DECLARATION + "<Response />", mimetype="application/xml")
    messages = "".join(
        f"<Message>{_escaped(text)}</Message>" if text else "<Message />" for text in texts
    )
    return Response(f"{DECLARATION}<Response>{messages}</Response>", mimetype="application/xml")


def _escaped(text: str) -> str:
    # As ElementTree escapes an element's text: these three, nothing else.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@bp.post("/sms")
@twilio_signed_inbound(CHANNEL.name)
def inbound_sms() -> Response:
    settings: Settings = current_app.extensions["involve.settings"]
    read = CHANNEL.read_request(request.form)
    if isinstance(read, str):
        return Response(read, status=400, mimetype="text/plain")
    sid, address, body = read
    received = inbox.Received(
        channel=CHANNEL.name,
        text=body,
        inbound=CHANNEL.read_inbound(request.form, body),
        address=address,
        provider_id=sid,
    )
    outcome = inbox.receive(
        runtime.database(), settings, received, keywords=runtime.library().keywords()
    )
    # A delivery seen before gets nothing (answering again would text the person twice); a
    # message kept for a retry is answered by the retry, through the outbox.
    return twiml(outcome.replies)
