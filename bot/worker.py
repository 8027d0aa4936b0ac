"""The rq worker: runs jobs, runs rq's scheduler, and every minute enqueues the reconciler.

The reconciler is enqueued from the worker's own maintenance loop rather than scheduled in
Redis, so a flushed or restarted Redis cannot lose it.
"""

from __future__ import annotations

import logging

from redis import Redis
from rq import Queue, Worker

from bot import outbox

RECONCILE_JOB_ID = "involve-reconcile-outbox"
RECONCILE_INTERVAL = 60


def enqueue_reconcile(redis: Redis) -> None:
    from rq.job import Job, JobStatus

    from bot.jobs import reconcile_outbox

    try:
        existing = Job.fetch(RECONCILE_JOB_ID, connection=redis)
        if existing.get_status(refresh=True) in (JobStatus.QUEUED, JobStatus.STARTED):
            return
    except Exception:
        pass
    Queue(outbox.QUEUE, connection=redis).enqueue(
        reconcile_outbox, job_id=RECONCILE_JOB_ID, job_timeout=600, result_ttl=3600
    )


class InvolveWorker(Worker):
    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        try:
            enqueue_reconcile(self.connection)
        except Exception:  # never let bookkeeping stop the worker
            logging.getLogger(__name__).exception("could not enqueue the outbox reconciler")


def preload() -> None:
    """Import what jobs use once, in the worker, so each forked work horse does not repeat it:
    twilio's REST modules alone cost a work horse a fifth of a second."""
    import twilio.rest.api.v2010.account.call
    import twilio.rest.api.v2010.account.message  # noqa: F401

    import bot.campaigns
    import bot.feedback
    import bot.jobs  # noqa: F401


def make_worker(redis: Redis, name: str | None = None) -> InvolveWorker:
    preload()
    return InvolveWorker(
        [Queue(outbox.QUEUE, connection=redis)],
        connection=redis,
        name=name,
        maintenance_interval=RECONCILE_INTERVAL,
    )


def run(redis: Redis, burst: bool = False) -> None:
    worker = make_worker(redis)
    enqueue_reconcile(redis)
    worker.work(burst=burst, with_scheduler=True, logging_level="INFO")
