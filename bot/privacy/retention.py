"""Retention: message bodies and free-text answers older than RETENTION_DAYS are purged.

What is purged is what a person wrote or was sent in their own words: message bodies (and the
number and provider error text on those rows), free-text and unreadable answers, what they
typed for any answer, and the copy of their answers a finished conversation keeps in its state.
Closed answers (an option, a number) stay, so counts and summaries still add up. Each run that
purges anything leaves an audit row with the counts.

The worker runs it once a day: its maintenance loop calls `enqueue_if_due`, which enqueues
`bot.commands.jobs.purge_expired` under a job id made from the date, so however many workers call it, one
job runs per day.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from sqlalchemy import or_, select, update

from bot import conversations, engine
from bot.config import Settings
from bot.conversations import outbox
from bot.privacy import audit
from bot.storage.db import Database
from bot.storage.models import Answer, Conversation, Message, SurveyVersion, utcnow
from bot.storage.status import Outbound

JOB_PREFIX = "involve-retention-"
BATCH = 1000


def purge_expired(
    database: Database, settings: Settings, now: datetime, actor: str = audit.WORKER
) -> dict[str, Any]:
    """Purge what is older than `settings.retention_days` before `now`; the counts of rows changed.

    Safe to run at any time and any number of times: a second run finds nothing left to purge.
    """
    counts: dict[str, Any] = {
        "retention_days": settings.retention_days,
        "messages": 0,
        "answers": 0,
        "conversations": 0,
    }
    if settings.retention_days is None:
        return counts
    cutoff = now - timedelta(days=settings.retention_days)
    counts["cutoff"] = cutoff.isoformat()
    with database.session() as session:
        counts["messages"] = session.execute(
            update(Message)
            .where(
                Message.created_at < cutoff,
                # A row still waiting to go out is work, not history: the outbox needs it.
                Message.status.not_in((Outbound.PENDING, Outbound.CLAIMED)),
                or_(
                    Message.body.is_not(None),
                    Message.address.is_not(None),
                    Message.error_message.is_not(None),
                ),
            )
            .values(body=None, address=None, error_message=None, updated_at=now)
        ).rowcount
        for version in session.scalars(select(SurveyVersion)):
            survey = conversations.survey_of(version)
            typed = [q.id for q in survey.questions if q.type == "text"]
            in_version = select(Conversation.id).where(Conversation.survey_version_id == version.id)
            old = (Answer.answered_at < cutoff, Answer.conversation_id.in_(in_version))
            counts["answers"] += session.execute(
                update(Answer)
                .where(
                    *old,
                    or_(Answer.unparsed.is_(True), Answer.question_id.in_(typed)),
                    or_(
                        Answer.value.is_not(None),
                        Answer.label.is_not(None),
                        Answer.raw_text.is_not(None),
                    ),
                )
                .values(value=None, label=None, raw_text=None)
            ).rowcount
            # What they typed for a closed answer ("two please") is their words too.
            session.execute(
                update(Answer).where(*old, Answer.raw_text.is_not(None)).values(raw_text=None)
            )
        last_id = 0
        while True:
            page = session.execute(
                select(Conversation.id, Conversation.state)
                .where(
                    Conversation.id > last_id,
                    Conversation.status != engine.ACTIVE,
                    Conversation.last_activity_at < cutoff,
                )
                .order_by(Conversation.id)
                .limit(BATCH)
            ).all()
            if not page:
                break
            last_id = page[-1][0]
            for conv_id, state in page:
                if (state or {}).get("answered"):
                    session.execute(
                        update(Conversation)
                        .where(Conversation.id == conv_id)
                        .values(state={**state, "answered": {}})
                    )
                    counts["conversations"] += 1
        if counts["messages"] or counts["answers"] or counts["conversations"]:
            audit.record(session, actor, "retention_purge", None, **counts)
    return counts


PURGE_JOB = "bot.commands.jobs.purge_expired"  # the rq job, by name (`bot.commands.jobs`)


def enqueue_if_due(redis: Redis, settings: Settings, now: datetime | None = None) -> bool:
    """Enqueue today's purge unless it has been already; True if this call enqueued it.

    Meant for the worker's maintenance loop (every minute). The job id carries the UTC date
    and its record is kept two days, so each day gets exactly one run however many workers
    ask; a Redis flushed mid-day at worst runs the (idempotent) purge twice that day.
    """
    from rq import Queue
    from rq.job import Job

    if settings.retention_days is None:
        return False
    job_id = f"{JOB_PREFIX}{(now or utcnow()).date().isoformat()}"
    if Job.exists(job_id, connection=redis):
        return False
    Queue(outbox.QUEUE, connection=redis).enqueue(
        PURGE_JOB,
        job_id=job_id,
        job_timeout=3600,
        result_ttl=2 * 86400,
        failure_ttl=2 * 86400,
    )
    return True
