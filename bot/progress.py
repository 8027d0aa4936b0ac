"""Campaign progress: invited, started, completed, opted out, failed, not reached, waiting."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import engine
from bot.models import Answer, Conversation, Invitation, Message, Participant


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
    opted_out = (
        session.scalar(
            select(func.count())
            .select_from(Invitation)
            .join(Participant, Participant.id == Invitation.participant_id)
            .where(Invitation.campaign_id == campaign_id, Participant.opted_out.is_(True))
        )
        or 0
    )
    failed = (
        session.scalar(
            select(func.count())
            .select_from(Invitation)
            .join(Message, Message.id == Invitation.message_id)
            .where(
                Invitation.campaign_id == campaign_id, Message.status.in_(("failed", "undelivered"))
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
                Invitation.status == "skipped",
                Participant.opted_out.is_(False),
            )
        )
        or 0
    )
    return Counts(
        invited=by_status.get("invited", 0),
        started=started,
        completed=conv_status.get(engine.COMPLETED, 0),
        opted_out=opted_out,
        failed=failed,
        not_reached=not_reached,
        waiting=by_status.get("waiting", 0),
    )
