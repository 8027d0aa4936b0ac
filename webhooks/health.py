"""GET /healthz: the database and Redis, each "ok" or what is wrong; 503 when either is down.

The worker is reported too (`{"alive", "last_seen"}` from its beat): with none alive nothing
is sent, so the status is "degraded", still 200 — the web app itself can serve, and the
contract keeps 503 for a database or Redis that is down.
"""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from redis import Redis

from bot import channels
from bot.commands import runtime
from bot.commands.worker import worker_state
from bot.conversations import inbox

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    checks: dict[str, str] = {}
    inbound: dict[str, int] | None = None
    try:
        with runtime.database().read() as session:
            inbound = inbox.problems(session)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = _down("database", exc)
    worker: dict[str, object] | None = None
    try:
        _ping_fresh(runtime.redis())
        checks["redis"] = "ok"
        worker = worker_state(runtime.redis())
    except Exception as exc:
        checks["redis"] = _down("redis", exc)
    healthy = all(v == "ok" for v in checks.values())
    status = "unhealthy" if not healthy else "ok" if worker and worker["alive"] else "degraded"
    return jsonify(
        status=status,
        **checks,
        # Nothing is sent, launched or retried without a worker: start `involve worker`.
        worker=worker,
        channels=channels.states(runtime.settings()),
        # Messages from people whose handling failed: retried automatically, or given up on
        # (those need a person to look: subject access shows them with their reason).
        inbound=inbound,
    ), (200 if healthy else 503)


def _down(what: str, exc: Exception) -> str:
    """What anyone may read: the kind of failure. The driver's message names the server's
    host, port and role (`connection to server at "db.internal" (10.0.0.5), port 5432 failed
    ... role "involve"`): that goes to the operator's log, not to an unauthenticated page."""
    log.warning("healthz: %s is down: %s", what, str(exc).splitlines()[0][:300] if str(exc) else "")
    return f"down: {type(exc).__name__}"


def _ping_fresh(client: Redis) -> None:
    """PING over a new connection, as a worker's job would open one.

    A pooled connection can outlive the server's socket file (another process removed it),
    and would then report "ok" while every new connection, and so every job, fails.
    """
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "socket_connect_timeout": 2, "socket_timeout": 2}
    connection = pool.connection_class(**kwargs)
    try:
        connection.connect()
        connection.send_command("PING")
        connection.read_response()
    finally:
        connection.disconnect()
