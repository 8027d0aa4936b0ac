"""What a sender offers the core, whoever its provider is: an `Outgoing` message in, `Handed`
out, and failures as the error tree (`bot.providers.errors`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Handed:
    """The provider took the message: its id there, and its first status."""

    sid: str
    status: str
    # What reaches the person is something else in the body's place (an approved template
    # outside a provider's reply window): what the body asks has not been asked. The core
    # marks the conversation so (`bot.sending.send`); most senders never set it.
    replaced: bool = False


@dataclass(frozen=True)
class Outgoing:
    """An outbox row as a sender needs it, with what a channel may choose its form by."""

    id: int
    address: str
    body: str
    kind: str  # `bot.storage.status.Kind`: reply, invitation, reminder, feedback, notice
    # When the person last wrote to us from this address (its contact point's
    # `last_inbound_at`): a provider's reply window (WhatsApp's 24 hours) is read from it.
    # None: never, or not known.
    last_inbound_at: datetime | None = None
    # The survey's options for this channel, as its script gives them (`channels: {<name>:
    # {...}}`); empty where the message belongs to no survey or the script gives none.
    options: Mapping[str, Any] = field(default_factory=dict)
    # What a provider's approved template may be filled with: `name` (as we greet the
    # person: "Margaret", or "there"), `org` (ORG_NAME) and `survey` (the survey's title).
    variables: Mapping[str, str] = field(default_factory=dict)


class Sender(Protocol):
    """The one place a channel's provider is called; errors come out as `bot.providers.errors` types."""

    @property
    def sender_key(self) -> str:
        """What SEND_RATE is counted per (one number, one bot)."""
        ...

    def send(self, message: Outgoing) -> Handed: ...

    def find(self, message: Outgoing, since: datetime) -> Handed | None:
        """The provider's record of this message if it was handed over after all (a worker
        died mid-call), else None: how a claimed row is settled before any resend."""
        ...


@runtime_checkable
class TidiesAfterPress(Protocol):
    """A sender whose messages carry buttons to tidy once one was pressed and taken (Telegram
    takes the keyboard off, so an answered question's buttons cannot be pressed again)."""

    def after_press(self, address: str, message_ref: str) -> bool:
        """False where the provider would not (too old, tidied already): the press was taken
        or refused all the same."""
        ...


@runtime_checkable
class ErasesAtProvider(Protocol):
    """A sender whose provider keeps something of a person's that erasure must reach (the
    recordings of spoken answers on calls): the refs are its channel's `held_at_provider`."""

    def erase_at_provider(self, refs: list[str]) -> int:
        """Delete them there; how many are gone (one already gone counts). Any other failure
        is raised, classified, so the job is tried again."""
        ...
