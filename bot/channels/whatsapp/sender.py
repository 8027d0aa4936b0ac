"""WhatsApp through Twilio's Messages API: free text inside the 24-hour customer-service
window, an approved template (ContentSid and ContentVariables) outside it.

WhatsApp lets a business write freely only within 24 hours of the person's last message;
outside that window only a template Meta approved may go. The window is read from the
contact point's `last_inbound_at` (never later than the truth, so never judged open when
it is closed); if Twilio still refuses free text as outside it (63016, `OutsideWindow`),
the template goes instead. A message that needs a template when none is named fails for good
with a reason that says what to set.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from twilio.rest import Client

from bot.channels.whatsapp.settings import TEMPLATE_KINDS, WhatsAppSettings
from bot.config import Settings
from bot.providers.base import Handed, Outgoing
from bot.providers.errors import ChannelOff, OutsideWindow, PermanentError
from bot.providers.twilio import PooledHttpClient, classify

WINDOW = timedelta(hours=24)
# Handed over this close to the window's end, free text may reach WhatsApp after it closed:
# a template is surer.
WINDOW_MARGIN = timedelta(minutes=15)
NO_TEMPLATE = "no-template"


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)  # stored UTC


def in_window(last_inbound_at: datetime | None, now: datetime) -> bool:
    """Is WhatsApp's customer-service window open at `now`, with a margin to spare?"""
    if last_inbound_at is None:
        return False
    return _utc(now) - _utc(last_inbound_at) < WINDOW - WINDOW_MARGIN


class WhatsAppSender:
    """The `whatsapp` channel's sender: one Twilio client (and connection pool) per process."""

    def __init__(self, settings: Settings, own: WhatsAppSettings):
        self.settings = settings
        self.own = own
        self._client: Client | None = None

    @property
    def sender_key(self) -> str:
        return f"twilio-whatsapp:{self.own.sender or self.own.messaging_service_sid}"

    def client(self) -> Client:
        if not (self.settings.twilio_enabled and self.own.configured):
            raise ChannelOff(
                "WhatsApp is off: set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and "
                "TWILIO_WHATSAPP_FROM (or TWILIO_WHATSAPP_MESSAGING_SERVICE_SID)"
            )
        if self._client is None:
            self._client = Client(
                self.settings.twilio_account_sid,
                self.settings.twilio_auth_token,
                http_client=PooledHttpClient(self.settings.twilio_api_base_url),
            )
        return self._client

    def _origin(self) -> dict[str, str]:
        if self.own.messaging_service_sid:
            return {"messaging_service_sid": self.own.messaging_service_sid}
        assert self.own.sender is not None
        return {"from_": self.own.sender}

    def _create(self, message: Outgoing, **content: Any) -> Handed:
        client = self.client()
        try:
            sent = client.messages.create(
                to=message.address,
                status_callback=(
                    f"{self.settings.public_base_url}/webhooks/twilio/status?m={message.id}"
                ),
                **self._origin(),
                **content,
            )
        except Exception as exc:
            raise classify(exc) from exc
        return Handed(sent.sid, sent.status or "queued")

    def template_for(self, message: Outgoing) -> tuple[str, str]:
        """(Content SID, ContentVariables) for this message outside the window: the survey's
        own template for its kind, else the setting's; raises `PermanentError` saying what to
        set when there is none."""
        kind = message.kind if message.kind in TEMPLATE_KINDS else None
        sid = kind and (message.options.get(kind) or self.own.templates.get(kind))
        if not kind:
            raise PermanentError(
                f"a {message.kind} is outside WhatsApp's 24-hour window, where only an "
                "approved template may go, and it has none",
                NO_TEMPLATE,
            )
        if not sid:
            raise PermanentError(
                f"the {kind} is outside WhatsApp's 24-hour window and no approved template is "
                f"named for it: set channels.whatsapp.{kind} in the survey script, or "
                f"WHATSAPP_{kind.upper()}_TEMPLATE",
                NO_TEMPLATE,
            )
        names = message.options.get("variables") or self.own.variables
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        # Twilio refuses an empty variable (21656): each has a word.
        values = {
            str(n): message.variables.get(name) or "-" for n, name in enumerate(names, start=1)
        }
        return str(sid), json.dumps(values, ensure_ascii=False)

    def send(self, message: Outgoing) -> Handed:
        if in_window(message.last_inbound_at, datetime.now(UTC)):
            try:
                return self._create(message, body=message.body)
            except OutsideWindow:
                pass  # WhatsApp judged the window closed after all: the template goes
        sid, variables = self.template_for(message)
        handed = self._create(message, content_sid=sid, content_variables=variables)
        return Handed(handed.sid, handed.status, replaced=True)  # the question is not in it

    def find(self, message: Outgoing, since: datetime) -> Handed | None:
        """A message to this address created since `since`, with this body where it went as
        free text (a template's body is Twilio's rendering, so any message then)."""
        client = self.client()
        # From a Messaging Service, Twilio picks the number: any sender of ours then.
        origin = {"from_": self.own.sender} if self.own.sender else {}
        try:
            recent = client.messages.list(to=message.address, limit=50, **origin)
        except Exception as exc:
            raise classify(exc) from exc
        free_text = in_window(message.last_inbound_at, since)
        for found in recent:
            created = found.date_created
            if created is not None and _utc(created) < _utc(since) - timedelta(seconds=30):
                continue
            if not free_text or found.body == message.body:
                return Handed(found.sid, found.status or "queued")
        return None
