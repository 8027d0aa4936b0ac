"""Deep links that join a chat to a person we already know (Telegram's `t.me/<bot>?start=`).

Staff issue a link per person (on paper in a panel mail-out, or by email); tapping it sends
`/start <code>` from the person's chat, and the chat becomes theirs. A code is 128 random bits,
single-use and expires; only its SHA-256 is stored. A channel that people join this way says so
(`Channel.link_prefix`); redeeming a code is a write to the person, so it is here in the core,
with the person's lock first.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import channels, conversations
from bot.channels.base import Channel, LinkError
from bot.config import Settings
from bot.conversations import outbox
from bot.storage import contacts
from bot.storage.db import Database
from bot.storage.models import ContactPoint, Message, Participant, TelegramLink, utcnow
from bot.storage.status import Direction, Kind

DEFAULT_DAYS = 28  # long enough for a letter to arrive and be acted on
MAX_DAYS = 365

LINKED, SAME, USED, EXPIRED, UNKNOWN, DUPLICATE = (
    "linked",
    "already linked",
    "used",
    "expired",
    "unknown",
    "duplicate",
)
USED_TEXT = (
    "This link has already been used. If it was not you, or you need a new one, "
    "please contact {org}. Send /stop if you do not want messages from us."
)
EXPIRED_TEXT = (
    "This link has expired. Please ask {org} for a new one. "
    "Send /stop if you do not want messages from us."
)


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


@dataclass(frozen=True)
class Issued:
    participant_id: int
    code: str
    expires_at: datetime

    def link(self, prefix: str) -> str:
        return prefix + self.code


def issue(
    session: Session, person: Participant, days: float = DEFAULT_DAYS, now: datetime | None = None
) -> Issued:
    """A new code for this person (earlier ones stay valid until used or expired)."""
    if person.erased_at is not None:
        raise LinkError("this person's data was erased")
    if not 0 < days <= MAX_DAYS:
        raise LinkError(f"days must be more than 0 and at most {MAX_DAYS}")
    now = now or utcnow()
    code = secrets.token_urlsafe(16)  # 22 characters, as /start payloads allow
    expires = now + timedelta(days=days)
    session.add(
        TelegramLink(
            code_hash=code_hash(code), participant_id=person.id, created_at=now, expires_at=expires
        )
    )
    session.flush()
    return Issued(person.id, code, expires)


def joining_channel() -> Channel:
    """The channel people join by a link (the first that offers links)."""
    for channel in channels.all_channels():
        if channel.joins_by_link:
            return channel
    raise LinkError("no channel joins people by a link")


def link_prefix(settings: Settings) -> str:
    """The start of every link: the channel's, for these settings (it may ask its provider)."""
    return joining_channel().link_prefix(settings)


def redeem(
    database: Database,
    settings: Settings,
    channel: Channel,
    chat_id: int,
    code: str,
    provider_id: str,
    now: datetime | None = None,
) -> str:
    """Join this chat to the person the code was issued for; what happened, in a word.

    A used or expired code is answered with a short note (through the outbox); an unknown one
    is left to the caller, since `/start <word>` may be a survey's keyword instead.
    """
    now = now or utcnow()
    with database.session() as session:
        seen = session.scalar(
            select(Message.id).where(
                Message.channel == channel.name,
                Message.direction == Direction.IN,
                Message.provider_id == provider_id,
            )
        )
        if seen is not None:
            return DUPLICATE  # Telegram delivering again: everything was done the first time
        found = session.scalar(
            select(TelegramLink.participant_id).where(TelegramLink.code_hash == code_hash(code))
        )
        if found is None:
            return UNKNOWN
        # The person's lock first, as every writer of their data takes it, then the code's.
        person = conversations.lock_person(session, found)
        link = session.scalar(
            select(TelegramLink).where(TelegramLink.code_hash == code_hash(code)).with_for_update()
        )
        if person is None or link is None or person.erased_at is not None:
            return UNKNOWN
        address = channel.normalise(str(chat_id))
        if link.used_at is not None:
            if any(
                p.channel == channel.name and p.address == address for p in person.contact_points
            ):
                return SAME  # they tapped their link again: nothing to do, nothing to say
            _note(session, settings, channel, chat_id, USED_TEXT)
            return USED
        if link.expires_at <= now:
            _note(session, settings, channel, chat_id, EXPIRED_TEXT)
            return EXPIRED
        held = contacts.holder(session, channel.name, address)
        if held is not None and held.participant_id != person.id:
            # The chat wrote to us before it was linked (a plain /start): it was a stranger,
            # and is this person now. What the stranger sent stays on its own record. Their
            # lock (taken after this person's: a stranger has no other writer waiting on it).
            conversations.lock_person(session, held.participant_id)
            session.delete(held)
            session.flush()
        # They chose it: their chat comes first in their order, and invitations and feedback
        # go there.
        contacts.add(session, person, channel.name, address, now, first=True, verified=True)
        person.channel = channel.name
        link.used_at = now
        return LINKED


def _note(session: Session, settings: Settings, channel: Channel, chat_id: int, text: str) -> None:
    address = channel.normalise(str(chat_id))
    person = conversations.lock_person_at(session, settings, channel, address)
    if not person.opted_out:
        body = text.format(org=settings.org_name)
        outbox.add(session, person, channel.name, body, Kind.REPLY, address=address)


def panel_links(
    session: Session,
    prefix: str,
    tags: tuple[str, ...] = (),
    days: float = DEFAULT_DAYS,
    now: datetime | None = None,
) -> list[list[str]]:
    """A link for everyone who could join by link and has not (no chat yet, not opted out,
    not erased), with any of these tags: rows for a mail-out, with a header row first (as
    stored: whoever writes them to a file defuses them)."""
    joined = select(ContactPoint.participant_id).where(
        ContactPoint.channel == joining_channel().name
    )
    query = (
        select(Participant)
        .where(
            Participant.id.not_in(joined),
            Participant.opted_out.is_(False),
            Participant.erased_at.is_(None),
        )
        .order_by(Participant.id)
    )
    rows = [["participant", "external_id", "name", "link", "expires_at"]]
    for person in session.scalars(query):
        if tags and not set(tags) & set(person.tags or ()):
            continue
        issued = issue(session, person, days=days, now=now)
        rows.append(
            [
                str(person.id),
                person.external_id or "",
                person.name or "",
                issued.link(prefix),
                issued.expires_at.isoformat(),
            ]
        )
    return rows
