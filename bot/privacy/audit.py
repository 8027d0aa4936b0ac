"""The audit log: who looked at, erased, exported, launched or purged what, and when.

Rows name what was acted on by row id ("participant 12") and carry counts, never a name, a
number or anyone's words, so the log itself can be kept after the people in it are erased.
"""

from __future__ import annotations

import getpass
import os
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.storage.models import AuditEvent, utcnow

ADMIN_API = "admin-api"
WORKER = "worker"
ACTIONS = (
    "subject_access",
    "erasure",
    "export",
    "launch",
    "retention_purge",
    # The console: who signed in or out, a refused sign-in, and who opened a person's page.
    "sign_in",
    "sign_in_refused",
    "sign_out",
    "view_participant",
    # Verbs whose callers name an actor (the console always does): who imported the panel,
    # made or closed a campaign, or sent "you said, we did".
    "import",
    "create_campaign",
    "close",
    "send_feedback",
    # Staff accounts: who was let in, shut out, or given a new password.
    "staff_added",
    "staff_disabled",
    "staff_enabled",
    "staff_password",
)


def staff_actor(email: str) -> str:
    """`staff:<email>`: a console user, as they signed in."""
    return f"staff:{email}"[:100]


def cli_actor() -> str:
    """`cli:<os user>`: the shell's user is the best "who" a command line has."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = os.environ.get("USER") or "unknown"
    return f"cli:{user}"[:100]


def record(
    session: Session, actor: str, action: str, target: str | None = None, **detail: Any
) -> AuditEvent:
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    event = AuditEvent(actor=actor, action=action, target=target, detail=detail, at=utcnow())
    session.add(event)
    return event


def as_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": event.at.isoformat(),
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "detail": event.detail or {},
    }


def recent(session: Session, limit: int = 100, before: int | None = None) -> list[AuditEvent]:
    """Newest first; `before` (an event id) pages back through older ones."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if before is not None:
        query = query.where(AuditEvent.id < before)
    return list(session.scalars(query))
