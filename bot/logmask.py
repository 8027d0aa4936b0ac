"""Personal data out of logs: the one helper that masks phone numbers, and a log-record hook.

Logs are kept longer and seen by more people (hosting staff, error trackers) than the
database, and participants' numbers reveal who took part in a health survey. Numbers are
masked to their first digits (`+44770090****`): enough to tell two apart while debugging, not
enough to call anyone. Message bodies are never logged at all; that is a rule for callers
(and SQLAlchemy's `hide_parameters`), since a body cannot be recognised by its shape — except
where PostgreSQL quotes one: the DETAIL of a refused row ("Failing row contains (...)") or of a
duplicate key ("Key (phone)=(...)") carries the row's values, so those values are hidden in
every record, and in the failures rq keeps in Redis (`redact`, used by `bot.commands.worker`).
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

# A phone number as it turns up in provider errors and our own messages: international
# (`+447700900123`) or national with a leading 0 (`07700 900123`), single spaces or dashes
# allowed between groups. Requiring the + or 0 keeps ids and Unix timestamps readable.
_PHONE = re.compile(r"(?<![\w*.])(?:\+\d(?:[ -]?\d){7,}|0\d(?:[ -]?\d){8,})(?![\w*])")
_installed = False


def mask_phone(number: str) -> str:
    """`+447700900123` -> `+44770090****`: the last four digits hidden."""
    digits_seen = 0
    out = []
    for ch in reversed(number):
        if ch.isdigit() and digits_seen < 4:
            out.append("*")
            digits_seen += 1
        else:
            out.append(ch)
    return "".join(reversed(out))


def mask_phones(text: str) -> str:
    """Every phone number in `text` masked with `mask_phone`."""
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


def _values_hidden(detail: str) -> str | None:
    """PostgreSQL's DETAIL with the values it quotes hidden, or None if it quotes none."""
    if detail.startswith("Failing row contains"):
        return "Failing row contains (values hidden)."
    if detail.startswith("Key (") and ")=(" in detail:
        return detail[: detail.index(")=(") + 2] + "(values hidden)"
    return None  # a deadlock's processes, a lock's holder: no one's data


def database_details(exc: BaseException | None) -> dict[str, str]:
    """The DETAILs PostgreSQL gave this exception and its causes that quote values, each with
    its values hidden. psycopg keeps a DETAIL apart (`diag.message_detail`) as well as in the
    message, so it is found exactly, whatever the quoted words hold (newlines included)."""
    found: dict[str, str] = {}
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for error in (exc, getattr(exc, "orig", None)):
            detail = getattr(getattr(error, "diag", None), "message_detail", None)
            hidden = _values_hidden(detail) if isinstance(detail, str) and detail else None
            if hidden is not None:
                found[detail] = hidden
        exc = exc.__cause__ or exc.__context__
    return found


def redact(text: str, exc: BaseException | None = None) -> str:
    """`text` (a message, a traceback) with phone numbers masked and the values PostgreSQL
    quoted for `exc` (default: the exception being handled) hidden."""
    for detail, hidden in database_details(exc or sys.exc_info()[1]).items():
        text = text.replace(detail, hidden)
    return mask_phones(text)


def install() -> None:
    """Mask numbers in every log record this process makes, whatever logger or handler (rq's,
    gunicorn's, an error tracker's) ends up writing it. Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    make_record = logging.getLogRecordFactory()

    def masked_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:
            return record  # a broken format string: leave it for logging to report
        handled = record.exc_info[1] if record.exc_info else None
        record.msg, record.args = redact(message, handled), None
        if record.exc_info and not record.exc_text:
            # Tracebacks carry exception messages (a provider's "The 'To' number +44...").
            traceback = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(traceback, handled)
        return record

    logging.setLogRecordFactory(masked_record)
