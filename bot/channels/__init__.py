"""The channel registry: every way of reaching people, each a plug-in package beside this file.

Adding a channel is a new package here (see `base.Channel`) plus one line in `_PLUGINS`. The
rest of the code asks the registry — which channels exist, which can send now, which field of a
panel import names an address on each — and never names a channel itself. A person's addresses
are their contact points (`bot.storage.contacts`), one row per channel.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bot import config
from bot.channels.base import Channel, InvalidAddress
from bot.channels.sms import SMS
from bot.channels.telegram import TELEGRAM
from bot.channels.voice import VOICE
from bot.channels.whatsapp import WHATSAPP
from bot.config import Settings
from bot.providers.base import Handed, Outgoing, Sender
from bot.scripts.survey import Survey
from bot.storage.contacts import is_usable

_PLUGINS: tuple[Channel, ...] = (SMS, VOICE, TELEGRAM, WHATSAPP)
REGISTRY: dict[str, Channel] = {channel.name: channel for channel in _PLUGINS}
NAMES: tuple[str, ...] = tuple(REGISTRY)
# The fields of a panel import that name addresses, once each, in the registry's order.
CONTACT_FIELDS: tuple[str, ...] = tuple(dict.fromkeys(c.contact_field for c in _PLUGINS))


class UnknownChannel(ValueError):
    pass


def get(name: str) -> Channel:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownChannel(f"unknown channel {name!r} (there are: {', '.join(NAMES)})") from None


def all_channels() -> tuple[Channel, ...]:
    return _PLUGINS


def load_settings(
    env: Mapping[str, str] | None = None, instance_path: Path | None = None
) -> Settings:
    """The settings (`bot.config.load_settings`) with each channel's own read from the same
    environment: a bad one fails at start, in one line naming the variable."""
    env = os.environ if env is None else env
    return with_channel_settings(config.load_settings(env, instance_path), env)


def with_channel_settings(settings: Settings, env: Mapping[str, str]) -> Settings:
    own = {c.name: c.read_settings(env, settings) for c in _PLUGINS}
    return settings.with_overrides(channels={k: v for k, v in own.items() if v is not None})


def states(settings: Settings) -> dict[str, str]:
    """Each channel: "on", or "off: " and why, or what to set."""
    return {c.name: f"off: {why}" if (why := c.off_reason(settings)) else "on" for c in _PLUGINS}


def able_to_carry(survey: Survey) -> tuple[str, ...]:
    """The names of the channels that can carry every question of this survey."""
    return tuple(c.name for c in _PLUGINS if survey.crowded(c) is None)


def option_problems(survey: Survey) -> list[str]:
    """What is wrong with a survey's per-channel options (`channels:` in its script), as the
    channel each key names says; a key naming no channel is wrong too."""
    problems = []
    for name, options in survey.channel_options.items():
        if name not in REGISTRY:
            problems.append(f"channels.{name}: no such channel (there are: {', '.join(NAMES)})")
            continue
        problems += [f"channels.{name}: {line}" for line in REGISTRY[name].check_options(options)]
    return problems


def served_by(module: str) -> tuple[Channel, ...]:
    """The channels whose providers post to the endpoints in this module (their `webhooks`
    name it): a thin endpoint asks, so it never spells a channel out."""
    return tuple(c for c in _PLUGINS if any(w.split(":", 1)[0] == module for w in c.webhooks))


def serving(module: str) -> Channel:
    """The one channel an endpoint module serves (see `served_by`)."""
    found = served_by(module)
    if len(found) != 1:
        raise UnknownChannel(f"{len(found)} channels list {module} among their webhooks")
    return found[0]


def for_field(field: str) -> tuple[Channel, ...]:
    """The channels whose addresses this import field names ("phone": texts and calls)."""
    return tuple(c for c in _PLUGINS if c.contact_field == field)


def default_for(person: Any) -> str | None:
    """The channel to reach a person on when a campaign leaves it to them: their own, while
    they have a contact point there we may use; else that of their first usable contact
    point, in their order; else their own or their first one's, so that what stops it is
    said. `person` has `channel` and `contact_points` (a `Participant`, or the same two read
    in bulk)."""
    points = [p for p in person.contact_points if p.channel in REGISTRY]
    usable = [p for p in points if is_usable(p)]
    if person.channel in REGISTRY and (
        any(p.channel == person.channel for p in usable) or not usable
    ):
        return str(person.channel)
    for point in usable or points:
        return str(point.channel)
    return None


__all__ = [
    "CONTACT_FIELDS",
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
    "for_field",
    "get",
    "load_settings",
    "option_problems",
    "served_by",
    "serving",
    "states",
    "with_channel_settings",
]
