"""Who is signed in to the console, the session cookie's settings, and sign-in limits."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from flask import Flask, Request, session
from flask.sessions import SecureCookieSessionInterface, SessionMixin
from sqlalchemy.orm import Session

from bot.commands import runtime
from bot.config import Settings
from bot.storage.models import StaffAccount

log = logging.getLogger(__name__)
SESSION_HOURS = 8  # idle: a session unused this long ends (the cookie's own lifetime)
# Absolute: a session in use all along still ends this long after its sign-in, so a cookie
# copied off a machine left signed in is not good forever. A long working day, with room.
SESSION_MAX_HOURS = 12
# Failed sign-ins allowed in one window before every try is refused until the window ends:
# enough for someone fixing a typo, far too few to guess a 12-character password.
WINDOW_SECONDS = 15 * 60
FAILED_PER_EMAIL = 5
FAILED_PER_CLIENT = 20
SECRET_FILE = "console-secret-key"


def secret_key(settings: Settings) -> str:
    """CONSOLE_SECRET_KEY, else a random key kept in the instance folder (made once, 0600).

    The key signs session cookies, so every web process of one instance must share it: the
    file does that on one machine; several machines set CONSOLE_SECRET_KEY.
    """
    given = os.environ.get("CONSOLE_SECRET_KEY", "").strip()
    if given:
        if len(given) < 32:
            raise SystemExit("involve: CONSOLE_SECRET_KEY must be at least 32 characters")
        return given
    path = Path(settings.instance_path) / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass  # another web process made it first: use theirs
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    for _ in range(50):  # the other process may not have written it yet
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.02)
    raise SystemExit(f"involve: {path} is empty; delete it and start again")


class WebhooksHaveNoSession(SecureCookieSessionInterface):
    """Providers' webhooks carry no cookie and never sign anyone in: they skip opening a
    session (its signing serializer cost more than a webhook's own parsing)."""

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        if request.path.startswith("/webhooks/"):
            return self.make_null_session(app)
        return super().open_session(app, request)


def configure(app: Flask, settings: Settings) -> None:
    app.session_interface = WebhooksHaveNoSession()
    if not app.config.get("SECRET_KEY"):  # Flask's default is None, so setdefault would not do
        app.config["SECRET_KEY"] = secret_key(settings)
    app.config.update(
        SESSION_COOKIE_NAME="involve_console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Local development runs on plain http://127.0.0.1, where a Secure cookie is never sent.
        SESSION_COOKIE_SECURE=settings.public_base_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
        # CSRF is checked by the console's own before_request, not app-wide: the webhooks and
        # the admin API are called by machines with signatures or a bearer token instead.
        WTF_CSRF_CHECK_DEFAULT=False,
        # The token lives as long as the session; an hour's limit would lose a half-typed form.
        WTF_CSRF_TIME_LIMIT=None,
    )


def sign_in(account: StaffAccount) -> None:
    # A fresh session: nothing set before sign-in (a planted cookie) carries over.
    session.clear()
    session.permanent = True
    session["staff_id"] = account.id
    session["epoch"] = account.session_epoch
    session["signed_in_at"] = int(time.time())


def outlived(now: float | None = None) -> bool:
    """Whether this session began more than SESSION_MAX_HOURS ago (or says nothing of when,
    as sessions signed in before the limit existed: those sign in once more)."""
    began = session.get("signed_in_at")
    if not isinstance(began, int):
        return True
    return (now if now is not None else time.time()) - began > SESSION_MAX_HOURS * 3600


def current(db: Session) -> StaffAccount | None:
    staff_id = session.get("staff_id")
    if not isinstance(staff_id, int) or outlived():
        return None
    account = db.get(StaffAccount, staff_id)
    if (
        account is None
        or account.disabled_at is not None
        or account.session_epoch != session.get("epoch")
    ):
        return None
    return account


# --- sign-in limits ----------------------------------------------------------------------


def _keys(email: str, client: str) -> list[str]:
    window = int(time.time() // WINDOW_SECONDS)
    # Hashed: Redis need not hold staff emails, nor whatever was typed into the email field.
    who = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return [
        f"involve:console-signin:email:{who}:{window}",
        f"involve:console-signin:client:{client}:{window}",
    ]


@dataclass(frozen=True)
class Attempt:
    """A sign-in attempt, counted before its password is checked.

    `wait`: seconds until sign-in may be tried again, or None when this attempt may go on.
    `noteworthy`: whether the audit log should hear of it if it is refused: the first try
    for this email or client in a window, and the first one refused for being over the
    limit. Every other refusal is counted here and not written down, or a guesser (blocked
    or not) floods the audit log.
    """

    wait: int | None
    noteworthy: bool


def attempt(email: str, client: str, limits: tuple[int, int]) -> Attempt:
    """Count a sign-in attempt now (INCR first, then compare), as if it will fail.

    Counting before the slow password check is what makes the limit hold under concurrent
    requests: eleven tries at once each see their own count, not the same zero. A right
    password gives its count back (`succeeded`). Redis away: allowed (the limit is advisory,
    as the admin API's), and argon2 stays slow; every refusal is then audited.
    """
    try:
        pipe = runtime.redis().pipeline()
        for key in _keys(email, client):
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS * 2)
        counts = [int(n) for n in pipe.execute()[0::2]]
    except Exception:
        log.warning("console sign-in limit unavailable (Redis down); allowing the attempt")
        return Attempt(None, True)
    over = any(used > limit for used, limit in zip(counts, limits, strict=True))
    noteworthy = any(used in (1, limit + 1) for used, limit in zip(counts, limits, strict=True))
    wait = WINDOW_SECONDS - int(time.time() % WINDOW_SECONDS) if over else None
    return Attempt(wait, noteworthy)


def succeeded(email: str, client: str) -> None:
    """A right password: its attempt no longer counts against the email or the client."""
    try:
        pipe = runtime.redis().pipeline()
        for key in _keys(email, client):
            pipe.decr(key)
        pipe.execute()
    except Exception:
        log.warning("console sign-in limit unavailable (Redis down)")
