"""Campaign progress: invited, started, completed, opted out, failed, not reached, waiting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import engine
from bot.config import Settings
from bot.cycle.frequency import REASON_START
from bot.sending import pacing
from bot.storage.models import Answer, Conversation, Invitation, Message, Participant
from bot.storage.status import InvitationStatus, Outbound


@dataclass(frozen=True)
class Counts:
    invited: int
    started: int
    completed: int
    opted_out: int
    failed: int
    not_reached: int
    waiting: int

    def as_json(self) -> dict[str, int]:
        return dict(self.__dict__)


def counts(session: Session, campaign_id: int) -> Counts:
    by_status = dict(
        session.execute(
            select(Invitation.status, func.count())
            .where(Invitation.campaign_id == campaign_id)
            .group_by(Invitation.status)
        ).all()
    )
    conv_status = dict(
        session.execute(
            select(Conversation.status, func.count())
            .join(Invitation, Invitation.conversation_id == Conversation.id)
            .where(Invitation.campaign_id == campaign_id)
            .group_by(Conversation.status)
        ).all()
    )
    started = (
        session.scalar(
            select(func.count(func.distinct(Answer.conversation_id)))
            .join(Invitation, Invitation.conversation_id == Answer.conversation_id)
            .where(Invitation.campaign_id == campaign_id)
        )
        or 0
    )
    # Erasure marks a person opted out too (so nothing reaches them again); it is not a STOP,
    # so an erased person counts here only if their conversation in this campaign was stopped.
    opted_out = (
        session.scalar(
            select(func.count())
            .select_from(Invitation)
            .join(Participant, Participant.id == Invitation.participant_id)
            .outerjoin(Conversation, Conversation.id == Invitation.conversation_id)
            .where(
                Invitation.campaign_id == campaign_id,
                Participant.opted_out.is_(True),
                Participant.erased_at.is_(None) | (Conversation.status == engine.STOPPED),
            )
        )
        or 0
    )
    failed = (
        session.scalar(
            select(func.count())
            .select_from(Invitation)
            .join(Message, Message.id == Invitation.message_id)
            .where(
                Invitation.campaign_id == campaign_id,
                Message.status.in_((Outbound.FAILED, Outbound.UNDELIVERED)),
            )
        )
        or 0
    )
    not_reached = (
        session.scalar(
            select(func.count())
            .select_from(Invitation)
            .join(Participant, Participant.id == Invitation.participant_id)
            .where(
                Invitation.campaign_id == campaign_id,
                Invitation.status == InvitationStatus.SKIPPED,
                Participant.opted_out.is_(False),
                # Left out on purpose (invited lately by another campaign): counted apart.
                Invitation.reason.is_(None) | ~Invitation.reason.startswith(REASON_START),
            )
        )
        or 0
    )
    return Counts(
        invited=by_status.get(InvitationStatus.INVITED, 0),
        started=started,
        completed=conv_status.get(engine.COMPLETED, 0),
        opted_out=opted_out,
        failed=failed,
        not_reached=not_reached,
        waiting=by_status.get(InvitationStatus.WAITING, 0),
    )


@dataclass(frozen=True)
class Held:
    """Invitations and reminders written but not yet sent, and the earliest they may go.

    "Invited" counts people whose invitation is written; at night none of it has gone yet, and
    staff must be told so rather than left to wonder.
    """

    messages: int
    until: datetime | None  # UTC; None when nothing is held
    quiet_now: bool

    def as_json(self, settings: Settings) -> dict[str, object]:
        return {
            "messages": self.messages,
            "until": self.until.astimezone(settings.timezone).isoformat() if self.until else None,
            "quiet_hours": ",".join(str(w) for w in settings.quiet_hours),
            "timezone": str(settings.timezone),
            "reason": "quiet hours" if self.quiet_now else ("scheduled" if self.until else None),
        }

    def describe(self, settings: Settings) -> str:
        """One line for the CLI: "6 until 10:00 on Thu 26 Nov (Europe/London), quiet hours ..."."""
        if not self.messages or self.until is None:
            return "0"
        local = self.until.astimezone(settings.timezone)
        why = (
            f": quiet hours {','.join(str(w) for w in settings.quiet_hours)}"
            if self.quiet_now
            else ""
        )
        return f"{self.messages} until {local:%H:%M on %a %d %b} ({settings.timezone}){why}"


def held(
    session: Session, campaign_id: int, settings: Settings, now: datetime | None = None
) -> Held:
    now = now or datetime.now(UTC)
    pending = (
        Message.campaign_id == campaign_id,
        Message.status == Outbound.PENDING,
        Message.kind.in_(tuple(pacing.NEW_CONTACT)),
    )
    later, first_later = session.execute(
        select(func.count(), func.min(Message.send_after)).where(*pending, Message.send_after > now)
    ).one()
    due_now = session.scalar(
        select(func.count()).where(
            *pending, (Message.send_after.is_(None)) | (Message.send_after <= now)
        )
    )
    allowed = pacing.next_allowed(now, settings.quiet_hours, settings.timezone)
    quiet_now = allowed > now
    count = (later or 0) + ((due_now or 0) if quiet_now else 0)
    candidates = [t for t in (first_later, allowed if quiet_now and due_now else None) if t]
    if first_later is not None and first_later.tzinfo is None:
        candidates = [t.replace(tzinfo=UTC) if t.tzinfo is None else t for t in candidates]
    until = min(candidates) if count and candidates else None
    return Held(count, until, quiet_now and bool(count))
