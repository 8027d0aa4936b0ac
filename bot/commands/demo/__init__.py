"""`involve serve --demo`: a whole cycle on one machine, with nothing sent to anyone.

Twilio and Telegram are local stand-ins (bot/commands/demo/stand_ins.py) started here, beside
the usual `involve serve`; the real senders, worker and webhooks run unchanged against them.
The demo keeps its own instance folder (`instance/demo`: its SQLite database, its embedded
Redis), so nothing it imports, launches or records mixes with a real panel, and it makes a
staff account for the console. The console shows a demo banner on every page and a "Demo:
messages sent" page, where staff reply as a participant; `involve demo text` does the same
from a terminal.

Never in production: it refuses to start beside real provider settings, a public
PUBLIC_BASE_URL, a database or Redis of someone else's, or a --host other than this machine.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import click

from bot import channels
from bot.commands import runtime
from bot.commands.demo import records, stand_ins
from bot.commands.output import echo
from bot.config import Settings, is_local_url
from bot.cycle import staff
from bot.phone_numbers import InvalidPhoneNumber, normalise_phone
from bot.storage import db

STAFF_EMAIL = "demo@example.org"
STAND_INS_FILE = "stand-ins.url"  # where `involve demo text` finds the running demo's stand-ins
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# Real providers' settings: the demo brings stand-ins of its own, and must never be mistaken
# for (or mixed with) a service that reaches people.
PROVIDER_SETTINGS = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_FROM_NUMBER",
    "TWILIO_API_BASE_URL",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_WEBHOOK_SECRET",
    "TELEGRAM_API_BASE_URL",
    "TELEGRAM_BOT_USERNAME",
)
DEMO_ORG_NAME = "Demo charity"
DEMO_SUPPRESSION_KEY = "demo-suppression-key-for-the-demo-database-only"


def _set(env: Mapping[str, str], name: str) -> bool:
    return bool((env.get(name) or "").strip())


def refusal(env: Mapping[str, str], host: str) -> str | None:
    """Why a demo must not start here, or None: one line naming what to change."""
    real = [name for name in PROVIDER_SETTINGS if _set(env, name)]
    if real:
        return (
            f"--demo never runs beside real provider settings, and {', '.join(real)} "
            f"{'is' if len(real) == 1 else 'are'} set: the demo brings local stand-ins of its "
            "own. Unset them in this terminal (or use another one) and start the demo again"
        )
    public = (env.get("PUBLIC_BASE_URL") or "").strip()
    if public and not is_local_url(public):
        return (
            f"--demo is for this machine only, but PUBLIC_BASE_URL is {public}, which looks "
            "like a live service: unset it for the demo"
        )
    database = (env.get("DATABASE_URL") or "").strip()
    if database and not database.startswith("sqlite"):
        return (
            "--demo keeps its own SQLite database (in instance/demo), never one that may hold "
            "a real panel: unset DATABASE_URL for the demo"
        )
    if _set(env, "REDIS_URL"):
        return (
            "--demo runs its own embedded Redis, so a real worker never picks up its jobs: "
            "unset REDIS_URL for the demo"
        )
    if host not in LOCAL_HOSTS:
        return (
            f"--demo listens on this machine only (its passwords and tokens are no secret), "
            f"not on {host}: leave out --host"
        )
    return None


def instance_folder(env: Mapping[str, str]) -> Path:
    """The demo's own folder, inside the usual instance folder."""
    return Path((env.get("INVOLVE_INSTANCE_PATH") or "").strip() or "instance").absolute() / "demo"


def environment(
    env: Mapping[str, str], stand_ins_url: str, public_base_url: str, instance: Path
) -> dict[str, str]:
    """The settings a demo runs with, on top of `env`: stand-ins for every provider; no
    quiet hours unless QUIET_HOURS is set (a demo at 21:00 would otherwise hold every
    invitation until morning)."""
    demo = {
        "INVOLVE_DEMO": "yes",
        "INVOLVE_INSTANCE_PATH": str(instance),
        "PUBLIC_BASE_URL": public_base_url,
        "TWILIO_ACCOUNT_SID": stand_ins.ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": stand_ins.AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": stand_ins.FROM_NUMBER,
        "TWILIO_API_BASE_URL": stand_ins_url,
        "TELEGRAM_BOT_TOKEN": stand_ins.BOT_TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": stand_ins.WEBHOOK_SECRET,
        "TELEGRAM_API_BASE_URL": stand_ins_url,
        "TELEGRAM_BOT_USERNAME": stand_ins.BOT_USERNAME,
    }
    if not _set(env, "ORG_NAME"):
        demo["ORG_NAME"] = DEMO_ORG_NAME
    if not _set(env, "SUPPRESSION_KEY"):
        demo["SUPPRESSION_KEY"] = DEMO_SUPPRESSION_KEY
    if "QUIET_HOURS" not in env:
        demo["QUIET_HOURS"] = ""
    return demo


def staff_account(database: db.Database) -> str:
    """The console's demo account, with a fresh password (returned) each time a demo starts."""
    password = secrets.token_urlsafe(12)
    with database.session() as session:
        if staff.find(session, STAFF_EMAIL) is None:
            staff.add(session, STAFF_EMAIL, password)
        else:
            staff.enable(session, STAFF_EMAIL)
            staff.set_password(session, STAFF_EMAIL, password)
    return password


def _already_serving(instance: Path) -> bool:
    """Is a demo already running in this folder? (`serve` itself holds serve.lock; asked
    before the stand-ins start and the running demo's account and files are changed.)"""
    try:
        import fcntl
    except ImportError:  # Windows: serve's own lock is advisory there too
        return False
    path = instance / "serve.lock"
    if not path.exists():
        return False
    with open(path, "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
    return False


def serve(port: int, host: str, run: Callable[[Settings], int]) -> int:
    """Start the stand-ins, set the demo's settings in this process's environment (which the
    web and worker processes inherit), and `run` the service with them."""
    problem = refusal(os.environ, host)
    if problem is not None:
        echo(f"involve: {problem}", err=True)
        return 1
    instance = instance_folder(os.environ)
    instance.mkdir(parents=True, exist_ok=True)
    if _already_serving(instance):
        echo(
            f"involve: a demo is already running in {instance}; stop it first (Ctrl-C there)",
            err=True,
        )
        return 1
    public = (os.environ.get("PUBLIC_BASE_URL") or "").strip() or f"http://localhost:{port}"
    providers = stand_ins.StandIns(public).start()
    pointer = instance / STAND_INS_FILE
    try:
        os.environ.update(environment(os.environ, providers.url, public, instance))
        settings = channels.load_settings()  # the core's and each channel's own
        runtime.configure(settings)
        db.upgrade(settings.database_url)
        password = staff_account(runtime.database())
        runtime.configure(settings)  # the web and worker processes open their own
        pointer.write_text(providers.url + "\n", encoding="utf-8")
        for line in (
            "DEMO: nothing reaches anyone. Texts, calls and Telegram messages go to local "
            f"stand-ins for Twilio and Telegram ({providers.url}), with their own data in {instance}",
            f"demo console: {public}/console/ , sign in as {STAFF_EMAIL} with password {password}",
            f"demo: what was sent is at {public}/console/demo , where you can reply as a "
            "participant (or: involve demo text 07700900001 yes)",
        ):
            echo(f"involve: {line}")
        return run(settings)
    finally:
        pointer.unlink(missing_ok=True)
        providers.stop()


def running_stand_ins(env: Mapping[str, str]) -> str:
    """The URL of the stand-ins of the demo running from this folder."""
    pointer = instance_folder(env) / STAND_INS_FILE
    try:
        return pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise click.ClickException(
            f"no demo is running here (no {pointer}): start one with `involve serve --demo`"
        ) from None


def text(address: str, words: str, telegram: bool = False, wait_seconds: float = 10.0) -> None:
    """`involve demo text`: deliver `words` from `address` through the running demo's
    stand-ins, and print what the participant would see in answer."""
    url = running_stand_ins(os.environ)
    if not telegram:
        try:
            address = normalise_phone(address)
        except InvalidPhoneNumber as exc:
            raise click.ClickException(f"{address!r} is not a phone number: {exc}") from None
    try:
        before = max((r.n for r in records.fetch_records(url)), default=0)
        answered = records.send_reply(
            url, records.CHAT if telegram else records.TEXT, address, text=words
        )
    except records.StandInError as exc:
        raise click.ClickException(str(exc)) from None
    echo(f"{address} wrote: {words}")
    if not answered:
        # Telegram's answers, and anything the worker sends, go out through the outbox.
        deadline = time.monotonic() + wait_seconds
        while not answered and time.monotonic() < deadline:
            time.sleep(0.25)
            answered = [
                r.text
                for r in records.fetch_records(url)
                if r.n > before and r.direction == "out" and r.address == address
            ]
    for said in answered:
        echo(f"answer: {said}")
    if not answered:
        echo("no answer yet; the console's demo page shows what comes later")
