"""What the channels reached through the charity's Twilio number share: the person's phone
number (E.164) is the address, and Twilio's settings switch them on."""

from __future__ import annotations

from bot.channels.base import Channel, InvalidAddress
from bot.config import Settings
from bot.phone_numbers import InvalidPhoneNumber, normalise_phone


def twilio_off_reason(settings: Settings) -> str | None:
    if settings.twilio_enabled and settings.twilio_from_number:
        return None
    return "set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER"


class PhoneNumberChannel(Channel):
    contact_field = "phone"
    contact_example = "07700 900123"
    max_address_length = 16  # E.164: a plus and at most 15 digits (short codes are shorter)

    def normalise(self, raw: str) -> str:
        try:
            return normalise_phone(raw)
        except InvalidPhoneNumber as exc:
            raise InvalidAddress(str(exc)) from None

    def off_reason(self, settings: Settings) -> str | None:
        return twilio_off_reason(settings)

    def provider_api(self, settings: Settings) -> str | None:
        return settings.twilio_api_base_url
