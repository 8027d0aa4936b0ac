"""Placing calls through Twilio's Calls API: the voice channel's sender.

A call is placed with `Url` pointing at our voice webhook for this outbox row (`?m=<id>`), so
the answered call knows which person and message it is for; its status callbacks go to
`/webhooks/twilio/status` like a text's. Answering machines are detected (`MachineDetection`)
and hear a short message instead of the survey.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.config import Settings
from bot.providers.base import Handed, Outgoing
from bot.providers.twilio import TwilioSender, classify, delete_recordings

RING_SECONDS = 40  # long enough for someone to reach the phone from another room
CALL_EVENTS = ["initiated", "ringing", "answered", "completed"]


def call_url(settings: Settings, message_id: int) -> str:
    return f"{settings.public_base_url}/webhooks/twilio/voice?m={message_id}"


class CallSender(TwilioSender):
    """Outbound calls from TWILIO_FROM_NUMBER."""

    @property
    def sender_key(self) -> str:
        # Twilio paces calls separately from texts, so SEND_RATE counts them apart.
        return f"twilio-calls:{self.settings.twilio_from_number}"

    def send(self, message: Outgoing) -> Handed:
        client = self.client()
        try:
            call = client.calls.create(
                to=message.address,
                from_=self.settings.twilio_from_number,
                url=call_url(self.settings, message.id),
                method="POST",
                status_callback=self.status_callback(message.id),
                status_callback_event=CALL_EVENTS,
                status_callback_method="POST",
                # Waits for the greeting's beep, so a machine hears our whole message.
                machine_detection="DetectMessageEnd",
                timeout=RING_SECONDS,
            )
        except Exception as exc:
            raise classify(exc) from exc
        return Handed(call.sid, call.status or "queued")

    def find(self, message: Outgoing, since: datetime) -> Handed | None:
        """A call to this number placed since `since`, if Twilio has one (calls carry no body,
        so the number and the time are what identify it)."""
        client = self.client()
        try:
            recent = client.calls.list(
                to=message.address, from_=self.settings.twilio_from_number, limit=20
            )
        except Exception as exc:
            raise classify(exc) from exc
        for found in recent:
            created = found.date_created
            if created is None or created >= since - timedelta(seconds=30):
                return Handed(found.sid, found.status or "queued")
        return None

    def erase_at_provider(self, refs: list[str]) -> int:
        """The recordings of this person's spoken answers, deleted at Twilio (erasure)."""
        return delete_recordings(self.settings, refs)


_senders: dict[int, CallSender] = {}


def call_sender(settings: Settings) -> CallSender:
    """One sender (one connection pool) per settings object, kept for the process."""
    sender = _senders.get(id(settings))
    if sender is None or sender.settings is not settings:
        _senders.clear()
        sender = _senders[id(settings)] = CallSender(settings)
    return sender
