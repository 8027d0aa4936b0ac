"""People a campaign would reach at an address that cannot take its channel (a landline, for
texts), and another way to reach them that staff may choose instead.

Each channel says which of its addresses it does not suit (`Channel.unsuited`); nothing here
names a channel or an address field. Staff are told, when they create a campaign and when they
launch it, how many of its people would be invited at such an address, and which other
channel could reach how many of them: one that can send now, can carry the survey and may
contact people first, where they have a usable address it suits (a call to the same number).
That is the offer.

Taking the offer (`move_unsuited_to` at launch) invites those people on that channel, in the
same campaign: one set of answers, one export, one reminder, one invitation each. A second
campaign just for them would split the results, and the gap between invitations
(`bot.cycle.frequency`) would leave them out of it, the first campaign having just invited
them.

Without the offer they are invited as they are: staff decided. Many UK landlines read a text
aloud (BT's text to speech); where one cannot, Twilio fails it (30006), which marks that
contact point unreachable for texts (a campaign left to each person's channel calls the number
next time), and a campaign with `fallback_after_hours` invites them on their next contact
point at once.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bot import channels
from bot.config import Settings
from bot.scripts.survey import Survey
from bot.storage import contacts


@dataclass(frozen=True)
class Offer:
    """Another channel that can reach `people` of them, at an address it suits."""

    channel: str
    title: str
    people: int

    def as_json(self) -> dict[str, Any]:
        return {"channel": self.channel, "title": self.title, "people": self.people}


@dataclass(frozen=True)
class Unsuited:
    """`people` of the `of` people to invite on `channel` have an address it does not suit."""

    channel: str
    title: str
    reason: str  # the channel's words, after "have": "a landline, which cannot take texts"
    people: int
    of: int
    offer: Offer | None  # the launch's own choice where it made one, else the best there is
    moved: int = 0  # invited on the offer's channel instead, by staff's choice at launch

    def as_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "title": self.title,
            "reason": self.reason,
            "people": self.people,
            "of": self.of,
            "offer": self.offer.as_json() if self.offer else None,
            "moved": self.moved,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Unsuited:
        """Back from `as_json`: the CLI and the console word what a staff verb answered."""
        offer = data.get("offer")
        return cls(
            channel=data["channel"],
            title=data["title"],
            reason=data["reason"],
            people=data["people"],
            of=data["of"],
            offer=Offer(offer["channel"], offer["title"], offer["people"]) if offer else None,
            moved=data.get("moved", 0),
        )

    def sentence(self) -> str:
        """ "12 of the 40 people to invite by text message have a landline, which ..." """
        if self.people == self.of == 1:
            who, verb = "The 1 person", "has"
        elif self.people == self.of:
            who, verb = f"All {self.of} people", "have"
        else:
            who = f"{self.people} of the {self.of} people"
            verb = "has" if self.people == 1 else "have"
        return f"{who} to invite by {self.title} {verb} {self.reason}"

    def offer_sentence(self) -> str:
        """What the offer could do, or that there is none."""
        if self.offer is None:
            return "no other way to reach them can take this survey now"
        how_many = (
            "all of them" if self.offer.people == self.people else f"{self.offer.people} of them"
        )
        return f"{how_many} can be reached by {self.offer.title} instead"

    def moved_sentence(self) -> str:
        """What the launch did with them."""
        if self.moved and self.offer is not None:
            rest = self.people - self.moved
            left = f"; the other {rest} by {self.title}" if rest else ""
            verb = "is" if self.moved == 1 else "are"
            return f"{self.moved} of them {verb} invited by {self.offer.title} instead{left}"
        return f"they are invited by {self.title} all the same"


def moves(person: Any, choice: str, move_to: str | None) -> bool:
    """Does staff's choice `move_to` take this person off `choice`: their address there is
    unsuited and they have a usable one on `move_to` that suits it. `person` has
    `contact_points` (rows with `channel`, `address` and the usable state)."""
    if move_to is None or move_to == choice or move_to not in channels.REGISTRY:
        return False
    here = contacts.first_usable(person.contact_points, choice)
    if here is None or channels.get(choice).unsuited(here) is None:
        return False
    return _suits(person, channels.get(move_to))


def channel_for(person: Any, choice: str | None, move_to: str | None) -> str | None:
    """The channel to invite this person on: `choice`, or `move_to` where it `moves` them."""
    if choice is None:
        return None
    return move_to if moves(person, choice, move_to) else choice


def _suits(person: Any, channel: channels.Channel) -> bool:
    there = contacts.first_usable(person.contact_points, channel.name)
    return there is not None and channel.unsuited(there) is None


def alternatives(survey: Survey, settings: Settings) -> list[channels.Channel]:
    """The channels an offer may name: able to send now, to contact people first, and to
    carry every question of this survey."""
    able = channels.able_to_carry(survey)
    return [
        c
        for c in channels.all_channels()
        if c.can_start and c.name in able and c.off_reason(settings) is None
    ]


def tally(
    people: Iterable[Any],
    campaign_channel: str | None,
    survey: Survey,
    settings: Settings,
    move_to: str | None = None,
) -> list[Unsuited]:
    """For the people a campaign would invite (not opted out; `channel` and `contact_points`
    each), who would be invited at an address their channel does not suit, per channel and
    reason, in the registry's order. With `move_to`, the offer is that channel and says how
    many it takes; else the alternative that reaches most of them (the registry's order
    breaks a tie)."""
    others = alternatives(survey, settings)
    to_invite: Counter[str] = Counter()
    unsuited: Counter[tuple[str, str]] = Counter()
    reachable: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for person in people:
        choice = campaign_channel or channels.default_for(person)
        if choice is None:
            continue
        here = contacts.first_usable(person.contact_points, choice)
        if here is None:
            continue  # skipped at the fan-out, and said there
        to_invite[choice] += 1
        reason = channels.get(choice).unsuited(here)
        if reason is None:
            continue
        key = (choice, reason)
        unsuited[key] += 1
        for other in others:
            if other.name != choice and _suits(person, other):
                reachable[key][other.name] += 1
    order = {name: i for i, name in enumerate(channels.NAMES)}
    found = []
    for (name, reason), count in sorted(unsuited.items(), key=lambda kv: order[kv[0][0]]):
        counts = reachable[(name, reason)]
        if move_to is not None:
            best = move_to if counts[move_to] else None
        else:
            ranked = sorted(counts, key=lambda other: (-counts[other], order[other]))
            best = ranked[0] if ranked else None
        offer = Offer(best, channels.get(best).title, counts[best]) if best else None
        found.append(
            Unsuited(
                channel=name,
                title=channels.get(name).title,
                reason=reason,
                people=count,
                of=to_invite[name],
                offer=offer,
                moved=offer.people if offer is not None and move_to is not None else 0,
            )
        )
    return found
