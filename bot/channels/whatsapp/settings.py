"""WhatsApp's own settings, read beside the core's at start (`Channel.read_settings`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.config import ConfigError, Settings
from bot.phone_numbers import InvalidPhoneNumber, normalise_phone

PREFIX = "whatsapp:"
CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
# The words an approved template's numbered variables ({{1}}, {{2}}...) may be filled with, in
# the order a survey's `variables` option or WHATSAPP_TEMPLATE_VARIABLES lists them.
VARIABLES = ("name", "org", "survey")
# The messages that start contact, each of which may be sent as a template: the kinds a
# template option or setting is named after.
TEMPLATE_KINDS = ("invitation", "reminder", "feedback")


@dataclass(frozen=True)
class WhatsAppSettings:
    sender: str | None = None  # TWILIO_WHATSAPP_FROM, as `whatsapp:+447700900123`
    messaging_service_sid: str | None = None  # TWILIO_WHATSAPP_MESSAGING_SERVICE_SID
    templates: Mapping[str, str] = field(default_factory=dict)  # kind -> Content SID
    variables: tuple[str, ...] = ("name",)  # WHATSAPP_TEMPLATE_VARIABLES

    @property
    def configured(self) -> bool:
        return bool(self.sender or self.messaging_service_sid)


def whatsapp_address(raw: str) -> str:
    """`whatsapp:+447700900123` from a number written any way, with or without the prefix;
    raises `InvalidPhoneNumber`."""
    text = raw.strip()
    if text[: len(PREFIX)].lower() == PREFIX:
        text = text[len(PREFIX) :]
    return PREFIX + normalise_phone(text)


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value.strip() if value and value.strip() else None


def variable_list(raw: object) -> tuple[str, ...] | str:
    """The variables a template is filled with, or what is wrong with them."""
    names = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(names, list | tuple) or not names:
        return (
            f"must list the words that fill {{{{1}}}}, {{{{2}}}}...: some of {', '.join(VARIABLES)}"
        )
    found = tuple(str(n).strip() for n in names)
    unknown = [n for n in found if n not in VARIABLES]
    if unknown:
        return f"{unknown[0]!r} is not one of {', '.join(VARIABLES)}"
    return found


def read(env: Mapping[str, str], settings: Settings) -> WhatsAppSettings:
    sender = _text(env, "TWILIO_WHATSAPP_FROM")
    if sender is not None:
        try:
            sender = whatsapp_address(sender)
        except InvalidPhoneNumber as exc:
            raise ConfigError(
                f"TWILIO_WHATSAPP_FROM must be your WhatsApp sender's number, such as "
                f"whatsapp:+447700900123: {exc}"
            ) from None
    service = _text(env, "TWILIO_WHATSAPP_MESSAGING_SERVICE_SID")
    if service is not None and not SERVICE_SID.fullmatch(service):
        raise ConfigError(
            "TWILIO_WHATSAPP_MESSAGING_SERVICE_SID must be a Messaging Service SID: MG and "
            f"32 hex digits, got {service[:40]!r}"
        )
    if (sender or service) and not settings.twilio_enabled:
        raise ConfigError(
            "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set too: WhatsApp goes through Twilio"
        )
    templates = {}
    for kind in TEMPLATE_KINDS:
        name = f"WHATSAPP_{kind.upper()}_TEMPLATE"
        sid = _text(env, name)
        if sid is None:
            continue
        if not CONTENT_SID.fullmatch(sid):
            raise ConfigError(
                f"{name} must be an approved template's Content SID: HX and 32 hex digits, "
                f"got {sid[:40]!r}"
            )
        templates[kind] = sid
    variables = variable_list(_text(env, "WHATSAPP_TEMPLATE_VARIABLES") or "name")
    if isinstance(variables, str):
        raise ConfigError(f"WHATSAPP_TEMPLATE_VARIABLES {variables}")
    return WhatsAppSettings(sender, service, templates, variables)
