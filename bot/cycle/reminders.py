"""One reminder, after `reminder_after_hours`, to each invited person who has not finished.

It picks up where they stopped (their current question), goes through the outbox as new contact
(so never in quiet hours, never after STOP), and is sent at most once per campaign; none goes
where they blocked us (a Telegram bot) or cannot be reached.

A thousand people at a time, each thousand in its own unit of work: the campaign's row shared,
then their locks in id order (`conversations.lock_people`), and only then their conversations
are read, so an answer in flight finishes first and the reminder asks the question it left.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session, selectinload

from bot import conversations, engine
from bot.config import Settings
from bot.conversations import outbox
from bot.cycle.campaigns import BATCH, render_for
from bot.i18n import N_, t
from bot.scripts.survey import Survey
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
from bot.storage.status import CampaignStatus, InvitationStatus, Kind

REMINDER_LEAD = N_("A gentle reminder: we would still love your views.")


def _not_finished(campaign_id: int) -> tuple[ColumnElement[bool], ...]:
    """Who is due their reminder: invited, not reminded, their conversation in progress."""
    return (
        Invitation.campaign_id == campaign_id,
        Invitation.status == InvitationStatus.INVITED,
        Invitation.reminded_at.is_(None),
        Conversation.status == engine.ACTIVE,
        Participant.opted_out.is_(False),
        Participant.erased_at.is_(None),
    )


def send_reminders(database: Database, settings: Settings, campaign_id: int) -> int:
    """One reminder to each invited person who has not finished, picking up where they stopped.
    Each thousand's reminders go once its unit of work commits; a run cut short is taken up
    by the next (the reconciler's), which finds who is still not reminded."""
    with database.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if (
            campaign is None
            or campaign.status == CampaignStatus.CLOSED
            or campaign.reminders_sent_at is not None
        ):
            return 0
        survey = conversations.survey_of(session.get(SurveyVersion, campaign.survey_version_id))
        people = sorted(
            set(
                session.scalars(
                    select(Invitation.participant_id)
                    .join(Conversation, Conversation.id == Invitation.conversation_id)
                    .join(Participant, Participant.id == Invitation.participant_id)
                    .where(*_not_finished(campaign_id))
                )
            )
        )
    sent = 0
    for start in range(0, len(people), BATCH):
        with database.session() as session:
            # Shared, before any person's lock: a close waits for this unit, or it is seen.
            campaign = session.get(Campaign, campaign_id, with_for_update={"read": True})
            if campaign.status == CampaignStatus.CLOSED:
                return sent
            locked = conversations.lock_people(session, people[start : start + BATCH])
            sent += _remind(session, settings, survey, campaign_id, locked)
    with database.session() as session:
        session.get(Campaign, campaign_id).reminders_sent_at = utcnow()
    return sent


def _remind(
    session: Session, settings: Settings, survey: Survey, campaign_id: int, people: list[int]
) -> int:
    """Queue the reminders of these people, whose locks the caller holds: their state as the
    last writer left it (an answer just given, a STOP, the survey finished)."""
    rows = session.execute(
        select(Invitation, Conversation, Participant)
        .join(Conversation, Conversation.id == Invitation.conversation_id)
        .join(Participant, Participant.id == Invitation.participant_id)
        .where(*_not_finished(campaign_id), Invitation.participant_id.in_(people))
        .order_by(Invitation.participant_id)
        .options(selectinload(Participant.contact_points))
    ).all()
    now = utcnow()
    sent = 0
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
            channel, [engine.Say(t(person.language, REMINDER_LEAD)), prompt], settings.org_name
        )
        message = outbox.add(
            session,
            person,
            channel,
            body,
            Kind.REMINDER,
            campaign_id=campaign_id,
            conversation_id=conv.id,
            address=address,
        )
        invitation.reminder_message_id, invitation.reminded_at = message.id, now
        sent += 1
    return sent
