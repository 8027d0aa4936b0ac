"""GET /healthz: the database and Redis, each "ok" or what is wrong; 503 when either is down."""

from __future__ import annotations

from flask import Blueprint, jsonify

from bot import channels, inbox, runtime

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    checks: dict[str, str] = {}
    inbound: dict[str, int] | None = None
    try:
        with runtime.database().read() as session:
            inbound = inbox.problems(session)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"down: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    try:
        runtime.redis().ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"down: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    healthy = all(v == "ok" for v in checks.values())
    return jsonify(
        status="ok" if healthy else "unhealthy",
        **checks,
        channels=channels.states(runtime.settings()),
        # Messages from people whose handling failed: retried automatically, or given up on
        # (those need a person to look: subject access shows them with their reason).
        inbound=inbound,
    ), (200 if healthy else 503)
