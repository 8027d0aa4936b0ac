"""What people said: `responses.csv` streamed a page at a time, and a per-question summary.

The CSV's memory does not grow with the campaign: invitations are read a thousand at a time
with their answers. Any cell a spreadsheet would run as a formula is defused.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import conversations, engine
from bot.i18n import STAFF_LANGUAGE
from bot.scripts.survey import Survey
from bot.storage.models import Answer, Campaign, Conversation, SurveyVersion

PAGE = 2000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_FIRST = frozenset(FORMULA_STARTS)
FIXED_COLUMNS = ["participant", "channel", "status", "started_at", "completed_at"]


# A signed number (`-2`, `+447700900999`, `-2.5`, `+1e3`) is a value to a spreadsheet, not a
# formula: quoting it would change the number people see. Anything else after +/- is run.
_PLAIN_NUMBER = re.compile(r"[+-](?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _formula(text: str) -> bool:
    return (
        bool(text)
        and text[0] in _FORMULA_FIRST
        and not (text[0] in "+-" and _PLAIN_NUMBER.fullmatch(text))
    )


def defuse(value: Any) -> str:
    """Text a spreadsheet shows as text: a leading quote before what it would run as a formula
    (=, @, tab, CR, or + and - unless the whole cell is a number)."""
    text = "" if value is None else str(value)
    return "'" + text if _formula(text) else text


def participant_key(participant_id: int, external_id: str | None) -> str:
    """How exports, previews and skip lists name a person: `ext:<external id>` for people who
    have one, our bare id otherwise, so the two kinds can never be read as each other (an
    external id `15` and our participant 15 are two people)."""
    return f"ext:{external_id}" if external_id else str(participant_id)


def question_column(question_id: str) -> str:
    """A question's column; one whose id is also a fixed column (hear-back asks `channel`)
    is `question:<id>`, so no file has two columns of one name."""
    return f"question:{question_id}" if question_id in FIXED_COLUMNS else question_id


def _survey(session: Session, campaign: Campaign) -> Survey:
    return conversations.survey_of(session.get(SurveyVersion, campaign.survey_version_id))


def _status(invitation_status: str, conv_status: str | None, answered: bool) -> str:
    if invitation_status != "invited":
        return invitation_status  # waiting | skipped
    if conv_status == engine.ACTIVE:
        return "started" if answered else "invited"
    return conv_status or "invited"


def _iso(moment: Any) -> str:
    """UTC ISO 8601, from a datetime (PostgreSQL) or SQLite's stored text (naive UTC)."""
    if moment is None:
        return ""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment).replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def response_rows(session: Session, campaign: Campaign) -> Iterator[list[str]]:
    """The header, then one row per invited person, in the order they joined the panel."""
    survey = _survey(session, campaign)
    question_ids = [q.id for q in survey.questions if q.asks]
    written = {q.id for q in survey.questions if q.asks and not q.choices}
    yield FIXED_COLUMNS + [question_column(qid) for qid in question_ids]
    last_id = 0
    # Plain driver rows, not SQLAlchemy ones: this loop runs once per person in the campaign.
    connection = session.connection()
    while True:
        page = _fetch(connection, _PAGE_SQL, [campaign.id, last_id, PAGE])
        if not page:
            return
        last_id = page[-1][4]
        conv_ids = [row[3] for row in page if row[3] is not None]
        answers: dict[int, dict[str, str]] = {}
        for conv_id, question_id, label, skipped, unparsed, raw, language in _answers_of(
            connection, conv_ids
        ):
            cell = _cell(label, skipped, unparsed, raw)
            if language and language != STAFF_LANGUAGE and cell and question_id in written:
                # Options are stored in the staff language; a person's own words are not.
                cell = f"[{language}] {cell}"
            answers.setdefault(conv_id, {})[question_id] = cell
        for (_, inv_status, inv_channel, conv_id, pid, external, erased, conv_status, started, completed, conv_channel) in page:  # fmt: skip
            given = answers.get(conv_id, _NONE)
            # External ids carry "ext:" so they are never read as our ids (see README).
            who = "(erased)" if erased else participant_key(pid, external)
            row = [who, conv_channel or inv_channel or "", _status(inv_status, conv_status, bool(given)), _iso(started), _iso(completed)]  # fmt: skip
            row += [given.get(qid, "") for qid in question_ids]
            # Inline rather than defuse() per cell: this is the export's hottest line.
            yield [
                ("'" + cell) if cell and cell[0] in _FORMULA_FIRST and _formula(cell) else cell
                for cell in row
            ]


_NONE: dict[str, str] = {}


def _noted(language: str | None, words: str) -> str:
    """A person's own words, marked with their language where it is not the staff one."""
    return f"[{language}] {words}" if language and language != STAFF_LANGUAGE else words


def _cell(label: str | None, skipped: Any, unparsed: Any, raw: str | None) -> str:
    """An answer as staff read it. Words we could not read are shown as that, never as an
    answer; a question skipped knowingly says why ("not asked: no usable answer to age")."""
    if skipped:
        return label or "(skipped)"
    if unparsed:
        return f"(unreadable: {(raw or '').strip()})" if label is None else label
    return label or ""


_PAGE_SQL = (
    "SELECT i.id, i.status, i.channel, i.conversation_id, p.id, p.external_id, p.erased_at,"
    " c.status, c.started_at, c.completed_at, c.channel"
    " FROM invitations i JOIN participants p ON p.id = i.participant_id"
    " LEFT JOIN conversations c ON c.id = i.conversation_id"
    # Keyset pages on (campaign_id, participant_id), the unique index: each page is a seek.
    " WHERE i.campaign_id = ? AND i.participant_id > ? ORDER BY i.participant_id LIMIT ?"
)


def _fetch(connection: Any, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Plain tuples straight from the driver, in the transaction `connection` is in: building a
    SQLAlchemy row for each of ten answers a person was most of the export's time."""
    if connection.dialect.name == "postgresql":
        sql = sql.replace("?", "%s")
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchall()
    finally:
        cursor.close()


def _answers_of(connection: Any, conversation_ids: list[int]) -> list[tuple[Any, ...]]:
    if not conversation_ids:
        return []
    marks = ", ".join(["?"] * len(conversation_ids))
    sql = f"SELECT conversation_id, question_id, label, skipped, unparsed, raw_text, language FROM answers WHERE conversation_id IN ({marks})"
    return _fetch(connection, sql, conversation_ids)


# Excel opens a .csv as the computer's legacy code page unless the file starts with a UTF-8
# byte order mark; without it "José 👍" arrives as "JosÃ© ðŸ‘". Python's csv module and
# LibreOffice read past the mark ("utf-8-sig").
BOM = "\ufeff"


def csv_chunks(
    rows: Iterator[list[str]], rows_per_chunk: int = 500, bom: bool = True
) -> Iterator[str]:
    if bom:
        yield BOM
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for count, row in enumerate(rows, start=1):
        writer.writerow(row)
        if count % rows_per_chunk == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()


def summary(session: Session, campaign: Campaign) -> dict[str, Any]:
    """Per question: counts and percentages per option, or the text answers."""
    survey = _survey(session, campaign)
    in_campaign = (
        select(Conversation.id).where(Conversation.campaign_id == campaign.id).scalar_subquery()
    )
    questions = []
    for question in survey.questions:
        if not question.asks:
            continue  # a statement or an ending has nothing to count
        base = select(Answer).where(
            Answer.conversation_id.in_(in_campaign), Answer.question_id == question.id
        )
        answered = (
            session.scalar(
                select(func.count())
                .select_from(Answer)
                .where(
                    Answer.conversation_id.in_(in_campaign),
                    Answer.question_id == question.id,
                    Answer.skipped.is_(False),
                )
            )
            or 0
        )
        entry: dict[str, Any] = {
            "id": question.id,
            "type": question.type,
            "ask": question.ask,
            "answered": answered,
        }
        if question.choices:
            counts = dict(
                session.execute(
                    select(Answer.value, func.count())
                    .where(
                        Answer.conversation_id.in_(in_campaign),
                        Answer.question_id == question.id,
                        Answer.skipped.is_(False),
                        Answer.unparsed.is_(False),
                    )
                    .group_by(Answer.value)
                ).all()
            )
            entry["options"] = [
                {
                    "value": o.value,
                    "label": o.label,
                    "count": counts.get(o.value, 0),
                    "percent": round(100 * counts.get(o.value, 0) / answered, 1)
                    if answered
                    else 0.0,
                }
                for o in question.choices
            ]
            other = answered - sum(counts.get(o.value, 0) for o in question.choices)
            entry["other"] = (
                [
                    # Unreadable replies keep only their raw words (older rows kept a label).
                    a.label if a.label is not None else (a.raw_text or "").strip()
                    for a in session.scalars(base.where(Answer.unparsed.is_(True)))
                    if a.label is not None or (a.raw_text or "").strip()
                ]
                if other
                else []
            )
        else:
            entry["answers"] = [
                _noted(a.language, a.label)
                if a.label is not None
                else f"(unreadable: {(a.raw_text or '').strip()})"
                for a in session.scalars(
                    base.where(
                        Answer.skipped.is_(False),
                        Answer.label.is_not(None) | Answer.unparsed.is_(True),
                    ).order_by(Answer.id)
                )
            ]
            # Counted, but their words went with their writer's erasure (or retention).
            entry["removed"] = answered - len(entry["answers"])
        questions.append(entry)
    return {"campaign": campaign.id, "survey": survey.id, "questions": questions}
