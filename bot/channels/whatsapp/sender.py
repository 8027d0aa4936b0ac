"""WhatsApp through Twilio's Messages API: free text (or answers to tap) inside the 24-hour
customer-service window, an approved template (ContentSid and ContentVariables) outside it.

WhatsApp lets a business write freely only within 24 hours of the person's last message;
outside that window only a template Meta approved may go. The window is read from the
contact point's `last_inbound_at` (never later than the truth, so never judged open when
it is closed); if Twilio still refuses free text as outside it (63016, `OutsideWindow`),
the template goes instead. A message that needs a template when none is named fails for good
with a reason that says what to set.

A message with answers to tap (`content`) goes inside the window as a Content API message: its
content is made once through the Content API (`POST /v1/Content`, named by a hash of what it
is) and reused, found again by that name after a restart. Where the Content API or WhatsApp
refuses it for good, that message goes as its numbered text instead, and the refusal is
logged without the message's words; where they fail for now (5xx, 429, a timeout), the message
is tried again later like any other.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from twilio.rest import Client

from bot.channels.whatsapp import content
from bot.channels.whatsapp.settings import TEMPLATE_KINDS, WhatsAppSettings
from bot.config import Settings
from bot.providers.base import Handed, Outgoing
from bot.providers.errors import ChannelOff, OutsideWindow, PermanentError, SendError
from bot.providers.twilio import PooledHttpClient, classify

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=24)
# Handed over this close to the window's end, free text may reach WhatsApp after it closed:
# a template is surer.
WINDOW_MARGIN = timedelta(minutes=15)
NO_TEMPLATE = "no-template"
CONTENT_ACCEPT = {"Content-Type": "application/json", "Accept": "application/json"}


class ContentLibrary:
    """The Content SIDs of the answers we send, kept for the process (the senders of a batch
    share it, from several threads): (account, friendly name) -> SID. Content Twilio refused
    for good is remembered too, so each such message goes as text at once, not after another
    refusal."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: dict[tuple[str, str], str] = {}
        self._refused: dict[tuple[str, str], PermanentError] = {}

    def sid_for(self, client: Client, choices: content.Choices) -> str:
        """The Content SID for these answers: known, found at Twilio by name, or made now.
        Raises `TemporaryError` or `PermanentError` as Twilio's answer says."""
        key = (str(client.account_sid), choices.friendly_name)
        with self._lock:
            if key in self._made:
                return self._made[key]
            if key in self._refused:
                raise self._refused[key]
        try:
            sid = self._find(client, key[1]) or self._create(client, choices)
        except PermanentError as exc:
            with self._lock:
                self._refused[key] = exc
            raise
        with self._lock:
            self._made[key] = sid
        return sid

    def forget(self) -> None:
        with self._lock:
            self._made.clear()
            self._refused.clear()

    @staticmethod
    def _find(client: Client, name: str) -> str | None:
        """Content made before with this name (by another process, before a restart). Twilio
        allows two of one name, so this keeps the library to one each; two processes making
        the same one at once make two, both good. Content search is Twilio's v2; where it
        fails for good, the content is made afresh."""
        try:
            found = client.content.v2.contents.list(content_name=f"^{name}$", limit=20)
        except Exception as exc:
            failure = classify(exc)
            if failure.permanent:
                log.warning("looking up WhatsApp content failed (%s): making it", failure.code)
                return None
            raise failure from exc
        return next((str(c.sid) for c in found if c.friendly_name == name and c.sid), None)

    @staticmethod
    def _create(client: Client, choices: content.Choices) -> str:
        definition = {"friendly_name": choices.friendly_name, **choices.definition()}
        try:
            made = client.content.v1.create(
                method="POST", uri="/Content", data=definition, headers=dict(CONTENT_ACCEPT)
            )
        except Exception as exc:
            raise classify(exc) from exc
        sid = made.get("sid") if isinstance(made, dict) else None
        if not sid:
            raise PermanentError("Twilio's Content API answered without a SID", "content")
        return str(sid)


LIBRARY = ContentLibrary()


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
        words, choices = content.split(message.body)
        if in_window(message.last_inbound_at, datetime.now(UTC)):
            try:
                handed = self._send_choices(message, choices) if choices else None
                return handed or self._create(message, body=words)
            except OutsideWindow:
                pass  # WhatsApp judged the window closed after all: the template goes
        sid, variables = self.template_for(message)
        handed = self._create(message, content_sid=sid, content_variables=variables)
        return Handed(handed.sid, handed.status, replaced=True)  # the question is not in it

    def _send_choices(self, message: Outgoing, choices: content.Choices) -> Handed | None:
        """The message with its answers to tap; None where Twilio refuses them for good (the
        numbered text goes then). A failure for now, the window closing, or one about the
        person's address is raised as it is."""
        try:
            sid = LIBRARY.sid_for(self.client(), choices)
            return self._create(message, content_sid=sid, content_variables=choices.variables())
        except SendError as exc:
            if type(exc) is not PermanentError:
                raise  # for now, outside the window, the address, the channel off
            # The message's words and Twilio's own message (which may quote them) stay out.
            log.warning(
                "WhatsApp message %s: Twilio refused its answers as %s (%s); sent as numbered text",
                message.id,
                choices.kind,
                exc.code,
            )
            return None

    def find(self, message: Outgoing, since: datetime) -> Handed | None:
        """A message to this address created since `since`, with these words where it went as
        free text (a template's or answers' body is Twilio's rendering, so any message
        then)."""
        words, choices = content.split(message.body)
        client = self.client()
        # From a Messaging Service, Twilio picks the number: any sender of ours then.
        origin = {"from_": self.own.sender} if self.own.sender else {}
        try:
            recent = client.messages.list(to=message.address, limit=50, **origin)
        except Exception as exc:
            raise classify(exc) from exc
        free_text = choices is None and in_window(message.last_inbound_at, since)
        for found in recent:
            created = found.date_created
            if created is not None and _utc(created) < _utc(since) - timedelta(seconds=30):
                continue
            if not free_text or found.body == words:
                return Handed(found.sid, found.status or "queued")
        return None
