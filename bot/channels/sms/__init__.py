"""Texts over Twilio Messaging: an E.164 number is the address, one text answers each step."""

from __future__ import annotations

import re

from bot.channels.base import Sender
from bot.channels.phone_number import PhoneNumberChannel
from bot.channels.twilio_messaging import TwilioMessagingChannel
from bot.config import Settings
from bot.phone_numbers import is_landline

E164 = re.compile(r"\+[1-9]\d{7,14}")


class SmsChannel(TwilioMessagingChannel, PhoneNumberChannel):
    name = "sms"
    title = "text message"
    segment_counted = True
    simulate_hint = "type a reply"

    def sender(self, settings: Settings) -> Sender:
        # Here: the provider's client library loads only where we send or set it up.
        from bot.providers.twilio import sms_sender

        self.require_on(settings)
        return sms_sender(settings)

    def point_webhooks(self, settings: Settings) -> list[str]:
        # Here: the provider's client library loads only where we send or set it up.
        from bot.providers.twilio import point_number

        url = f"{settings.public_base_url}{self.webhook_path()}"
        return [point_number(settings, "sms", url, "texts")]

    def unsuited(self, address: str) -> str | None:
        # Twilio takes a text to a landline and then fails it (30006), or a UK landline
        # provider reads it aloud by text-to-speech: it is not the text the person would read.
        return "a landline, which cannot take texts" if is_landline(address) else None

    def read_address(self, sender: str) -> str:
        if E164.fullmatch(sender):
            return sender  # Twilio sends E.164 already; parsing it again costs a tenth
        return super().read_address(sender)


SMS = SmsChannel()
