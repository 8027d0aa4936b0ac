"""The process's settings, database and Redis, built once on first use.

The web app, the worker, rq jobs and the CLI all reach them here, so a job that receives only a
row id can open the same database the web process wrote to. Tests call `configure`.
"""

from __future__ import annotations

import os
import threading

from redis import Redis

from bot import channels
from bot.config import Settings
from bot.conversations import inbox, outbox
from bot.scripts.library import SurveyLibrary
from bot.storage.db import INBOX, OUTBOX, Database, Queued

_lock = threading.Lock()
_settings: Settings | None = None
_database: Database | None = None
_redis: Redis | None = None
_library: SurveyLibrary | None = None


def configure(settings: Settings) -> None:
    """Use these settings from now on (closing what was opened for earlier ones)."""
    global _settings, _database, _redis, _library
    with _lock:
        if _database is not None:
            _database.dispose()
        if _redis is not None:
            _redis.close()
        _settings, _database, _redis, _library = settings, None, None, None


def settings() -> Settings:
    global _settings
    with _lock:
        if _settings is None:
            _settings = channels.load_settings()
        return _settings


def database() -> Database:
    global _database
    current = settings()
    with _lock:
        if _database is None:
            _database = Database(current.database_url, after_commit=_dispatch_after_commit)
            _connect_receivers()
        return _database


def _connect_receivers() -> None:
    """What listens to conversations' events, wired where the process is (not by imports)."""
    # Here, not at the top: importing this module must not be what wires campaigns (a worker
    # that only ever retried inbox messages still wires them: tests/test_worker.py).
    from bot.cycle import campaigns

    campaigns.connect()


def _dispatch_after_commit(what: str, rows: Queued) -> None:
    """What a unit of work queued, handed to rq once it has committed."""
    if what == OUTBOX:
        outbox.dispatch(redis(), rows)
    elif what == INBOX:
        queue = outbox.queue(redis())
        for message_id, when in rows:
            if when is None:
                queue.enqueue(inbox.RETRY_JOB, message_id, job_timeout=300, result_ttl=0)
            else:
                queue.enqueue_at(when, inbox.RETRY_JOB, message_id, job_timeout=300, result_ttl=0)


def redis() -> Redis:
    global _redis
    current = settings()
    with _lock:
        if _redis is None:
            url = current.redis_url or _embedded_redis_url(current)
            if not url:
                raise RuntimeError(
                    "REDIS_URL is not set and `involve serve` is not running here to lend its Redis"
                )
            _redis = Redis.from_url(url)
        return _redis


def library() -> SurveyLibrary:
    global _library
    current = settings()
    with _lock:
        if _library is None:
            _library = SurveyLibrary(current.conversations_dir)
        return _library


def _reset_after_fork() -> None:
    """A forked child (rq's work horse) must not share its parent's connections."""
    global _redis
    if _database is not None:
        _database.engine.dispose(close=False)
    _redis = None


os.register_at_fork(after_in_child=_reset_after_fork)


def _embedded_redis_url(current: Settings) -> str | None:
    """The Redis that `involve serve` embeds for this instance folder, while it runs."""
    # Here: `serve` is the whole local service (web, worker, Redis); only this lookup needs it.
    from bot.commands.serve import _redis_dir

    socket = _redis_dir(current) / "redis.sock"
    return f"unix://{socket}" if socket.exists() else None
