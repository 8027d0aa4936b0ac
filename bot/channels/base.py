"""What every channel plug-in provides, and what the core may ask of one.

A channel owns everything about one way of reaching people: the kind of address (an E.164
number, a Telegram chat id), where that address is kept on a participant, reading what its
provider sends us, rendering the engine's prompts, the sender (the one place its provider is
called) and what it can do. The core asks these questions and never names a channel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from bot.engine import Inbound, Prompt

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from bot.config import Settings
    from bot.scripts.survey import Question
    from bot.storage.db import Database
    from bot.storage.models import Message, Participant


class InvalidAddress(ValueError):
    """Not an address this channel could ever reach; the message says why."""


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
    """The one place a channel's provider is called; errors come out as `bot.sending.errors` types."""

    @property
    def sender_key(self) -> str:
        """What SEND_RATE is counted per (one number, one bot)."""
        ...

    def send(self, message: Outgoing) -> Handed: ...

    def find(self, message: Outgoing, since: datetime) -> Handed | None:
        """The provider's record of this message if it was handed over after all (a worker
        died mid-call), else None: how a claimed row is settled before any resend."""
        ...


class Channel:
    """A channel plug-in. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]  # stored in rows and used in the API: never changes
    title: ClassVar[str]  # how staff read it: "text message"
    address_field: ClassVar[str]  # the Participant attribute that holds the address
    can_start: ClassVar[bool] = True  # may we contact people first (invitations, feedback)?
    buttons: ClassVar[bool] = False  # can a question be answered by tapping?
    # Is it a call answered on a phone keypad? The console's simulator then shows keys and
    # follows the call's own turns (`simulate_play` does the same in the terminal).
    keypad: ClassVar[bool] = False
    # The longest list of answers it can offer (a keypad has keys 1 to 9); None: no limit.
    max_choices: ClassVar[int | None] = None
    # Are replies carried in the provider's webhook answer (TwiML)? If not, the writer puts
    # them in the outbox and the channel's sender delivers them (Telegram's Bot API calls).
    replies_inline: ClassVar[bool] = True
    # Can an answer written after the person's request has ended still reach them (a text, a
    # chat message)? A call cannot: ringing someone back, perhaps at night, to say the next
    # question would be worse than waiting. They hear it when they next call or are called.
    answers_later: ClassVar[bool] = True
    # Do the provider's ids for messages we send carry the person's address (Telegram's are
    # "<chat id>:<message id>")? Then erasure removes them with the rest.
    provider_ids_name_the_person: ClassVar[bool] = False
    segment_counted: ClassVar[bool] = False  # is length billed in SMS segments?
    simulate_hint: ClassVar[str] = "type a reply"
    # The Flask blueprints that receive from this channel's provider, as "module:attribute".
    # They live in `webhooks/` (the core has no HTTP in it); the app registers what is listed.
    webhooks: ClassVar[tuple[str, ...]] = ()

    # --- addresses and people ---------------------------------------------------------

    def normalise(self, raw: str) -> str:
        """The stored form of an address as a person or a provider wrote it."""
        raise NotImplementedError

    def address_of(self, person: Participant) -> str | None:
        value = getattr(person, self.address_field)
        return None if value is None else str(value)

    def column_value(self, address: str) -> Any:
        """The address as its database column holds it."""
        return address

    # --- what it can do now ------------------------------------------------------------

    def off_reason(self, settings: Settings) -> str | None:
        """None when this channel can reach people with these settings, else what to set."""
        raise NotImplementedError

    def require_on(self, settings: Settings) -> None:
        """Raise `ChannelOff`, saying why and what to set, unless this channel can send."""
        from bot.sending.errors import ChannelOff

        why_not = self.off_reason(settings)
        if why_not is not None:
            raise ChannelOff(f"sending by {self.title} is off: {why_not}")

    def sender(self, settings: Settings) -> Sender:
        """The sender for these settings; raises `ChannelOff` when it cannot send."""
        raise NotImplementedError

    def point_webhooks(self, settings: Settings) -> list[str]:
        """Tell the provider where to send what people write (`involve webhooks set`): what
        was set, a line each. Raises a `bot.sending.errors.SendError` when the provider refuses."""
        return []

    def after_status(
        self, session: Session, message: Message, raw_status: str, settings: Settings
    ) -> None:
        """The provider's status callback just moved this outbound message on (in `session`,
        its row locked): anything this channel does about it, such as calling again after no
        answer. Most channels do nothing."""

    # --- words -------------------------------------------------------------------------

    def render_body(self, prompts: Iterable[Prompt], org: str) -> str:
        """What an outbound message says, as stored in the outbox."""
        raise NotImplementedError

    def render_replies(self, prompts: Iterable[Prompt], org: str) -> list[str]:
        """The messages that answer a person inline, each stored as a reply."""
        body = self.render_body(prompts, org)
        return [body] if body else []

    def parse_stored(self, body: str) -> Inbound:
        """What a stored inbound message meant, to handle it again after a failure."""
        raise NotImplementedError

    # --- the simulator -----------------------------------------------------------------

    def simulate_show(self, prompts: Sequence[Prompt], org: str) -> list[str]:
        raise NotImplementedError

    def simulate_parse(self, typed: str, question: Question | None) -> Inbound:
        return self.parse_stored(typed)

    def simulate_play(
        self,
        database: Database,
        settings: Settings,
        participant_id: int,
        read: Callable[[], str | None],
        write: Callable[[str], None],
    ) -> bool:
        """Play the person's survey in progress through this channel's own request path, where
        it has one (a call's TwiML turns); False to use the simple prompt-and-reply loop."""
        return False

    def __repr__(self) -> str:
        return f"<channel {self.name}>"
