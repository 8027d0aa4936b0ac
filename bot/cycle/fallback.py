"""Channel fallback: a campaign with `fallback_after_hours` invites the people it did not reach
on one contact point on their next one.

"Not reached": the invitation's message failed or went undelivered (a text the carrier could
not deliver, a number that is not in service) and nothing will try it again. A channel's own
retries come first: an unanswered call is called again on the voice channel's schedule, each
try a new row the invitation follows, so only the last, once every retry is spent, counts here.
A Telegram account that is gone is unreachable, and the next contact point is tried.

"Blocked": the person blocked us on the invitation's contact point (a Telegram bot, a WhatsApp
sender; `bot.conversations.stop_point`), whether our send found out or the provider told us,
before or after the invitation went. That contact point will never carry it, so they are moved
on at once, without waiting for `fallback_after_hours`, unless they already answered. Blocking
one app is not a STOP: their other contact points are theirs to be reached on.

The worker's beat (`bot.cycle.upkeep`) asks `due` for invitations not reached at least
`fallback_after_hours` after they went (0: as soon as the failure is known), or blocked, and
moves each on (`move_on`), one person at a time with their lock first. Moving on:

- never goes to a person who stopped, nor to a contact point stopped or unreachable at the
  provider, nor back to one this campaign already tried, nor on a channel that is off or
  cannot carry the survey;
- leaves one live invitation: the first conversation (never answered) ends as expired, and
  whatever of it had not gone (a reminder) is cancelled, before the same survey begins on the
  next contact point, as a new outbox row, so quiet hours and pacing hold as for any invitation;
- stops for good when the person answered or wrote to us on any channel (they are reached and
  their survey goes on where they are), or when no contact point is left: `fallback_end` says why.

Progress counts those moved on, and those reached there (`counts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from bot import channels, conversations, engine
from bot.config import Settings
from bot.conversations import outbox
from bot.cycle import campaigns
from bot.scripts.survey import Survey
from bot.storage import contacts
from bot.storage.db import Database
from bot.storage.models import (
    Answer,
    Campaign,
    ContactPoint,
    Conversation,
    Invitation,
    Message,
    Participant,
    utcnow,
)
from bot.storage.status import CampaignStatus, Direction, InvitationStatus, Kind, Outbound

NOT_THROUGH = (Outbound.FAILED, Outbound.UNDELIVERED)
# A message counts as reached once the provider took it to the person: a text or Telegram
# message sent or delivered, a call answered (in progress, then completed).
REACHED = (Outbound.SENT, Outbound.DELIVERED, Outbound.REPLIED)
BATCH = 500  # people moved on per beat; the rest next minute
# People moved on in one unit of work: their messages go as one send job. Their locks are
# taken in id order, as `campaigns.close` takes them, so no writer (who takes one) deadlocks.
PER_UNIT = 100

NO_POINT_LEFT = "no other contact point to try"
ANSWERED = "reached: they answered or wrote to us"
STOPPED = "opted out"


def due(session: Session, now: datetime, limit: int = BATCH) -> list[tuple[int, int]]:
    """(invitation id, person id) of people due a fallback, oldest invitations first."""
    found: list[tuple[int, int]] = []
    live = session.execute(
        select(Campaign.id, Campaign.fallback_after_hours)
        .where(
            Campaign.status.in_((CampaignStatus.LAUNCHING, CampaignStatus.LAUNCHED)),
            Campaign.fallback_after_hours.is_not(None),
        )
        .order_by(Campaign.id)
    ).all()
    for campaign_id, hours in live:
        cutoff = now - timedelta(hours=hours)
        rows = session.execute(
            select(Invitation.id, Invitation.participant_id)
            .join(Message, Message.id == Invitation.message_id)
            .outerjoin(ContactPoint, _its_contact_point())
            .where(
                Invitation.campaign_id == campaign_id,
                Invitation.status == InvitationStatus.INVITED,
                Invitation.fallback_end.is_(None),
                or_(
                    and_(
                        Message.status.in_(NOT_THROUGH),
                        # The time runs from the invitation on the contact point it is on now.
                        or_(
                            and_(Invitation.fallback_at.is_(None), Invitation.invited_at <= cutoff),
                            Invitation.fallback_at <= cutoff,
                        ),
                    ),
                    # Blocked there: at once, whatever became of the message.
                    ContactPoint.opted_out_at.is_not(None),
                ),
            )
            .order_by(Invitation.id)
            .limit(limit - len(found))
        ).all()
        found += [(iid, pid) for iid, pid in rows]
        if len(found) >= limit:
            break
    return found


def _its_contact_point() -> Any:
    """The contact point an invitation's message went to (or was to go to)."""
    return and_(
        ContactPoint.participant_id == Message.participant_id,
        ContactPoint.channel == Message.channel,
        ContactPoint.address == Message.address,
    )


def _blocked_there(session: Session, message: Message) -> bool:
    """The person stopped us on the contact point this message went to (or was to go to)."""
    stopped = session.scalar(
        select(ContactPoint.opted_out_at).where(
            ContactPoint.participant_id == message.participant_id,
            ContactPoint.channel == message.channel,
            ContactPoint.address == message.address,
        )
    )
    return stopped is not None


def move_all(database: Database, settings: Settings, now: datetime | None = None) -> int:
    """Move every person due a fallback on to their next contact point (the beat's work):
    how many invitations went out."""
    now = now or utcnow()
    with database.read() as session:
        people = sorted(due(session, now), key=lambda row: row[1])
    moved = 0
    for start in range(0, len(people), PER_UNIT):
        with database.session() as session:
            for invitation_id, participant_id in people[start : start + PER_UNIT]:
                moved += move_on(session, settings, invitation_id, participant_id, now) is not None
    return moved


def move_on(
    session: Session, settings: Settings, invitation_id: int, participant_id: int, now: datetime
) -> int | None:
    """Invite one person on their next contact point, in the caller's unit of work: the new
    message's id, or None (nothing to do now, or ever: `fallback_end` says so)."""
    person = conversations.lock_person(session, participant_id)  # their lock first
    if person is None:
        return None
    invitation = session.get(
        Invitation, invitation_id, with_for_update=True, populate_existing=True
    )
    if invitation is None or invitation.participant_id != participant_id:
        return None
    campaign = session.get(Campaign, invitation.campaign_id)
    message = session.get(Message, invitation.message_id) if invitation.message_id else None
    if (
        campaign is None
        or campaign.status not in (CampaignStatus.LAUNCHING, CampaignStatus.LAUNCHED)
        or invitation.status != InvitationStatus.INVITED
        or invitation.fallback_end is not None
        or message is None
        or (message.status not in NOT_THROUGH and not _blocked_there(session, message))
    ):
        return None  # moved on meanwhile (reached, closed, tried again): checked under the lock
    if person.opted_out or person.erased_at is not None:
        invitation.fallback_end = STOPPED
        return None
    first = (
        session.get(Conversation, invitation.conversation_id)
        if invitation.conversation_id
        else None
    )
    if _reached(session, invitation, first):
        invitation.fallback_end = ANSWERED
        return None
    if _in_another_survey(session, person.id, first):
        return None  # one survey at a time: tried again on a later beat
    survey = conversations.survey_for(session, campaign.survey_version_id)
    point = next_contact_point(session, person, campaign, survey, settings)
    if point is None:
        invitation.fallback_end = NO_POINT_LEFT
        return None
    if first is not None:
        _end_first(session, first, now)
    return _invite_on(session, settings, campaign, survey, person, invitation, point, now)


def _reached(session: Session, invitation: Invitation, first: Conversation | None) -> bool:
    """They answered, or wrote to us on any channel, since they were invited."""
    if first is not None and (first.started_at is not None or first.status == engine.COMPLETED):
        return True
    since = invitation.fallback_at or invitation.invited_at
    if since is None:  # every invited row has its time; an old one without says nothing
        return False
    wrote = session.scalar(
        select(Message.id)
        .where(
            Message.participant_id == invitation.participant_id,
            Message.direction == Direction.IN,
            Message.created_at >= since,
        )
        .limit(1)
    )
    return wrote is not None


def _in_another_survey(session: Session, participant_id: int, first: Conversation | None) -> bool:
    other = session.scalar(
        select(Conversation.id).where(
            Conversation.participant_id == participant_id,
            Conversation.status == engine.ACTIVE,
        )
    )
    return other is not None and (first is None or other != first.id)


def next_contact_point(
    session: Session, person: Participant, campaign: Campaign, survey: Survey, settings: Settings
) -> Any | None:
    """The person's first contact point, in their order, that this campaign has not tried and
    may use now: not stopped or unreachable there, on a channel that is on and can carry the
    survey."""
    tried = set(
        session.execute(
            select(Message.channel, Message.address).where(
                Message.campaign_id == campaign.id,
                Message.participant_id == person.id,
                Message.direction == Direction.OUT,
                Message.kind == Kind.INVITATION,
            )
        ).all()
    )
    able = set(channels.able_to_carry(survey))
    for point in person.contact_points:
        if (
            contacts.is_usable(point)
            and (point.channel, point.address) not in tried
            and point.channel in able
            and campaigns.channel_off(point.channel, settings) is None
        ):
            return point
    return None


def _end_first(session: Session, first: Conversation, now: datetime) -> None:
    """The invitation that did not reach them ends: its conversation expires, and nothing of
    it that has not gone (a reminder) will."""
    if first.status == engine.ACTIVE:
        conversations.end_conversation(session, first, engine.EXPIRED, now)
    conversations.cancel_pending(
        session,
        first.participant_id,
        "invited on their next contact point",
        conversation_id=first.id,
        now=now,
    )
    session.flush()


def _invite_on(
    session: Session,
    settings: Settings,
    campaign: Campaign,
    survey: Survey,
    person: Participant,
    invitation: Invitation,
    point: Any,
    now: datetime,
) -> int:
    ((conversation_id, step),) = conversations.start_many(
        session,
        survey,
        campaign.survey_version_id,
        campaign.id,
        [(person, point.channel)],
        now,
        settings.org_name,
    )
    message = outbox.add(
        session,
        person,
        point.channel,
        campaigns.render_for(point.channel, step.prompts, settings.org_name),
        Kind.INVITATION,
        campaign_id=campaign.id,
        conversation_id=conversation_id,
        address=point.address,  # this contact point, not their first on its channel
    )
    invitation.fallback_from = invitation.fallback_from or invitation.channel
    invitation.channel = point.channel
    invitation.conversation_id, invitation.message_id = conversation_id, message.id
    invitation.fallback_at = now
    return message.id


# --- progress ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    after_hours: float | None
    moved_on: int  # people invited again on a next contact point
    reached: int  # of those, reached there: the message went through, or they answered

    def as_json(self) -> dict[str, Any]:
        return {
            "after_hours": self.after_hours,
            "moved_on": self.moved_on,
            "reached_by_fallback": self.reached,
        }


def counts(session: Session, campaign: Campaign) -> Progress:
    moved = (Invitation.campaign_id == campaign.id, Invitation.fallback_at.is_not(None))
    moved_on = session.scalar(select(func.count()).select_from(Invitation).where(*moved)) or 0
    answered = (
        select(Answer.id).where(Answer.conversation_id == Invitation.conversation_id).exists()
    )
    reached = (
        session.scalar(
            select(func.count())
            .select_from(Invitation)
            .outerjoin(Message, Message.id == Invitation.message_id)
            .where(*moved, Message.status.in_(REACHED) | answered)
        )
        or 0
    )
    return Progress(campaign.fallback_after_hours, moved_on, reached)


__all__ = ["Progress", "counts", "due", "move_all", "move_on", "next_contact_point"]
