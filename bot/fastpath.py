"""The common case of an inbound reply, in plain SQL on a pooled DB-API connection.

Most webhooks are a known person answering the question in front of them. For those, the ORM's
bookkeeping costs ten times the database work, so this module does that one case directly:
one query for the person and their conversation, the engine's step, and the writes, in one
transaction. Anything else — a new number, STOP/START, a consent change, no conversation, an
expired one — answers `None` and the caller takes the general path (`bot.conversations`), which
owns every rule; this module only re-does the common writes faster. Both paths run the same
engine and are tested against each other.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot import engine
from bot.conversations import survey_for_source
from bot.db import Database
from bot.engine import Inbound, Reply
from bot.keywords import Command

FAST_COMMANDS = (Command.REPEAT, Command.SKIP, Command.HELP)


class SeenBefore(Exception):
    """This provider id is stored already: a redelivery, which must change nothing."""


@dataclass(frozen=True)
class FastResult:
    prompts: tuple[engine.Prompt, ...]
    participant_id: int
    conversation_id: int
    inbound_id: int


class _Sql:
    """The statements, written once with `?` and adapted to the driver's style."""

    def __init__(self, dialect: str):
        self.postgres = dialect == "postgresql"
        json_param = "?::json" if self.postgres else "?"
        lock = " FOR UPDATE OF p" if self.postgres else ""
        self.person_and_conversation = self._q(
            "SELECT p.id, p.name, p.opted_out, c.id, c.state, c.last_activity_at, c.survey_version_id"
            " FROM participants p LEFT JOIN conversations c"
            " ON c.participant_id = p.id AND c.status = 'active'"
            f" WHERE p.phone = ?{lock}"
        )
        self.version = self._q(
            "SELECT content_hash, source, survey_id FROM survey_versions WHERE id = ?"
        )
        self.update_conversation = self._q(
            f"UPDATE conversations SET state = {json_param}, status = ?, last_activity_at = ?, channel = ?,"
            " completed_at = COALESCE(?, completed_at), started_at = COALESCE(started_at, ?) WHERE id = ?"
        )
        self.insert_answer = self._q(
            "INSERT INTO answers (conversation_id, participant_id, question_id, value, label, raw_text,"
            " unparsed, skipped, channel, answered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self.insert_message = self._q(
            "INSERT INTO messages (participant_id, conversation_id, in_reply_to_id, direction, channel,"
            " kind, address, body, provider_id, status, attempts, created_at, updated_at, sent_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)"
            " ON CONFLICT (channel, direction, provider_id) DO NOTHING RETURNING id"
        )

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def when(self, moment: datetime | None) -> Any:
        if moment is None or self.postgres:
            return moment
        # The form SQLAlchemy's SQLite DATETIME uses, so both paths read each other's rows.
        return (
            moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        )

    @staticmethod
    def read_time(value: Any) -> datetime:
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_statements: dict[str, _Sql] = {}


@contextmanager
def _transaction(database: Database) -> Iterator[Any]:
    """A DB-API cursor in a write transaction, committed on success."""
    sql = _sql_for(database)
    turn = database._writers.turn() if database._writers is not None else _no_wait()
    with turn:
        connection = database.engine.raw_connection()
        try:
            cursor = connection.cursor()
            if not sql.postgres:
                cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                connection.rollback() if sql.postgres else cursor.execute("ROLLBACK")
                raise
            connection.commit() if sql.postgres else cursor.execute("COMMIT")
        finally:
            connection.close()


@contextmanager
def _no_wait() -> Iterator[None]:
    yield


def _sql_for(database: Database) -> _Sql:
    dialect = database.engine.dialect.name
    if dialect not in _statements:
        _statements[dialect] = _Sql(dialect)
    return _statements[dialect]


class _NotCommon(Exception):
    """Leave this one to the general path."""


def handle_reply(
    database: Database,
    channel: str,
    address: str,
    provider_id: str,
    text: str,
    inbound: Inbound,
    now: datetime,
    org: str,
    render: Any,
) -> tuple[FastResult, Sequence[str]] | None:
    """Run a known person's reply to their current question; None when it is not that case.

    `render` turns the prompts into the channel's texts, which are stored as the replies.
    Raises SeenBefore for a provider id already stored (nothing is written).
    """
    if not (isinstance(inbound, Reply) or inbound in FAST_COMMANDS):
        return None
    sql = _sql_for(database)
    try:
        with _transaction(database) as cursor:
            cursor.execute(sql.person_and_conversation, (address,))
            row = cursor.fetchone()
            if row is None:
                raise _NotCommon
            person_id, name, opted_out, conversation_id, state_json, last_activity, version_id = row
            if (
                opted_out
                or conversation_id is None
                or engine.is_expired(sql.read_time(last_activity), now)
            ):
                raise _NotCommon
            survey = _survey(database, cursor, sql, version_id)
            state = engine.State.from_json(
                state_json if isinstance(state_json, dict) else json.loads(state_json)
            )
            step = engine.step(survey, state, inbound, {"name": name, "org": org})
            if step.consent or step.finished:
                raise _NotCommon  # consent and a survey's end (which may start the next) go the general way
            cursor.execute(
                sql.update_conversation,
                (
                    json.dumps(step.state.to_json()),
                    step.state.status,
                    sql.when(now),
                    channel,
                    sql.when(now) if step.state.status == engine.COMPLETED else None,
                    sql.when(now) if step.answers else None,
                    conversation_id,
                ),
            )
            if step.answers:
                cursor.executemany(
                    sql.insert_answer,
                    [
                        (
                            conversation_id,
                            person_id,
                            a.question_id,
                            a.value,
                            a.label,
                            a.raw,
                            a.unparsed,
                            a.skipped,
                            channel,
                            sql.when(now),
                        )
                        for a in step.answers
                    ],
                )
            stamp = sql.when(now)
            cursor.execute(
                sql.insert_message,
                (
                    person_id,
                    conversation_id,
                    None,
                    "in",
                    channel,
                    "inbound",
                    address,
                    text,
                    provider_id,
                    "processed",
                    stamp,
                    stamp,
                    None,
                ),
            )
            inserted = cursor.fetchone()
            if inserted is None:
                raise SeenBefore
            inbound_id = inserted[0]
            texts = list(render(step.prompts))
            for body in texts:
                cursor.execute(
                    sql.insert_message,
                    (
                        person_id,
                        conversation_id,
                        inbound_id,
                        "out",
                        channel,
                        "reply",
                        address,
                        body,
                        None,
                        "replied",
                        stamp,
                        stamp,
                        stamp,
                    ),
                )
                cursor.fetchall()
    except _NotCommon:
        return None
    return FastResult(step.prompts, person_id, conversation_id, inbound_id), texts


_surveys: dict[tuple[str, int], Any] = {}


def _survey(database: Database, cursor: Any, sql: _Sql, version_id: int):
    """Stored script versions never change, so each is read once per process."""
    key = (database.url, version_id)
    if key not in _surveys:
        cursor.execute(sql.version, (version_id,))
        content_hash, source, survey_id = cursor.fetchone()
        if len(_surveys) > 1024:
            _surveys.clear()
        _surveys[key] = survey_for_source(content_hash, source, survey_id)
    return _surveys[key]
