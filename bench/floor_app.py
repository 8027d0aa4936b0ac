"""The second baseline: what a text costs with no application logic at all.

The same webhook, form and Twilio signature check as involve's (its own function), then the
database work the one writer does for an answer, on the same schema, as plain SQL on the driver
(no SQLAlchemy, no engine step, no rendering): on PostgreSQL BEGIN (the pool's connection check
too, as involve's), the person's
row found by their contact point (locked; both created if new; when they last wrote moved on
as involve moves it), their conversation (locked) and whether a message of theirs is
waiting for a retry, the conversation's state, the answer, the inbound row under its provider
id, the reply, COMMIT; on SQLite the same inside the same writers' turn, and grouped as
involve groups its writes there (`Database.together`: the texts one process's threads hand in
while one is written go in its transaction, a savepoint each, one COMMIT). It answers a fixed
TwiML string.

It does no more than involve for any text (less for a STOP, a survey's end or a newcomer), so
`bench.webhooks` runs it beside involve: the ratio it reaches is the ceiling for any change to
involve's code that keeps these statements per text. Past it needs fewer statements, storing
less, or answering before storing.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, abort, request

from bot.storage.db import _WriterQueue
from webhooks.signatures import signature_matches

URL = os.environ["DATABASE_URL"]
POSTGRES = URL.startswith("postgresql")
REPLY = "How useful would it be?\nReply with a number from 1 (Not useful) to 5 (Very useful)"
TWIML = f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{REPLY}</Message></Response>'
STATE = json.dumps({"question_id": "useful", "status": "active", "misses": 0, "answered": {}})

app = Flask(__name__)
TOKEN = os.environ["TWILIO_AUTH_TOKEN"]
connections = threading.local()
writers = None if POSTGRES else _WriterQueue(URL.split(":///", 1)[1])


def _sql(statement: str) -> str:
    if POSTGRES:
        return statement.replace("?", "%s")
    return re.sub(r" FOR UPDATE( OF \w+)?", "", statement)


PERSON = _sql(
    "SELECT participants.id, name, language, opted_out, recontact, joined_via,"
    " participants.channel, contact_points.id, contact_points.last_inbound_at"
    " FROM contact_points JOIN participants ON participants.id = contact_points.participant_id"
    " WHERE contact_points.channel = 'sms' AND contact_points.address = ?"
    " FOR UPDATE OF participants"
)
NEW_PERSON = _sql(
    "INSERT INTO participants (channel, tags, opted_out, created_at, updated_at)"
    " VALUES ('sms', '[]', ?, ?, ?) RETURNING id"
)
NEW_POINT = _sql(
    "INSERT INTO contact_points (participant_id, channel, address, position, verified_at,"
    " last_inbound_at, created_at, updated_at) VALUES (?, 'sms', ?, 0, ?, ?, ?, ?)"
    " ON CONFLICT (channel, address) DO NOTHING RETURNING id"
)
WROTE = _sql(
    "UPDATE contact_points SET last_inbound_at = ?, verified_at = ?, unreachable_at = NULL,"
    " unreachable_reason = NULL, updated_at = ? WHERE id = ?"
)
CONVERSATION = _sql(
    "SELECT conversations.id, conversations.state, EXISTS (SELECT messages.id FROM messages"
    " WHERE status = 'retrying' AND direction = 'in' AND messages.channel = 'sms'"
    " AND messages.address = ? LIMIT 1) AS waiting FROM conversations"
    " WHERE conversations.participant_id = ? AND conversations.status = 'active'"
    " FOR UPDATE OF conversations"
)
STEP = _sql("UPDATE conversations SET channel = ?, state = ?, last_activity_at = ? WHERE id = ?")
ANSWER = _sql(
    "INSERT INTO answers (conversation_id, participant_id, question_id, value, label, raw_text,"
    " unparsed, skipped, language, channel, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INBOUND = _sql(
    "INSERT INTO messages (participant_id, conversation_id, direction, channel, kind, address,"
    " body, provider_id, status, attempts, created_at, updated_at)"
    " VALUES (?, ?, 'in', 'sms', 'inbound', ?, ?, ?, 'processed', 0, ?, ?)"
    " ON CONFLICT (channel, direction, provider_id) DO NOTHING RETURNING id"
)
REPLIED = _sql(
    "INSERT INTO messages (participant_id, conversation_id, in_reply_to_id, direction, channel,"
    " kind, address, body, status, attempts, sent_at, created_at, updated_at)"
    " VALUES (?, ?, ?, 'out', 'sms', 'reply', ?, ?, 'replied', 0, ?, ?, ?)"
)


def _connection() -> Any:
    found = getattr(connections, "db", None)
    if found is None:
        if POSTGRES:
            import psycopg

            # Transactions begun and ended below, in the statements SQLAlchemy would send.
            found = psycopg.connect(
                URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
            )
        else:
            import sqlite3

            found = sqlite3.connect(
                URL.split(":///", 1)[1], isolation_level=None, check_same_thread=False
            )
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
                found.execute(f"PRAGMA {pragma}")
        connections.db = found
    return found


def _store(db: Any, phone: str, sid: str, body: str) -> None:
    now: Any = datetime.now(UTC).replace(tzinfo=None)
    if not POSTGRES:
        now = now.isoformat(" ")  # as SQLAlchemy stores a time in SQLite
    cursor = db.cursor()
    # On PostgreSQL the BEGIN is also the pool's check that the connection is alive, as
    # involve's (`bot.storage.db._ping_psycopg`).
    cursor.execute("BEGIN" if POSTGRES else "BEGIN IMMEDIATE")
    try:
        _write(cursor, phone, sid, body, now)
    except BaseException:
        cursor.execute("ROLLBACK")
        raise
    cursor.execute("COMMIT")


def _write(cursor: Any, phone: str, sid: str, body: str, now: Any) -> None:
    person = cursor.execute(PERSON, (phone,)).fetchone()
    if person is None:
        person = cursor.execute(NEW_PERSON, (False, now, now)).fetchone()
        cursor.execute(NEW_POINT, (person[0], phone, now, now, now, now)).fetchone()
    elif person[8] is None:
        # involve moves it on at most every few minutes: in a run, each person's first text.
        cursor.execute(WROTE, (now, now, now, person[7]))
    person_id = person[0]
    conversation = cursor.execute(CONVERSATION, (phone, person_id)).fetchone()
    conversation_id = conversation[0] if conversation is not None else None
    if conversation_id is not None:
        cursor.execute(STEP, ("sms", STATE, now, conversation_id))
        answer = (conversation_id, person_id, sid, body, body, body, False, False, "en", "sms", now)
        cursor.execute(ANSWER, answer)
    inbound = cursor.execute(INBOUND, (person_id, conversation_id, phone, body, sid, now, now))
    inbound_id = inbound.fetchone()[0]
    cursor.execute(REPLIED, (person_id, conversation_id, inbound_id, phone, REPLY, now, now, now))


class _Text:
    """One text handed in to be written with others (`_together`)."""

    __slots__ = ("done", "error", "lead", "text", "woken")

    def __init__(self, text: tuple[str, str, str]):
        self.text, self.woken = text, threading.Event()
        self.done, self.lead, self.error = False, False, None


_waiting: deque[_Text] = deque()
_waiting_lock = threading.Lock()
_leading = [False]


def _together(db: Any, text: tuple[str, str, str]) -> None:
    """Involve's group commit on SQLite (`Database.together`), without the ORM: the texts
    this process's threads hand in while one is written go in its transaction, a savepoint
    each, one COMMIT; the thread that wrote them hands what is still waiting to the next."""
    mine = _Text(text)
    with _waiting_lock:
        _waiting.append(mine)
        lead = not _leading[0]
        _leading[0] = True
    while not mine.done:
        if lead:
            _lead(db)
        else:
            mine.woken.wait()
            mine.woken.clear()
            lead, mine.lead = mine.lead and not mine.done, False
    if mine.error is not None:
        raise mine.error


def _lead(db: Any) -> None:
    assert writers is not None
    with _waiting_lock:
        group = [_waiting.popleft()]  # this thread's own: first in line
    cursor = db.cursor()
    try:
        with writers.turn():
            cursor.execute("BEGIN IMMEDIATE")
            try:
                now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
                _write_in_savepoint(cursor, group[0], now)
                while len(group) < 8:
                    with _waiting_lock:
                        text = _waiting.popleft() if _waiting else None
                    if text is None:
                        break
                    group.append(text)
                    _write_in_savepoint(cursor, text, now)
                cursor.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite may have rolled it back itself
                    cursor.execute("ROLLBACK")
                raise
    except BaseException as exc:
        for text in group:
            text.error = text.error or exc
    finally:
        with _waiting_lock:
            if _waiting:
                _waiting[0].lead = True
                _waiting[0].woken.set()
            else:
                _leading[0] = False
        for text in group:
            text.done = True
            text.woken.set()


def _write_in_savepoint(cursor: Any, text: _Text, now: str) -> None:
    cursor.execute("SAVEPOINT text")
    try:
        _write(cursor, *text.text, now)
    except Exception as exc:
        text.error = exc
        cursor.execute("ROLLBACK TO text")
    cursor.execute("RELEASE text")


@app.post("/webhooks/twilio/sms")
def sms() -> Response:
    form = request.form
    url = os.environ["PUBLIC_BASE_URL"] + request.path
    # involve's own check (the configured URL's form first, one HMAC when it matches).
    if not signature_matches(TOKEN, url, form, request.headers.get("X-Twilio-Signature", "")):
        abort(403)
    db = _connection()
    if writers is None:
        _store(db, form["From"], form["MessageSid"], form["Body"])
    else:
        _together(db, (form["From"], form["MessageSid"], form["Body"]))
    return Response(TWIML, mimetype="application/xml")
