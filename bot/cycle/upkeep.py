"""Keeping campaigns moving, once a minute with the reconciler (`bot.commands.jobs`): a fan-out
or a reminder whose job Redis lost is enqueued again, someone waiting behind a survey that
went idle (7 days) is invited to the next one, and people an invitation did not reach are
invited on their next contact point where the campaign says so (`bot.cycle.fallback`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import select

from bot import conversations, engine
from bot.config import Settings
from bot.cycle import campaigns, fallback, reminders
from bot.storage.db import Database
from bot.storage.models import Campaign, Conversation, Invitation, utcnow
from bot.storage.status import CampaignStatus, InvitationStatus

RECONCILE_BATCH = 2000
REMINDER_GRACE = timedelta(minutes=2)  # a reminder job this late was lost with Redis
LIVE_JOB = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}


def _job_alive(redis: Redis, job_id: str) -> bool:
    try:
        return Job.fetch(job_id, connection=redis).get_status(refresh=True) in LIVE_JOB
    except NoSuchJobError:
        return False


def keep_moving(
    database: Database, redis: Redis, settings: Settings, now: datetime | None = None
) -> dict[str, int]:
    """Resume fan-outs and reminders whose jobs were lost; move on people whose survey went idle."""
    now = now or utcnow()
    resumed = reminded = promoted = 0
    with database.session() as session:
        unfinished = session.scalars(
            select(Campaign).where(
                Campaign.status.in_((CampaignStatus.LAUNCHING, CampaignStatus.LAUNCHED)),
                Campaign.fanout_done_at.is_(None),
            )
        ).all()
        due_reminders = [
            c.id
            for c in session.scalars(
                select(Campaign).where(
                    Campaign.status == CampaignStatus.LAUNCHED,
                    Campaign.reminder_after_hours.is_not(None),
                    Campaign.reminders_sent_at.is_(None),
                    Campaign.fanout_done_at.is_not(None),
                )
            )
            if (when := campaigns.reminder_due(c)) is not None and when <= now - REMINDER_GRACE
        ]
        idle = session.execute(
            select(Conversation.id, Conversation.participant_id)
            .join(
                Invitation,
                (Invitation.participant_id == Conversation.participant_id)
                & (Invitation.status == InvitationStatus.WAITING),
            )
            .where(
                Conversation.status == engine.ACTIVE,
                Conversation.last_activity_at <= now - engine.IDLE_EXPIRY,
            )
            .limit(RECONCILE_BATCH)
        ).all()
    for campaign in unfinished:
        if not _job_alive(redis, campaigns.fan_out_job_id(campaign.id)):
            # Its job is gone (Redis restarted empty, or it failed): fan-outs can run again.
            campaigns.enqueue_fan_out(redis, campaign, reminder=False)
            resumed += 1
    for campaign_id in due_reminders:
        reminded += reminders.send_reminders(database, settings, campaign_id)
    for conversation_id, participant_id in idle:
        with database.session() as session:
            if conversations.lock_person(session, participant_id) is None:
                continue
            conv = session.get(Conversation, conversation_id, with_for_update=True)
            if conv is None or conv.status != engine.ACTIVE:
                continue
            conversations.end_conversation(session, conv, engine.EXPIRED)
            promoted += len(campaigns.promote_waiting(session, participant_id, settings))
    return {
        "fanouts_resumed": resumed,
        "reminders_sent": reminded,
        "waiting_invited": promoted,
        "fallbacks_sent": fallback.move_all(database, settings, now),
    }
