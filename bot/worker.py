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


def make_worker(redis: Redis, name: str | None = None) -> InvolveWorker:
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
