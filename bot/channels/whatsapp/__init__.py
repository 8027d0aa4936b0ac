"""WhatsApp over Twilio: `whatsapp:+447700900123` is the address, a message answers each step.

People write to the charity's WhatsApp sender; Twilio posts each message, signed as texts are,
to `/webhooks/twilio/whatsapp`. What we say back goes in the TwiML answer, except a reply
that offers buttons or a list to tap (`content`): a Content API message, which TwiML cannot
carry, so it goes through the outbox and the sender (`can_reply_inline`).
Inside WhatsApp's 24-hour window everything goes as we wrote it (buttons or a list where the
answers fit WhatsApp's limits, numbered text otherwise); contact we start outside it (an
invitation, a reminder, "you said, we did") goes as an approved template named in the survey
script (`channels: {whatsapp: {invitation: HX..., reminder: HX..., feedback: HX...,
variables: [name, org]}}`) or in settings (`WHATSAPP_INVITATION_TEMPLATE`...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from bot.channels import plain_text
from bot.channels.base import InvalidAddress, Sender
from bot.channels.twilio_messaging import TwilioMessagingChannel
from bot.channels.whatsapp import content
from bot.channels.whatsapp import settings as own_settings
from bot.channels.whatsapp.settings import (
    CONTENT_SID,
    TEMPLATE_KINDS,
    WhatsAppSettings,
    variable_list,
    whatsapp_address,
)
from bot.channels.whatsapp.window import TemplateWindow
from bot.config import Settings
from bot.engine import Inbound, Prompt
from bot.phone_numbers import InvalidPhoneNumber
from bot.text import clean_text

MAX_BODY = 1600  # Twilio's limit on a WhatsApp message's body


class WhatsAppChannel(TemplateWindow, TwilioMessagingChannel):
    name = "whatsapp"
    title = "WhatsApp"
    # Its own panel column: a number that takes texts may not be on WhatsApp, and a person
    # says which they want.
    contact_field = "whatsapp"
    contact_example = "07700 900123"
    max_address_length = 25  # "whatsapp:" and E.164's 16
    simulate_label = "whatsapp"
    simulate_hint = "type a reply, or tap an answer"
    buttons = True  # inside the window, closed questions are answered by tapping

    def fits(self, text: str) -> bool:
        # WhatsApp bills no segments; Twilio takes a body of up to 1,600 characters.
        return len(text) <= MAX_BODY

    def can_reply_inline(self, bodies: Sequence[str]) -> bool:
        # Buttons and lists go by the Content API, which TwiML cannot name: a reply that
        # offers them goes through the outbox and the sender; words alone answer at once.
        return all(content.split(body)[1] is None for body in bodies)

    def render_body(self, prompts: Iterable[Prompt], org: str) -> str:
        found = content.render(list(prompts), self.fits, joined=True)
        return found[0] if found else ""

    def render_replies(self, prompts: Iterable[Prompt], org: str) -> list[str]:
        return content.render(list(prompts), self.fits)

    def read_request(self, form: Mapping[str, str]) -> tuple[str, str, str] | str:
        """As any Twilio message, except that a tapped button (`ButtonPayload`) or list row
        (`ListId`) of ours reads as typing what it stands for, the answer's number: stored and
        parsed as that, whatever words the button shows."""
        read = super().read_request(form)
        if isinstance(read, str):
            return read
        sid, sender, _ = read
        for field in ("ButtonPayload", "ListId"):
            typed = content.read_payload(clean_text(form.get(field, "")))
            if typed is not None:
                return sid, sender, typed
        return read

    def simulate_screen(
        self, prompts: Sequence[Prompt], org: str
    ) -> list[tuple[str, list[list[tuple[str, str]]]]]:
        screen = []
        for stored in self.render_replies(prompts, org):
            words, choices = content.split(stored)
            if choices is None:
                screen.append((words, []))
            else:
                rows = [[(a.title, content.ID_PREFIX + a.typed)] for a in choices.answers]
                screen.append((choices.body, rows))
        return screen

    def simulate_press(self, data: str) -> Inbound | None:
        typed = content.read_payload(data)
        return None if typed is None else plain_text.parse(typed)

    def normalise(self, raw: str) -> str:
        try:
            return whatsapp_address(raw)
        except InvalidPhoneNumber as exc:
            raise InvalidAddress(str(exc)) from None

    def read_settings(self, env: Mapping[str, str], settings: Settings) -> WhatsAppSettings:
        return own_settings.read(env, settings)

    def settings_of(self, settings: Settings) -> WhatsAppSettings:
        own = self.own_settings(settings)
        return own if isinstance(own, WhatsAppSettings) else WhatsAppSettings()

    def off_reason(self, settings: Settings) -> str | None:
        configured = self.settings_of(settings).configured
        if settings.twilio_enabled and configured:
            return None
        sender = "TWILIO_WHATSAPP_FROM (or TWILIO_WHATSAPP_MESSAGING_SERVICE_SID)"
        if settings.twilio_enabled:
            return f"set {sender}"
        return f"set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and {sender}"

    def provider_api(self, settings: Settings) -> str | None:
        return settings.twilio_api_base_url

    def sender(self, settings: Settings) -> Sender:
        # Here: the provider's client library loads only where we send.
        from bot.channels.whatsapp.sender import WhatsAppSender

        self.require_on(settings)
        return WhatsAppSender(settings, self.settings_of(settings))

    def check_options(self, options: Mapping[str, object]) -> list[str]:
        problems = []
        for key, value in options.items():
            if key in TEMPLATE_KINDS:
                if not isinstance(value, str) or not CONTENT_SID.fullmatch(value):
                    problems.append(
                        f"{key}: must be an approved template's Content SID (HX and 32 hex "
                        f"digits), got {str(value)[:40]!r}"
                    )
            elif key == "variables":
                found = variable_list(value)
                if isinstance(found, str):
                    problems.append(f"variables: {found}")
            else:
                allowed = ", ".join((*TEMPLATE_KINDS, "variables"))
                problems.append(f"unknown option {key!r} (WhatsApp takes {allowed})")
        return problems


WHATSAPP = WhatsAppChannel()
