"""One reminder, after `reminder_after_hours`, to each invited person who has not finished.

It picks up where they stopped (their current question), goes through the outbox as new contact
(so never in quiet hours, never after STOP), and is sent at most once per campaign; none goes
where they blocked us (a Telegram bot) or cannot be reached.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from bot import conversations, engine
from bot.config import Settings
from bot.conversations import outbox
from bot.cycle.campaigns import render_for
from bot.i18n import N_, t
from bot.storage import contacts
from bot.storage.db import Database
from bot.storage.models import (
    Campaign,
    Conversation,
    Invitation,
    Participant,
    SurveyVersion,
    utcnow,
)

REMINDER_LEAD = N_("A gentle reminder: we would still love your views.")


def send_reminders(database: Database, settings: Settings, campaign_id: int) -> int:
    """One reminder to each invited person who has not finished, picking up where they stopped.
    The reminders go once this unit of work commits."""
    queued: list[int] = []
    with database.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if (
            campaign is None
            or campaign.status == "closed"
            or campaign.reminders_sent_at is not None
        ):
            return 0
        survey = conversations.survey_of(session.get(SurveyVersion, campaign.survey_version_id))
        rows = session.execute(
            select(Invitation, Conversation, Participant)
            .join(Conversation, Conversation.id == Invitation.conversation_id)
            .join(Participant, Participant.id == Invitation.participant_id)
            .where(
                Invitation.campaign_id == campaign_id,
                Invitation.status == "invited",
                Invitation.reminded_at.is_(None),
                Conversation.status == engine.ACTIVE,
                Participant.opted_out.is_(False),
                Participant.erased_at.is_(None),
            )
            .options(selectinload(Participant.contact_points))
        ).all()
        now = utcnow()
        for invitation, conv, person in rows:
            question_id = conv.state.get("question_id")
            channel = invitation.channel or conv.channel
            # None where they blocked us there, or it cannot be reached: no reminder goes.
            address = contacts.first_usable(person.contact_points, channel)
            if question_id is None or address is None:
                continue
            prompt = engine.ask(
                survey,
                survey.question(question_id),
                conversations.context_for(person, settings.org_name),
                answered=conv.state.get("answered") or {},
            )
            body = render_for(
                channel,
                [engine.Say(t(person.language, REMINDER_LEAD)), prompt],
                settings.org_name,
            )
            message = outbox.add(
                session,
                person,
                channel,
                body,
                "reminder",
                campaign_id=campaign_id,
                conversation_id=conv.id,
                address=address,
            )
            invitation.reminder_message_id, invitation.reminded_at = message.id, now
            queued.append(message.id)
        campaign.reminders_sent_at = now
    return len(queued)
