"""Storage: what we hold about people, what they said and every message in or out.

The `messages` table is also the outbox: a row is written before anything is sent, and rq jobs
carry only its id. Times are stored as UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from bot.storage.status import Direction, Inbound

Id = BigInteger().with_variant(Integer, "sqlite")


MAX_ID = 2**62


def as_id(value: object) -> int | None:
    """The row id a person typed, or None if it cannot be one: "12" yes; "²", "-3", "9" * 30 no.

    Only the id as we write it: " 2", "2 " and "02" are not 2. Where "2" is also someone
    else's external id, reading them as our id 2 would show or erase the wrong person.
    """
    text = str(value)
    if not (text.isascii() and text.isdigit()) or (text.startswith("0") and text != "0"):
        return None
    number = int(text)
    return number if 0 < number < MAX_ID else None


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware UTC time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class Participant(Base):
    __tablename__ = "participants"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    # Preferred channel (a registry name); None: their first contact point's.
    channel: Mapped[str | None] = mapped_column(String(10))
    language: Mapped[str | None] = mapped_column(String(8))  # en | cy; None: the staff language
    tags: Mapped[list[str]] = mapped_column(default=list)
    recontact: Mapped[bool | None] = mapped_column(Boolean)
    opted_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    joined_via: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    erased_at: Mapped[datetime | None]

    consent_events: Mapped[list[ConsentEvent]] = relationship(
        back_populates="participant", order_by="ConsentEvent.id"
    )
    # How to reach them, in their preferred order. Erasure deletes these rows.
    contact_points: Mapped[list[ContactPoint]] = relationship(
        back_populates="participant",
        order_by="(ContactPoint.position, ContactPoint.id)",
        cascade="all, delete-orphan",
    )


class ContactPoint(Base):
    """One way to reach a person: a channel (a registry name) and their address on it, as that
    channel normalises it and as text (an E.164 number, a Telegram chat id, `whatsapp:+44...`).

    A person has as many as they gave us, in their preferred order (`position`, 0 first); a
    phone number is one row per channel that reaches it (a text and a call), so each keeps its
    own state: a landline that cannot take texts (unreachable for `sms`) is still called. The
    state is the provider's or the law's word about this address on this channel, never the
    person's consent, which is theirs across every channel (`Participant.opted_out`):

    - `unreachable_at`/`_reason`: a permanent failure ("invalid number", "chat not found");
    - `opted_out_at`/`_reason`: stopped at the provider (a carrier's 21610; a blocked bot or
      WhatsApp sender, which stops this contact point only);
    - `last_inbound_at`: when they last wrote on it (a reply window such as WhatsApp's 24 hours
      is read from it); the writer moves it on at most every few minutes (see
      `bot.storage.contacts.INBOUND_PRECISION`), never past the truth;
    - `verified_at`: they wrote to us from it, or redeemed a link on it.

    An address belongs to one person at a time (unique per channel): the writer finds the
    sender of every message by it, one indexed read.
    """

    __tablename__ = "contact_points"
    __table_args__ = (
        UniqueConstraint("channel", "address", name="uq_contact_points_channel_address"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    verified_at: Mapped[datetime | None]
    unreachable_at: Mapped[datetime | None]
    unreachable_reason: Mapped[str | None] = mapped_column(String(200))
    opted_out_at: Mapped[datetime | None]
    opted_out_reason: Mapped[str | None] = mapped_column(String(200))
    last_inbound_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    participant: Mapped[Participant] = relationship(back_populates="contact_points")

    @property
    def usable(self) -> bool:
        """Not stopped at the provider and not known to be unreachable."""
        return self.opted_out_at is None and self.unreachable_at is None


class ConsentEvent(Base):
    """Append-only: who, what, when and how. Never updated, never deleted."""

    __tablename__ = "consent_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    # opt_out | opt_in | recontact_yes | recontact_no | point_stopped | point_let_in
    kind: Mapped[str] = mapped_column(String(20))
    # a channel (sms, voice, telegram, whatsapp) | api | import | carrier
    how: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)

    participant: Mapped[Participant] = relationship(back_populates="consent_events")


class SurveyVersion(Base):
    """The exact script a conversation used, so old answers map to the questions asked."""

    __tablename__ = "survey_versions"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    survey_id: Mapped[str] = mapped_column(String(100), index=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    survey_id: Mapped[str] = mapped_column(String(100))
    survey_version_id: Mapped[int] = mapped_column(ForeignKey("survey_versions.id"))
    status: Mapped[str] = mapped_column(String(20), default="draft")
    audience: Mapped[dict[str, Any]] = mapped_column(default=dict)
    channel: Mapped[str | None] = mapped_column(String(10))
    send_at: Mapped[datetime | None]
    reminder_after_hours: Mapped[float | None]
    # Not reached on a person's contact point this many hours after their invitation (it
    # failed, or calls went unanswered after every retry): invite them on their next one.
    # None: no fallback (`bot.cycle.fallback`).
    fallback_after_hours: Mapped[float | None]
    # Leave out people invited by another campaign in the last this many days; None: the
    # INVITE_GAP_DAYS setting, 0: nobody is left out (`bot.cycle.frequency`).
    invite_gap_days: Mapped[int | None] = mapped_column(Integer)
    # Staff's choice at launch: people whose address on the channel they would be invited on
    # cannot take it (a landline, for texts) are invited on this channel instead, where they
    # have an address it suits. None: they are invited as they are (`bot.cycle.unsuited`).
    move_unsuited_to: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    launched_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    fanout_done_at: Mapped[datetime | None]
    reminders_sent_at: Mapped[datetime | None]


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        # One conversation in progress per person, whatever the channel.
        Index(
            "uq_conversations_one_active",
            "participant_id",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_conversations_campaign_status", "campaign_id", "status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    survey_version_id: Mapped[int] = mapped_column(ForeignKey("survey_versions.id"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    channel: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20), default="active")
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime | None]
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]

    survey_version: Mapped[SurveyVersion] = relationship()
    participant: Mapped[Participant] = relationship()


class Answer(Base):
    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("conversation_id", "question_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participants.id"), index=True)
    question_id: Mapped[str] = mapped_column(String(100))
    value: Mapped[str | None] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(Text)
    raw_text: Mapped[str | None] = mapped_column(Text)
    unparsed: Mapped[bool] = mapped_column(Boolean, default=False)
    skipped: Mapped[bool] = mapped_column(Boolean, default=False)
    language: Mapped[str | None] = mapped_column(String(8))  # what it was answered in
    channel: Mapped[str] = mapped_column(String(10))
    answered_at: Mapped[datetime] = mapped_column(default=utcnow)


WAITING_INBOUND = f"status = '{Inbound.RETRYING}' AND direction = '{Direction.IN}'"


class Message(Base):
    """Every message in or out. Outbound rows are the outbox: written first, then sent."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("channel", "direction", "provider_id", name="uq_messages_provider_id"),
        Index("ix_messages_outbox", "status", "send_after"),
        Index("ix_messages_campaign_kind", "campaign_id", "kind"),
        # Asked of every inbound message: is an earlier one from this sender waiting for a
        # retry? Partial, so it holds only those; a query must spell the two conditions out
        # as these literals (not parameters) for either database to use it.
        Index(
            "ix_messages_inbound_retrying",
            "channel",
            "address",
            sqlite_where=text(WAITING_INBOUND),
            postgresql_where=text(WAITING_INBOUND),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participants.id"), index=True)
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    in_reply_to_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    channel: Mapped[str] = mapped_column(String(10))
    kind: Mapped[str] = mapped_column(
        String(20)
    )  # inbound | reply | invitation | reminder | feedback | notice
    address: Mapped[str | None] = mapped_column(String(64))  # the person's number or chat id
    body: Mapped[str | None] = mapped_column(Text)
    provider_id: Mapped[str | None] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(20))
    error_code: Mapped[str | None] = mapped_column(String(20))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    send_after: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Invitation(Base):
    """One person in one campaign: created once, however often the campaign is launched."""

    __tablename__ = "invitations"
    __table_args__ = (
        UniqueConstraint("campaign_id", "participant_id"),
        Index("ix_invitations_participant_status", "participant_id", "status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"))
    channel: Mapped[str | None] = mapped_column(String(10))
    # invited | waiting (in another survey) | skipped (opted out, no address)
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    reminder_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    invited_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    # Fallback (`bot.cycle.fallback`): the channel first tried, when the invitation moved on
    # to the person's next contact point, when it last did, and why it moves no further.
    fallback_from: Mapped[str | None] = mapped_column(String(16))
    fallback_at: Mapped[datetime | None]
    fallback_end: Mapped[str | None] = mapped_column(String(200))


class Suppression(Base):
    """Hashed numbers and chat ids of erased people who had opted out: never contacted again."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    address_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEvent(Base):
    """Who did what to whose data, and when: subject access, erasure, exports, launches, purges.

    Append-only. `target` names a row ("participant 12", "campaign 3"), never a person's name,
    number or words; `detail` holds counts only.
    """

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(
        String(100)
    )  # admin-api | cli:<user> | worker | staff:<email>
    action: Mapped[str] = mapped_column(String(40))  # bot.privacy.audit.ACTIONS
    target: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class TelegramLink(Base):
    """A single-use code behind a `t.me/<bot>?start=<code>` deep link, issued for one person.

    Only the code's hash is kept, so a copy of the database cannot be used to take over a
    person's chat; the code itself is shown once, to staff, when it is issued.
    """

    __tablename__ = "telegram_links"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class StaffAccount(Base):
    """Someone on the charity's team who signs in to /console/ with an email and a password.

    Only an argon2 hash of the password is kept. `session_epoch` is part of every console
    session: signing out moves it on, so a copied cookie stops working at once rather than at
    its expiry.
    """

    __tablename__ = "staff_accounts"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-cased
    password_hash: Mapped[str] = mapped_column(String(200))
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_signed_in_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
