"""GET /healthz: the database and Redis, each "ok" or what is wrong; 503 when either is down."""

from __future__ import annotations

from flask import Blueprint, jsonify

from bot import runtime
from bot.config import Settings

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    checks: dict[str, str] = {}
    try:
        runtime.database().ping()
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
        channels=channel_states(runtime.settings()),
    ), (200 if healthy else 503)


def channel_states(settings: Settings) -> dict[str, str]:
    """Which channels can reach people, and what to set where one cannot."""
    twilio = (
        "on"
        if settings.twilio_enabled and settings.twilio_from_number
        else ("off: set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER")
    )
    telegram = (
        "on"
        if settings.telegram_enabled
        else "off: set TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET"
    )
    return {"sms": twilio, "voice": twilio, "telegram": telegram}
