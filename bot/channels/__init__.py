"""The channel registry: every way of reaching people, each a plug-in package beside this file.

Adding a channel is a new package here (see `base.Channel`) plus one line in `_PLUGINS`. The
rest of the code asks the registry — which channels exist, which can send now, how a person is
addressed — and never names a channel itself.
"""

from __future__ import annotations

from bot.channels.base import Channel, InvalidAddress
from bot.channels.sms import SMS
from bot.channels.telegram import TELEGRAM
from bot.channels.voice import VOICE
from bot.config import Settings
from bot.providers.base import Handed, Outgoing, Sender
from bot.scripts.survey import Survey
from bot.storage.models import Participant

_PLUGINS: tuple[Channel, ...] = (SMS, VOICE, TELEGRAM)
REGISTRY: dict[str, Channel] = {channel.name: channel for channel in _PLUGINS}
NAMES: tuple[str, ...] = tuple(REGISTRY)
ADDRESS_FIELDS: tuple[str, ...] = tuple(dict.fromkeys(c.address_field for c in _PLUGINS))


class UnknownChannel(ValueError):
    pass


def get(name: str) -> Channel:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownChannel(f"unknown channel {name!r} (there are: {', '.join(NAMES)})") from None


def all_channels() -> tuple[Channel, ...]:
    return _PLUGINS


def states(settings: Settings) -> dict[str, str]:
    """Each channel: "on", or "off: " and why, or what to set."""
    return {c.name: f"off: {why}" if (why := c.off_reason(settings)) else "on" for c in _PLUGINS}


def able_to_carry(survey: Survey) -> tuple[str, ...]:
    """The names of the channels that can carry every question of this survey."""
    return tuple(c.name for c in _PLUGINS if survey.crowded(c) is None)


def default_for(person: Participant) -> str | None:
    """A person's own channel, else the first whose address we hold."""
    if person.channel in REGISTRY:
        return person.channel
    for channel in _PLUGINS:
        if channel.address_of(person) is not None:
            return channel.name
    return None


__all__ = [
    "ADDRESS_FIELDS",
    "NAMES",
    "REGISTRY",
    "Channel",
    "Handed",
    "InvalidAddress",
    "Outgoing",
    "Sender",
    "UnknownChannel",
    "able_to_carry",
    "all_channels",
    "default_for",
    "get",
    "states",
]
