"""What a sender offers the core, whoever its provider is: an `Outgoing` message in, `Handed`
out, and failures as the error tree (`bot.providers.errors`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Handed:
    """The provider took the message: its id there, and its first status."""

    sid: str
    status: str


@dataclass(frozen=True)
class Outgoing:
    """An outbox row as a sender needs it."""

    id: int
    address: str
    body: str
    kind: str


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
