"""People with addresses, for tests: a panel row's address fields (`phone`, `telegram_chat_id`)
become contact points on every channel that reads them, as a panel import makes them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import channels
from bot.storage import contacts
from bot.storage.models import ContactPoint, Participant


def person(session: Session, **fields: Any) -> Participant:
    """A new participant (added to the session, flushed): any of the registry's contact
    fields (`phone="+447700900123"`, `telegram_chat_id=555`) become their contact points, in
    the registry's order after their own channel; everything else is a `Participant` column."""
    addresses = {f: fields.pop(f) for f in channels.CONTACT_FIELDS if f in fields}
    fields.setdefault("tags", [])
    found = Participant(**fields)
    session.add(found)
    order = [c.name for c in channels.all_channels()]
    points = [
        (channel.name, channel.normalise(str(value)))
        for field, value in addresses.items()
        if value is not None
        for channel in channels.for_field(field)
    ]
    for channel, address in sorted(
        points, key=lambda p: (p[0] != found.channel, order.index(p[0]))
    ):
        contacts.add(session, found, channel, address)
    session.flush()
    return found


def address(person: Participant, field: str) -> str | None:
    """The person's address named by a panel field (their first channel's that reads it)."""
    names = {c.name for c in channels.for_field(field)}
    return next((p.address for p in person.contact_points if p.channel in names), None)


def phone(person: Participant) -> str | None:
    return address(person, "phone")


def chat_id(person: Participant) -> int | None:
    found = address(person, "telegram_chat_id")
    return int(found) if found is not None else None


def at(session: Session, field: str, value: Any) -> Participant | None:
    """Who holds this address (a panel field's value, as written there)."""
    channel = channels.for_field(field)[0]
    return session.scalar(
        select(Participant)
        .join(ContactPoint, ContactPoint.participant_id == Participant.id)
        .where(
            ContactPoint.channel == channel.name,
            ContactPoint.address == channel.normalise(str(value)),
        )
    )
