"""Deep links that join a Telegram chat to a person we already know.

Staff issue a link per person (`t.me/<bot>?start=<code>`, on paper in a panel mail-out, or by
email); tapping it sends `/start <code>` from the person's chat, and the chat becomes theirs.
A code is 128 random bits, single-use and expires; only its SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import conversations
from bot.config import Settings
from bot.sending import outbox
from bot.storage.db import Database
from bot.storage.models import Message, Participant, TelegramLink, utcnow
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


class LinkError(Exception):
    """A link cannot be issued; the message says why."""


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


@dataclass(frozen=True)
class Issued:
    participant_id: int
    code: str
    expires_at: datetime

    def link(self, username: str) -> str:
        return f"https://t.me/{username}?start={self.code}"


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


def bot_username(settings: Settings) -> str:
    """The bot's @username, for links: TELEGRAM_BOT_USERNAME, else asked of Telegram."""
    if settings.telegram_bot_username:
        return settings.telegram_bot_username
    from bot.channels.telegram import TELEGRAM
    from bot.sending.errors import SendError

    try:
        me = TELEGRAM.sender(settings).get_me()  # type: ignore[attr-defined]
    except SendError as exc:
        raise LinkError(
            f"set TELEGRAM_BOT_USERNAME, or let us ask Telegram for it ({exc})"
        ) from None
    if not me.username:
        raise LinkError("Telegram did not say the bot's username: set TELEGRAM_BOT_USERNAME")
    return str(me.username)


def redeem(
    database: Database,
    settings: Settings,
    chat_id: int,
    code: str,
    provider_id: str,
    now: datetime | None = None,
) -> str:
    """Join this chat to the person the code was issued for; what happened, in a word.

    A used or expired code is answered with a short note (through the outbox); an unknown one
    is left to the caller, since `/start <word>` may be a survey's keyword instead.
    """
    from bot.channels.telegram import TELEGRAM

    now = now or utcnow()
    with database.session() as session:
        seen = session.scalar(
            select(Message.id).where(
                Message.channel == TELEGRAM.name,
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
        if link.used_at is not None:
            if person.telegram_chat_id == chat_id:
                return SAME  # they tapped their link again: nothing to do, nothing to say
            _note(session, settings, chat_id, USED_TEXT)
            return USED
        if link.expires_at <= now:
            _note(session, settings, chat_id, EXPIRED_TEXT)
            return EXPIRED
        holder = session.scalar(
            select(Participant)
            .where(Participant.telegram_chat_id == chat_id, Participant.id != person.id)
            .with_for_update()
        )
        if holder is not None:
            # The chat wrote to us before it was linked (a plain /start): it was a stranger,
            # and is this person now. What the stranger sent stays on its own record.
            holder.telegram_chat_id = None
            session.flush()
        person.telegram_chat_id = chat_id
        person.channel = TELEGRAM.name  # they chose Telegram: invitations and feedback go there
        link.used_at = now
        return LINKED


def _note(session: Session, settings: Settings, chat_id: int, text: str) -> None:
    from bot.channels.telegram import TELEGRAM

    person = conversations.lock_person_at(session, TELEGRAM, str(chat_id))
    if not person.opted_out:
        outbox.add(session, person, TELEGRAM.name, text.format(org=settings.org_name), Kind.REPLY)


def panel_links(
    session: Session,
    username: str,
    tags: tuple[str, ...] = (),
    days: float = DEFAULT_DAYS,
    now: datetime | None = None,
) -> list[list[str]]:
    """A link for everyone who could join by Telegram and has not (no chat yet, not opted out,
    not erased), with any of these tags: rows for a mail-out, with a header row first."""
    from bot.cycle.exports import defuse

    query = (
        select(Participant)
        .where(
            Participant.telegram_chat_id.is_(None),
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
                defuse(person.external_id or ""),
                defuse(person.name or ""),
                issued.link(username),
                issued.expires_at.isoformat(),
            ]
        )
    return rows
