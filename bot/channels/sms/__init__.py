"""Texts over Twilio Messaging: an E.164 number is the address, one text answers each step."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from bot.channels.base import Sender
from bot.channels.phone_number import PhoneNumberChannel
from bot.channels.sms import render
from bot.config import Settings
from bot.engine import Inbound, Prompt
from bot.engine.keywords import ProviderKeyword
from bot.phone_numbers import InvalidPhoneNumber, normalise_phone
from bot.text import clean_text

E164 = re.compile(r"\+[1-9]\d{7,14}")
MAX_SID = 64  # Twilio's are 34 characters; anything far longer is not from Twilio


class SmsChannel(PhoneNumberChannel):
    name = "sms"
    title = "text message"
    segment_counted = True
    simulate_hint = "type a reply"
    webhooks = ("webhooks.twilio_sms:bp",)

    def sender(self, settings: Settings) -> Sender:
        # Here: the provider's client library loads only where we send or set it up.
        from bot.providers.twilio import sms_sender

        self.require_on(settings)
        return sms_sender(settings)

    def point_webhooks(self, settings: Settings) -> list[str]:
        # Here: the provider's client library loads only where we send or set it up.
        from bot.providers.twilio import point_number

        url = f"{settings.public_base_url}/webhooks/twilio/sms"
        return [point_number(settings, "sms", url, "texts")]

    def render_body(self, prompts: Iterable[Prompt], org: str) -> str:
        return "\n\n".join(render.render(prompts))

    def render_replies(self, prompts: Iterable[Prompt], org: str) -> list[str]:
        return render.render(prompts)

    def parse_stored(self, body: str) -> Inbound:
        return render.parse(body)

    def read_inbound(self, form: Mapping[str, str], body: str) -> Inbound | ProviderKeyword:
        """What the text says, and whether Twilio already took it as a keyword: with
        Advanced Opt-Out it sends `OptOutType` (STOP, START or HELP) for its own words,
        which may be any a Messaging Service is set up with. Passed on as it came; the writer
        decides what it means for the person."""
        return ProviderKeyword.read(form.get("OptOutType"), body) or self.parse_stored(body)

    def read_request(self, form: Mapping[str, str]) -> tuple[str, str, str] | str:
        """(message sid, sender's address, body) from Twilio's form, or what is wrong with it."""
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        sender = clean_text(form.get("From", "")).strip()
        if not sid or not sender:
            return "MessageSid and From are required"
        if len(sid) > MAX_SID or len(sender) > 64:
            return "MessageSid or From is too long"
        if E164.fullmatch(sender):
            address = sender  # Twilio sends E.164 already; parsing it again costs a tenth
        else:
            try:
                address = normalise_phone(sender)
            except InvalidPhoneNumber:
                address = sender  # a short code or an alphanumeric sender, kept as it came
        return clean_text(sid), address, clean_text(form.get("Body", ""))

    def simulate_show(self, prompts: Sequence[Prompt], org: str) -> list[str]:
        return [
            f"[text] {line}" if i == 0 else f"       {line}"
            for text in render.render(prompts)
            for i, line in enumerate(text.splitlines())
        ]


SMS = SmsChannel()
