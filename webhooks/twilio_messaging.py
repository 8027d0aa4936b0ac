"""POST /webhooks/twilio/<channel>: a message from a participant through Twilio Messaging (a
text at `/webhooks/twilio/sms`, a WhatsApp message at `/webhooks/twilio/whatsapp`), answered
inline with TwiML.

One route per channel that lists this module among its `webhooks` (a
`bot.channels.twilio_messaging.TwilioMessagingChannel`), so a new channel on Twilio Messaging
needs no file here. Thin on purpose: the signature and the sizes are checked for that channel,
the channel reads Twilio's form, the one writer (`bot.conversations.inbox.receive`) applies
it, and the replies it stored are returned as TwiML.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, current_app, request

from bot import channels
from bot.channels.twilio_messaging import TwilioMessagingChannel
from bot.commands import runtime
from bot.config import Settings
from bot.conversations import inbox
from webhooks.signatures import twilio_signed_inbound

bp = Blueprint("twilio_messaging", __name__, url_prefix="/webhooks/twilio")


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


def inbound_view(channel: TwilioMessagingChannel) -> Callable[[], Response]:
    """The endpoint for one channel's inbound messages."""

    def inbound() -> Response:
        settings: Settings = current_app.extensions["involve.settings"]
        read = channel.read_request(request.form)
        if isinstance(read, str):
            return Response(read, status=400, mimetype="text/plain")
        sid, address, body = read
        received = inbox.Received(
            channel=channel.name,
            text=body,
            inbound=channel.read_inbound(request.form, body),
            address=address,
            provider_id=sid,
        )
        outcome = inbox.receive(
            runtime.database(), settings, received, keywords=runtime.library().keywords()
        )
        # A delivery seen before gets nothing (answering again would message the person
        # twice); a message kept for a retry is answered by the retry, through the outbox.
        return twiml(outcome.replies)

    inbound.__name__ = f"inbound_{channel.name}"
    return inbound


for _channel in channels.served_by(__name__):
    if not isinstance(_channel, TwilioMessagingChannel):
        raise TypeError(f"{_channel} lists {__name__} but does not read Twilio Messaging's form")
    bp.add_url_rule(
        f"/{_channel.name}",
        endpoint=f"inbound_{_channel.name}",
        view_func=twilio_signed_inbound(_channel.name)(inbound_view(_channel)),
        methods=["POST"],
    )
