"""/console/demo: what a demo (`involve serve --demo`) sent, and staff replying as a participant.

Only while the service runs as a demo (`Settings.demo`); anywhere else these pages are not
there (404). What was sent is asked of the demo's stand-ins for Twilio and Telegram
(bot/commands/demo_records.py), which also deliver a reply to the webhooks, signed as the
real providers would, so it goes through exactly what a participant's message goes through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from bot.commands import runtime
from bot.commands.demo import records
from bot.config import Settings
from bot.storage.models import ContactPoint, Participant
from webhooks.console import bp

MAX_REPLY = 1600  # a long text: ten segments


@dataclass
class Thread:
    """One participant's conversation by one kind of message, as the stand-ins saw it."""

    kind: str
    address: str
    records: list[records.Record] = field(default_factory=list)
    person_id: int | None = None  # who on the panel holds this address, if anyone
    name: str | None = None

    @property
    def buttons(self) -> list[list[dict[str, str]]]:
        """The buttons under the newest message we sent, the only ones that still answer."""
        for record in reversed(self.records):
            if record.direction == "out":
                return record.buttons
        return []

    @property
    def latest(self) -> int:
        return self.records[-1].n


def _settings() -> Settings:
    settings: Settings = current_app.extensions["involve.settings"]
    if not settings.demo:
        abort(404)
    return settings


def _threads(records: list[records.Record]) -> list[Thread]:
    found: dict[tuple[str, str], Thread] = {}
    for record in records:
        key = (record.kind, record.address)
        found.setdefault(key, Thread(*key)).records.append(record)
    threads = sorted(found.values(), key=lambda t: t.latest, reverse=True)
    if threads:
        # Whoever on the panel holds the address (a number is one person's, on every channel
        # that reaches it).
        with runtime.database().read() as db:
            holders = db.execute(
                select(ContactPoint.address, Participant.id, Participant.name)
                .join(Participant, Participant.id == ContactPoint.participant_id)
                .where(ContactPoint.address.in_({t.address for t in threads}))
            ).all()
        named = {address: (person_id, name) for address, person_id, name in holders}
        for thread in threads:
            thread.person_id, thread.name = named.get(thread.address, (None, None))
    return threads


@bp.get("/demo")
def demo_outbox() -> str:
    settings = _settings()
    problem = None
    try:
        threads = _threads(records.fetch_records(settings.twilio_api_base_url))
    except records.StandInError as exc:
        threads, problem = [], str(exc)
    return render_template(
        "console/demo.html", threads=threads, problem=problem, replies_by=records.REPLIES_BY
    )


@bp.post("/demo/reply")
def demo_reply() -> Any:
    settings = _settings()
    kind = request.form.get("kind", "")
    address = request.form.get("address", "")[:40]
    typed = request.form.get("reply", "")[:MAX_REPLY]
    button = request.form.get("button", "")[:64]
    if kind not in records.REPLIES_BY or not address or not (typed.strip() or button):
        flash("Write a reply first, then press Send.", "error")
        return redirect(url_for("console.demo_outbox"))
    try:
        records.send_reply(settings.twilio_api_base_url, kind, address, text=typed, button=button)
    except records.StandInError as exc:
        flash(f"The reply could not be delivered: {exc}", "error")
    else:
        flash("Your reply was delivered, as the participant's.", "info")
    # Post/redirect/get: reloading the page does not send the reply again.
    return redirect(url_for("console.demo_outbox") + "#latest")
