"""Subject access and erasure (UK GDPR articles 15 and 17), for one person at a time."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from bot import conversations
from bot.models import (
    Answer,
    ConsentEvent,
    Conversation,
    Invitation,
    Message,
    Participant,
    Suppression,
    TelegramLink,
    as_id,
    utcnow,
)
from bot.panel import suppression_hash


def find(session: Session, key: str) -> Participant | None:
    """A person by our id or their external id (an external id wins if both could match)."""
    person = session.scalar(select(Participant).where(Participant.external_id == key))
    number = as_id(key)
    if person is None and number is not None:
        person = session.get(Participant, number)
    return person


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None


def subject_access(session: Session, person: Participant) -> dict[str, Any]:
    """Everything we hold about the person."""
    return {
        "id": person.id,
        "external_id": person.external_id,
        "name": person.name,
        "phone": person.phone,
        "telegram_chat_id": person.telegram_chat_id,
        "channel": person.channel,
        "tags": person.tags or [],
        "recontact": person.recontact,
        "opted_out": person.opted_out,
        "joined_via": person.joined_via,
        "created_at": _iso(person.created_at),
        "erased_at": _iso(person.erased_at),
        "consent_log": [
            {"kind": e.kind, "how": e.how, "detail": e.detail, "at": _iso(e.at)}
            for e in session.scalars(
                select(ConsentEvent)
                .where(ConsentEvent.participant_id == person.id)
                .order_by(ConsentEvent.id)
            )
        ],
        "conversations": [
            {
                "id": c.id,
                "campaign": c.campaign_id,
                "channel": c.channel,
                "status": c.status,
                "started_at": _iso(c.started_at),
                "completed_at": _iso(c.completed_at),
            }
            for c in session.scalars(
                select(Conversation)
                .where(Conversation.participant_id == person.id)
                .order_by(Conversation.id)
            )
        ],
        "answers": [
            {
                "conversation": a.conversation_id,
                "question": a.question_id,
                "value": a.value,
                "label": a.label,
                "raw_text": a.raw_text,
                "unparsed": a.unparsed,
                "skipped": a.skipped,
                "channel": a.channel,
                "answered_at": _iso(a.answered_at),
            }
            for a in session.scalars(
                select(Answer)
                .join(Conversation, Conversation.id == Answer.conversation_id)
                .where(Conversation.participant_id == person.id)
                .order_by(Answer.id)
            )
        ],
        "messages": [
            {
                "direction": m.direction,
                "channel": m.channel,
                "kind": m.kind,
                "body": m.body,
                "status": m.status,
                "campaign": m.campaign_id,
                "created_at": _iso(m.created_at),
                "sent_at": _iso(m.sent_at),
            }
            for m in session.scalars(
                select(Message).where(Message.participant_id == person.id).order_by(Message.id)
            )
        ],
        # Proof the loop was closed: what "you said, we did" message they got, and when.
        "feedback": [
            {
                "campaign": m.campaign_id,
                "channel": m.channel,
                "body": m.body,
                "status": m.status,
                "queued_at": _iso(m.created_at),
                "sent_at": _iso(m.sent_at),
            }
            for m in session.scalars(
                select(Message)
                .where(Message.participant_id == person.id, Message.kind == "feedback")
                .order_by(Message.id)
            )
        ],
        "invitations": [
            {
                "campaign": i.campaign_id,
                "status": i.status,
                "reason": i.reason,
                "invited_at": _iso(i.invited_at),
                "reminded_at": _iso(i.reminded_at),
            }
            for i in session.scalars(
                select(Invitation)
                .where(Invitation.participant_id == person.id)
                .order_by(Invitation.id)
            )
        ],
    }


def erase(session: Session, person: Participant) -> dict[str, int]:
    """Remove the person's personal data everywhere; keep only anonymous answers for the counts.

    The participant row stays as an empty tombstone so counts still add up. Closed answers keep
    their value but lose the link to the person; free text and anything they typed is removed.
    A person who had opted out leaves a hashed number behind so they are never contacted again.
    Redis holds only row ids and send slots, never personal data, so there is nothing to erase
    there; their pending messages are cancelled so no job will send them.
    """
    now = utcnow()
    if person.opted_out:
        for address in filter(
            None, [person.phone, str(person.telegram_chat_id) if person.telegram_chat_id else None]
        ):
            digest = suppression_hash(address)
            if (
                session.scalar(select(Suppression.id).where(Suppression.address_hash == digest))
                is None
            ):
                session.add(
                    Suppression(
                        address_hash=digest, reason="opted out, then erased", created_at=now
                    )
                )
    conversation_ids = (
        select(Conversation.id).where(Conversation.participant_id == person.id).scalar_subquery()
    )
    free_text = 0
    for conv in session.scalars(
        select(Conversation).where(Conversation.participant_id == person.id)
    ):
        survey = conversations.survey_for(session, conv.survey_version_id)
        typed = [q.id for q in survey.questions if q.type == "text"]
        free_text += session.execute(
            update(Answer)
            .where(
                Answer.conversation_id == conv.id,
                or_(Answer.unparsed.is_(True), Answer.question_id.in_(typed)),
            )
            .values(value=None, label=None)
        ).rowcount
    session.execute(
        update(Answer)
        .where(Answer.conversation_id.in_(conversation_ids))
        .values(raw_text=None, participant_id=None)
    )
    messages = session.execute(
        update(Message)
        .where(Message.participant_id == person.id)
        .values(body=None, address=None, error_message=None, updated_at=now)
    ).rowcount
    session.execute(
        update(Message)
        .where(Message.participant_id == person.id, Message.status.in_(("pending", "claimed")))
        .values(status="cancelled", error_message="erased")
    )
    session.execute(
        update(ConsentEvent).where(ConsentEvent.participant_id == person.id).values(detail=None)
    )
    session.execute(
        update(Conversation)
        .where(Conversation.participant_id == person.id, Conversation.status == "active")
        .values(status="expired")
    )
    session.execute(
        update(Invitation)
        .where(Invitation.participant_id == person.id, Invitation.status == "waiting")
        .values(status="skipped", reason="erased")
    )
    # Unused deep-link codes would join a chat to nobody; they go with the rest.
    session.execute(delete(TelegramLink).where(TelegramLink.participant_id == person.id))
    person.name = person.phone = person.external_id = person.joined_via = None
    person.telegram_chat_id = None
    person.tags = []
    person.channel = None
    person.recontact = None
    person.opted_out = True
    person.erased_at = now
    return {"messages": messages, "free_text_answers": free_text}
