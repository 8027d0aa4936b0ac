"""What every channel plug-in provides, what the core may ask of one, and what one may ask of
the core.

A channel owns everything about one way of reaching people: the kind of address (an E.164
number, a Telegram chat id) and the field that names it in a panel import, reading what its
provider sends us, rendering the engine's prompts, the sender (the one place its provider is
called), what it can do and its policies (`retry_after`). The core asks these questions and
never names a channel.

The boundary runs one way: a channel never opens a database session or writes a row. What a
channel's request handlers need from the core (where a person is in their survey, the one
writer) is the `Core` below, which the core implements (`bot.conversations.gateway`) and the
endpoint hands in; `Received` and `Outcome` are what goes through it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar, Protocol

from bot import engine
from bot.config import Settings
from bot.engine import Ask, Inbound, Prompt
from bot.engine.keywords import ProviderKeyword
from bot.providers.base import Outgoing, Sender
from bot.providers.errors import ChannelOff
from bot.scripts.survey import Question, Survey


class InvalidAddress(ValueError):
    """Not an address this channel could ever reach; the message says why."""


class LinkError(Exception):
    """A link that joins a chat to a person cannot be made; the message says why."""


# --- what a channel hands the core, and gets back ---------------------------------------

# What a person sent, as the channel reads it; a channel whose keys mean different things at
# different questions (the keypad: is 0 an answer or "skip"?) passes a function of the question
# in front of the person, which the writer calls once it holds their conversation.
# A text the provider already took as a keyword (`ProviderKeyword`) is decided there too.
Interpret = Inbound | ProviderKeyword | Callable[[Question | None], Inbound]

PROCESSED, DUPLICATE, RETRYING = "processed", "duplicate", "retrying"


@dataclass(frozen=True)
class Received:
    """Something a person sent, as a channel read it from its provider."""

    channel: str
    text: str  # as it arrived; stored
    inbound: Interpret  # what the channel read it as
    address: str | None = None  # how the channel reaches them
    provider_id: str | None = None  # the provider's id for this delivery: the dedupe key
    participant_id: int | None = None  # for callers that know the person (the simulator)


@dataclass(frozen=True)
class Blocked:
    """The provider says, at once, that a person blocked us at this address (`blocked`) or
    let us in again: Telegram's `my_chat_member` when a person blocks or unblocks the bot. Not
    something they wrote: the endpoint hands it to the core
    (`bot.conversations.blocked_at_provider`), which marks the contact point."""

    channel: str
    address: str
    blocked: bool
    reason: str  # a few words for the contact point, the consent log and staff


@dataclass(frozen=True)
class Outcome:
    """What the one writer did with a `Received`."""

    status: str  # processed | duplicate | retrying
    prompts: tuple[Prompt, ...] = ()
    replies: tuple[str, ...] = ()  # the stored reply bodies, for the channel to send inline
    participant_id: int | None = None
    conversation_id: int | None = None
    inbound_id: int | None = None
    state: engine.State | None = None  # the conversation's state afterwards, if it has one


@dataclass(frozen=True)
class Place:
    """Where a person is in their survey, read without changing anything."""

    person_id: int
    opted_out: bool
    survey: Survey | None = None
    conversation_id: int | None = None
    question: Question | None = None
    context: Mapping[str, object] = field(default_factory=dict)

    def prompt(self) -> Ask | None:
        if self.survey is None or self.question is None:
            return None
        return engine.ask(self.survey, self.question, self.context)

    @property
    def at_start(self) -> bool:
        if self.survey is None or self.question is None:
            return False
        first = engine.next_question(self.survey, None, {})
        return first is not None and first.id == self.question.id


@dataclass(frozen=True)
class SentMessage:
    """One of our outbound messages, as a channel's request handler may read it."""

    id: int
    channel: str
    outbound: bool
    kind: str
    body: str
    participant_id: int | None


class Core(Protocol):
    """What a channel's request handlers may ask of the core: reads, and the one writer. A
    channel never opens a database session itself; the endpoint hands it one of these."""

    def place(
        self, channel: Channel, address: str | None = None, person_id: int | None = None
    ) -> Place | None:
        """The person at this address (or with this id) and their survey in progress."""
        ...

    def receive(self, received: Received, keywords: Mapping[str, Survey] | None = None) -> Outcome:
        """Apply what a person sent, through the one writer."""
        ...

    def sent_message(self, message_id: int) -> SentMessage | None: ...

    def transcribed(self, question_id: str, recording_url: str, words: str) -> None:
        """The provider's words for a spoken answer, stored by the writer."""
        ...


# --- sending -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """A channel's "try again after X" for new contact (invitations, reminders, feedback) that
    did not get through. Each further try is a new outbox row made by the core."""

    schedule: tuple[timedelta, ...]  # the wait before each further try; then not reached
    statuses: frozenset[str]  # the provider's final statuses worth another try ("busy")
    # A failed message with no error, or one classified a `TemporaryError`, is tried again
    # too; one that failed for good (a bad number) never is.
    passing_failures: bool = True
    tries: str = "tries"  # how the stored reason names them: "not reached after 4 calls"
    again: str = "tried again"  # "no-answer: called again as message 12"


class Channel:
    """A channel plug-in. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]  # stored in rows and used in the API: never changes
    title: ClassVar[str]  # how staff read it: "text message"
    # The field naming a person's address on this channel in a panel import (CSV column,
    # admin API, console): the outside contract's words. Channels that reach the same kind of
    # address share one ("phone": a number is texted and called), so one column gives a
    # person a contact point on each. The address itself is a `ContactPoint` row.
    contact_field: ClassVar[str]
    contact_example: ClassVar[str | None] = None  # how staff write one, for the API's docs
    # The longest address its provider sends us (`From`): anything longer is not from it, and
    # is kept as an error rather than run through a conversation. At most 64 (the column).
    max_address_length: ClassVar[int] = 64
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
    # Can a person we know join by tapping a link we give them (`bot.conversations.links`)?
    joins_by_link: ClassVar[bool] = False
    simulate_hint: ClassVar[str] = "type a reply"
    # The Flask blueprints that receive from this channel's provider, as "module:attribute".
    # They live in `webhooks/` (the core has no HTTP in it); the app registers what is listed.
    webhooks: ClassVar[tuple[str, ...]] = ()

    # --- addresses and people ---------------------------------------------------------

    def normalise(self, raw: str) -> str:
        """The stored form of an address as a person or a provider wrote it (text, at most
        `max_address_length`); raises `InvalidAddress`, saying why, for one it cannot reach."""
        raise NotImplementedError

    def unsuited(self, address: str) -> str | None:
        """None when what this channel sends can reach this address; else why not, in words
        that follow "have" (texts: "a landline, which cannot take texts"). The address is one
        it can send to and the provider may even take the message: staff are warned with a
        count when a campaign would use such addresses, and may choose another channel for
        those people (`bot.cycle.unsuited`). By default every address suits."""
        return None

    # --- what it can do now ------------------------------------------------------------

    def read_settings(self, env: Mapping[str, str], settings: Settings) -> object | None:
        """This channel's own settings, read from the environment beside the core's
        (`settings`), kept in `settings.channels[name]`; None: it has none. A bad or missing
        one raises `bot.config.ConfigError`, one line naming the variable, like every setting."""
        return None

    def own_settings(self, settings: Settings) -> object | None:
        """What `read_settings` read for these settings (None where it was not asked)."""
        return settings.channels.get(self.name)

    def off_reason(self, settings: Settings) -> str | None:
        """None when this channel can reach people with these settings, else what to set."""
        raise NotImplementedError

    def require_on(self, settings: Settings) -> None:
        """Raise `ChannelOff`, saying why and what to set, unless this channel can send."""
        why_not = self.off_reason(settings)
        if why_not is not None:
            raise ChannelOff(f"sending by {self.title} is off: {why_not}")

    def sender(self, settings: Settings) -> Sender:
        """The sender for these settings; raises `ChannelOff` when it cannot send."""
        raise NotImplementedError

    def link_prefix(self, settings: Settings) -> str:
        """Where `joins_by_link`: a link's text before its code (it may ask the provider).
        Raises `LinkError` saying what to set when it cannot be made."""
        raise LinkError(f"people cannot join by {self.title} with a link")

    def provider_api(self, settings: Settings) -> str | None:
        """The base URL of the provider's API this channel calls (None: no provider). Where it
        is not on this machine or a private network, the provider is on the internet and can
        only reach us at a public https `PUBLIC_BASE_URL` (`involve webhooks set` checks)."""
        return None

    def point_webhooks(self, settings: Settings) -> list[str]:
        """Tell the provider where to send what people write (`involve webhooks set`): what
        was set, a line each. Raises a `bot.providers.errors.SendError` when the provider refuses."""
        return []

    def held_at_provider(self, texts: Iterable[str]) -> list[str]:
        """What of a person's this channel's provider keeps, named in these stored answers
        (Twilio's call recordings, by id): erasure reads them first, then has the channel's
        sender delete them there (`ErasesAtProvider`). By default nothing."""
        return []

    def retry_policy(self, settings: Settings) -> RetryPolicy | None:
        """Whether, and when, the core tries again a message of new contact that this channel
        did not get through (an unanswered call); None: never. Declared as data: the core's
        status writer (`bot.sending.delivery`) acts on it."""
        return None

    def check_options(self, options: Mapping[str, object]) -> list[str]:
        """What is wrong with a survey's options for this channel (`channels: {<name>: ...}`
        in its script), a line each; `involve lint` reports them. By default it takes none."""
        return [f"unknown option {key!r} ({self.title} takes none)" for key in options]

    def launch_problem(
        self,
        options: Mapping[str, object],
        settings: Settings,
        last_wrote: Sequence[datetime | None],
        at: datetime,
    ) -> str | None:
        """What would make a launch's invitations on this channel fail for good, though the
        channel is on, and what to set; None: nothing. `options` are the survey's for this
        channel, `last_wrote` when each person it would invite last wrote to us on the
        contact point it would use (None: never), `at` when the invitations are due. A
        launch is refused with it (`bot.cycle.campaigns`)."""
        return None

    def replaces_body(self, message: Outgoing, settings: Settings, now: datetime) -> bool:
        """Would this message, handed to the provider `now`, reach the person as something
        else in its body's place (WhatsApp's approved template outside its 24-hour window),
        so that the question in it is not shown? Asked just before it is handed over, so that
        the core marks the conversation before any reply can come; the sender's
        `Handed.replaced` says what did happen. By default: never."""
        return False

    # --- words -------------------------------------------------------------------------

    def answers_offered(self, question: Question) -> int:
        """How many answers this channel offers one by one for this question (a key or a
        button each), to hold against `max_choices`."""
        return len(question.choices)

    def render_body(self, prompts: Iterable[Prompt], org: str) -> str:
        """What an outbound message says, as stored in the outbox."""
        raise NotImplementedError

    def can_reply_inline(self, bodies: Sequence[str]) -> bool:
        """May these rendered replies go in the webhook's answer? A channel whose replies are
        inline may still need its sender for some (WhatsApp's buttons are Content API
        messages, which TwiML cannot carry): those go through the outbox instead."""
        return self.replies_inline

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

    def simulate_screen(
        self, prompts: Sequence[Prompt], org: str
    ) -> list[tuple[str, list[list[tuple[str, str]]]]]:
        """Each message as the console's simulator shows it: its text, and its buttons as rows
        of (label, what a tap sends)."""
        return [(body, []) for body in self.render_replies(prompts, org)]

    def simulate_press(self, data: str) -> Inbound | None:
        """What tapping a button that sends `data` means (None: not one of ours)."""
        return None

    def simulate_call(
        self,
        core: Core,
        settings: Settings,
        person_id: int,
        call: tuple[str, str] | None = None,
        typed: str = "",
    ) -> tuple[str, str]:
        """A keypad channel's call in the console's simulator, as (call id, TwiML turn): the
        first turn, or, given the call so far, the turn after the caller keyed or said
        `typed` (empty: silence)."""
        raise NotImplementedError

    def simulate_play(
        self,
        core: Core,
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
