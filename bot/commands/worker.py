"""The rq worker: runs jobs, runs rq's scheduler, and keeps the reconciler on a fixed beat.

The reconciler is enqueued by rq's own cron support (`rq.cron.CronScheduler`), driven from a
thread of the worker process, so it comes every minute whatever the worker is doing — not
only when an idle worker's blocking dequeue times out — and a flushed or restarted Redis cannot
lose it (the schedule lives in this process, not in Redis).
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import rq
from redis import Redis
from rq import Queue
from rq.cron import CronScheduler
from sqlalchemy import select

from bot import channels
from bot.commands import jobs, runtime
from bot.config import Settings
from bot.conversations import outbox
from bot.logmask import redact
from bot.privacy import retention
from bot.sending import pacing
from bot.storage.db import Database
from bot.storage.models import Message, utcnow
from bot.storage.status import Direction, Outbound

log = logging.getLogger(__name__)
RECONCILE_INTERVAL = 60  # seconds
# The worker's heartbeat: when a worker's beat last ran (ISO 8601, UTC). /healthz reads it; no
# expiry, so a worker gone for a day still shows when it was last seen.
BEAT_KEY = "involve:worker:beat"
# A beat comes at least once a RECONCILE_INTERVAL; missing two in a row means no worker runs.
BEAT_STALE_AFTER = 3 * RECONCILE_INTERVAL


# What the running worker judges by: its channels, quiet hours and time zone. The CLI in
# another terminal has its own environment, and says so where the two differ.
VIEW_KEY = "involve:worker:settings"


def service_view(settings: Settings) -> dict[str, Any]:
    return {
        "channels": channels.states(settings),
        "quiet_hours": ",".join(str(w) for w in settings.quiet_hours) or "none",
        "timezone": str(settings.timezone),
    }


def beat(redis: Redis, now: datetime | None = None, view: dict[str, Any] | None = None) -> None:
    with redis.pipeline() as pipe:
        pipe.set(BEAT_KEY, (now or datetime.now(UTC)).isoformat(timespec="seconds"))
        if view is not None:
            pipe.set(VIEW_KEY, json.dumps(view, sort_keys=True))
        pipe.execute()


def worker_view(redis: Redis) -> dict[str, Any] | None:
    """The settings the last worker to beat judges by, or None if no worker ever said."""
    raw = redis.get(VIEW_KEY)
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def last_beat(redis: Redis) -> datetime | None:
    raw = redis.get(BEAT_KEY)
    if raw is None:
        return None
    try:
        return datetime.fromisoformat(raw.decode() if isinstance(raw, bytes) else raw)
    except ValueError:
        return None


def worker_state(redis: Redis, now: datetime | None = None) -> dict[str, Any]:
    """{"alive", "last_seen"}: is a worker's beat running (it enqueues the reconciler, and its
    thread beats even while a long job runs), and when one was last seen."""
    seen = last_beat(redis)
    now = now or datetime.now(UTC)
    alive = seen is not None and (now - seen).total_seconds() <= BEAT_STALE_AFTER
    return {"alive": alive, "last_seen": seen.isoformat() if seen else None}


def make_cron(redis: Redis, interval: int = RECONCILE_INTERVAL) -> CronScheduler:
    """What the worker runs on a schedule. A job still waiting after its interval is dropped
    (`ttl`), so a busy worker does not collect a pile of them."""
    cron = CronScheduler(connection=redis, logging_level=logging.WARNING)
    cron.register(
        jobs.reconcile_outbox,
        outbox.QUEUE,
        interval=interval,
        job_timeout=600,
        ttl=interval,
        result_ttl=600,
    )
    return cron


class CronThread(threading.Thread):
    """Enqueues the cron jobs as they fall due, until stopped."""

    def __init__(
        self, redis: Redis, interval: int = RECONCILE_INTERVAL, settings: Settings | None = None
    ):
        super().__init__(name="involve-cron", daemon=True)
        self.view = service_view(settings) if settings is not None else None
        # redis-py's pool is thread-safe, and it starts afresh in a forked work horse.
        self.cron = make_cron(redis, interval)
        self.interval = interval
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                beat(self.cron.connection, view=self.view)
                self.cron.enqueue_jobs()
                # Once a UTC day (its job id carries the date), when RETENTION_DAYS is set.
                retention.enqueue_if_due(self.cron.connection, runtime.settings())
                wait = self.cron.calculate_sleep_interval()
            except Exception:  # Redis away: try again shortly, never stop
                log.warning("could not enqueue scheduled jobs; trying again in 5 s")
                wait = 5
            self.stopping.wait(max(min(wait, self.interval), 0.2))

    def stop(self) -> None:
        self.stopping.set()


def preload() -> None:
    """Import what jobs use once, in the worker, so each forked work horse does not repeat it:
    twilio's REST modules alone cost a work horse a fifth of a second."""
    import twilio.rest.api.v2010.account.call
    import twilio.rest.api.v2010.account.message  # noqa: F401


class Worker(rq.Worker):
    """rq's worker, except that a failed job's traceback is kept in Redis with phone numbers
    masked and the values PostgreSQL quoted hidden (`bot.logmask.redact`), as in the logs:
    Redis is a copy that erasure cannot search."""

    def handle_job_failure(self, job: Any, queue: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("exc_string"):
            kwargs["exc_string"] = redact(kwargs["exc_string"])
        return super().handle_job_failure(job, queue, *args, **kwargs)

    def unsubscribe(self) -> None:
        """Stop listening for rq's commands, at once.

        rq unsubscribes and then stops the listening thread; Redis's reply to the unsubscribe
        wakes the thread. When the thread reads that reply before it is told to stop (a busy
        machine), it goes back to waiting, up to rq's 60 s, for a subscription that never
        comes, and redis-py (8.2 on) makes `stop()` wait for it: every burst worker's end and
        every worker's shutdown took up to a minute longer. Told to stop first, the thread
        leaves as soon as the reply wakes it.
        """
        thread = self.pubsub_thread
        running = getattr(thread, "_running", None)
        if running is None:  # not listening, or a redis-py that stops its thread differently
            super().unsubscribe()
            return
        running.clear()  # what PubSubWorkerThread.stop() does before it waits
        self.pubsub.unsubscribe()
        thread.join(timeout=5)
        self.pubsub.close()


def _own_client(redis: Redis) -> Redis:
    """A client with a pool of its own for the worker's blocking dequeue. redis-py times out
    every read after 5 s unless told otherwise; rq raises that for connections made after the
    worker starts, but a connection already in the pool (the ping that checked Redis was up)
    keeps 5 s, and an idle worker's wait for jobs then fails every 5 s and backs off for up to
    a minute, delaying what is enqueued next."""
    pool = redis.connection_pool
    return Redis(
        connection_pool=type(pool)(connection_class=pool.connection_class, **pool.connection_kwargs)
    )


def make_worker(redis: Redis, name: str | None = None) -> Worker:
    preload()
    own = _own_client(redis)
    return Worker([Queue(outbox.QUEUE, connection=own)], connection=own, name=name)


def retime_held(database: Database, redis: Redis, settings: Settings) -> int:
    """New contact held for quiet hours that this worker's QUIET_HOURS would send sooner
    (QUIET_HOURS emptied or changed, then the worker restarted) goes at the new time, not
    the old one. Only rows never tried are held that way: a retry's or a call-again's delay
    is kept. Returns how many were re-timed."""
    now = utcnow()
    sooner: dict[datetime, list[int]] = {}
    with database.session() as session:
        held = session.scalars(
            select(Message).where(
                Message.direction == Direction.OUT,
                Message.status == Outbound.PENDING,
                Message.kind.in_(pacing.NEW_CONTACT),
                Message.attempts == 0,
                Message.send_after > now + timedelta(minutes=1),
            )
        ).all()
        for message in held:
            due = pacing.next_allowed(now, settings.quiet_hours, settings.timezone)
            if due < message.send_after - timedelta(minutes=1):
                message.send_after = due
                sooner.setdefault(due, []).append(message.id)
    if sooner:
        outbox.dispatch_many(redis, [(ids, due) for due, ids in sooner.items()])
        log.info(
            "re-timed %d held messages for QUIET_HOURS %s",
            sum(map(len, sooner.values())),
            ",".join(str(w) for w in settings.quiet_hours) or "none",
        )
    return sum(len(ids) for ids in sooner.values())


def run(redis: Redis, burst: bool = False) -> None:
    settings = runtime.settings()
    try:
        retime_held(runtime.database(), redis, settings)
    except Exception:  # never stop a worker from starting; the old times still hold
        log.warning("could not re-time held messages for the current QUIET_HOURS")
    worker = make_worker(redis)
    cron = CronThread(redis, settings=settings)
    cron.start()
    try:
        worker.work(burst=burst, with_scheduler=True, logging_level="INFO")
    finally:
        cron.stop()
