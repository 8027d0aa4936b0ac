"""A person's contact points (`ContactPoint`): which of their addresses to use, and their state.

Channels are named here only as the strings stored in rows (the registry's names); nothing
here knows what any channel is, so every part of the code may use it, a channel's own
package included. Nothing here commits; the caller's unit of work does, holding the person's
lock where a person's rows change.

"Usable" is the one rule for sending: not stopped at the provider on that channel
(`opted_out_at`) and not known to be unreachable (`unreachable_at`). The person's own STOP,
which holds on every channel, is `Participant.opted_out` and is checked where it always was.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.storage.models import ContactPoint, Participant, utcnow

# How often, at most, the writer moves `last_inbound_at` on while someone keeps writing on
# one contact point: the first message of a conversation writes it, the rest of a survey
# answered within minutes costs nothing. It is never later than the truth, so a reply window
# read from it (WhatsApp's 24 hours) closes at worst this much early, never late.
INBOUND_PRECISION = timedelta(minutes=5)

_points = ContactPoint.__table__


def is_usable(point: Any) -> bool:
    return point.opted_out_at is None and point.unreachable_at is None


def first_usable(points: Iterable[Any], channel: str) -> str | None:
    """The address of the first usable contact point on `channel`, in the person's order."""
    for point in points:
        if point.channel == channel and is_usable(point):
            return str(point.address)
    return None


def address_for(session: Session, person: Any, channel: str) -> str | None:
    """Where a message to this person on `channel` goes: their first usable contact point
    there. `person` is a `Participant` (its loaded contact points are used) or a row with an
    `id` (one indexed read)."""
    if isinstance(person, Participant):
        return first_usable(person.contact_points, channel)
    return session.scalar(
        select(ContactPoint.address)
        .where(
            ContactPoint.participant_id == person.id,
            ContactPoint.channel == channel,
            ContactPoint.opted_out_at.is_(None),
            ContactPoint.unreachable_at.is_(None),
        )
        .order_by(ContactPoint.position, ContactPoint.id)
        .limit(1)
    )


def why_not_usable(points: Iterable[Any], channel: str) -> str | None:
    """Why none of these contact points on `channel` can be used (the first one's reason),
    or None when one can, or there are none."""
    reasons = []
    for point in points:
        if point.channel != channel:
            continue
        if is_usable(point):
            return None
        if point.opted_out_at is not None:
            reasons.append(f"opted out there ({point.opted_out_reason or 'by the provider'})")
        else:
            reasons.append(f"unreachable ({point.unreachable_reason or 'by the provider'})")
    return reasons[0] if reasons else None


def holder(session: Session, channel: str, address: str) -> ContactPoint | None:
    """The contact point with this address on this channel, whoever holds it (no lock)."""
    return session.scalar(
        select(ContactPoint).where(ContactPoint.channel == channel, ContactPoint.address == address)
    )


def add(
    session: Session,
    person: Participant,
    channel: str,
    address: str,
    now: datetime | None = None,
    *,
    first: bool = False,
    verified: bool = False,
) -> ContactPoint:
    """Give the person this address on this channel, after their others (or before them,
    `first`); an address they hold already keeps its state and place (unless `first`)."""
    now = now or utcnow()
    points = person.contact_points
    for point in points:
        if point.channel == channel and point.address == address:
            found = point
            break
    else:
        found = ContactPoint(
            channel=channel, address=address, created_at=now, updated_at=now, position=0
        )
        points.append(found)
    if verified and found.verified_at is None:
        found.verified_at = now
    if first and points[0] is not found:
        points.remove(found)
        points.insert(0, found)
    renumber(points)
    return found


def renumber(points: list[ContactPoint]) -> None:
    """Positions 0, 1, 2... in the list's order (only rows whose place changed are written)."""
    for position, point in enumerate(points):
        if point.position != position:
            point.position = position


def replace(person: Participant, channel: str, address: str, now: datetime | None = None) -> bool:
    """Make `address` the person's one address on this channel (a panel row's phone number is
    the one texts and calls go to): kept as it is if they hold it already, with its state;
    else a new contact point takes the old one's place in their order (at the end if they
    had none there), with no state yet. True if anything changed."""
    points = person.contact_points
    mine = [p for p in points if p.channel == channel]
    if [p.address for p in mine] == [address]:
        return False
    kept = next((p for p in mine if p.address == address), None)
    if kept is None:
        now = now or utcnow()
        kept = ContactPoint(
            channel=channel, address=address, created_at=now, updated_at=now, position=0
        )
        points.insert(points.index(mine[0]) if mine else len(points), kept)
    for old in mine:
        if old is not kept:
            points.remove(old)  # deleted with the person's flush (delete-orphan)
    renumber(points)
    return True


def mark(
    session: Session,
    participant_id: int,
    channel: str,
    address: str,
    *,
    opted_out: str | None = None,
    unreachable: str | None = None,
    now: datetime | None = None,
) -> bool:
    """What a provider said about this address for good: stopped there (`opted_out`, the
    reason) or never reachable (`unreachable`). Only the person's own contact point; the
    caller holds their lock. True if a row changed."""
    now = now or utcnow()
    values: dict[str, Any] = {"updated_at": now}
    if opted_out is not None:
        values.update(opted_out_at=now, opted_out_reason=opted_out[:200])
    if unreachable is not None:
        values.update(unreachable_at=now, unreachable_reason=unreachable[:200])
    changed = session.execute(
        update(_points)
        .where(
            _points.c.participant_id == participant_id,
            _points.c.channel == channel,
            _points.c.address == address,
        )
        .values(**values)
    ).rowcount
    return bool(changed)


def stop(
    session: Session,
    participant_id: int,
    channel: str,
    address: str,
    reason: str,
    now: datetime | None = None,
) -> bool:
    """The person stopped us at this contact point only (they blocked us on that channel):
    marked opted out there with the reason, unless it already was (a provider says so twice).
    The caller holds their lock. True if it changed."""
    now = now or utcnow()
    changed = session.execute(
        update(_points)
        .where(
            _points.c.participant_id == participant_id,
            _points.c.channel == channel,
            _points.c.address == address,
            _points.c.opted_out_at.is_(None),
        )
        .values(opted_out_at=now, opted_out_reason=reason[:200], updated_at=now)
    ).rowcount
    return bool(changed)


def described(point: Any, channel_title: str) -> str:
    """A contact point's state in plain words for staff and for the person's own copy of their
    data: "usable", "stopped on Telegram: bot blocked (Telegram 403)", "cannot be reached on
    text message: invalid number (Twilio 21211)". Never the address."""
    if point.opted_out_at is not None:
        return f"stopped on {channel_title}: {point.opted_out_reason or 'by the provider'}"
    if point.unreachable_at is not None:
        reason = point.unreachable_reason or "said the provider"
        return f"cannot be reached on {channel_title}: {reason}"
    return "usable"


def opted_in(session: Session, participant_id: int, channel: str, address: str) -> bool:
    """They said START on this contact point: whatever stopped it at the provider is lifted
    there too (Twilio lifts its block when a person texts START; an unblocked bot hears
    /start). True if it had been marked opted out."""
    changed = session.execute(
        update(_points)
        .where(
            _points.c.participant_id == participant_id,
            _points.c.channel == channel,
            _points.c.address == address,
            _points.c.opted_out_at.is_not(None),
        )
        .values(opted_out_at=None, opted_out_reason=None, updated_at=utcnow())
    ).rowcount
    return bool(changed)
