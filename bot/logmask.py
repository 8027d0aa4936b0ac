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


# PostgreSQL's SQLSTATE classes whose errors can quote a row's or an input's values: 22, data
# exceptions ('invalid input syntax for type integer: "..."', a JSON token), and 23, integrity
# violations ("Failing row contains (...)", "Key (phone)=(...)"). Decided by class, not by
# wording, so a server speaking another language is covered too.
_QUOTING_CLASSES = ("22", "23")
# The same quotes found by their English wording, in text whose exception is not at hand (a
# repr, a message formatted earlier): hidden from the quote to the end of its line.
_QUOTED = re.compile(r"(Failing row contains |Key \((?:[^()]|\([^()]*\))*\)=)\(.*$", re.M)
HIDDEN = "(values hidden)"


def _chain(exc: BaseException | None) -> list[BaseException]:
    """The exception, what SQLAlchemy wrapped (`orig`) and its causes, each once."""
    found: list[BaseException] = []
    todo = [exc]
    while todo:
        error = todo.pop()
        if error is None or any(error is seen for seen in found):
            continue
        found.append(error)
        todo += [getattr(error, "orig", None), error.__cause__, error.__context__]
    return found


def database_quotes(*errors: BaseException | None) -> dict[str, str]:
    """What PostgreSQL quoted in these exceptions (and their causes) that can be a person's
    words or number, each with what to show instead. psycopg keeps each part of an error apart
    (`diag`) as well as in the message, so a part is found exactly, newlines and all."""
    found: dict[str, str] = {}
    for error in (e for exc in errors for e in _chain(exc)):
        diag = getattr(error, "diag", None)
        state = getattr(error, "sqlstate", None) or ""
        if diag is None or state[:2] not in _QUOTING_CLASSES:
            continue
        detail, context, primary = diag.message_detail, diag.context, diag.message_primary
        if detail:
            # As the wording fallback below shows it, where the wording is English.
            found[detail] = _QUOTED.sub(lambda m: m.group(1) + HIDDEN, detail)
            if found[detail] == detail:
                found[detail] = HIDDEN
        if context:
            found[context] = HIDDEN
        if primary and state.startswith("22") and ": " in primary:
            found[primary] = primary.split(": ", 1)[0] + ": " + HIDDEN
    return found


def redact(text: str, *errors: BaseException | None) -> str:
    """`text` (a message, a traceback) with phone numbers masked and what PostgreSQL quoted
    hidden: exactly, for `errors` and the exception being handled, and by its wording
    anywhere else."""
    quotes = database_quotes(*errors, sys.exc_info()[1])
    for quoted in sorted(quotes, key=len, reverse=True):  # a DETAIL before a word inside it
        text = text.replace(quoted, quotes[quoted])
    text = _QUOTED.sub(lambda m: m.group(1) + HIDDEN, text)
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
        try:
            # Exceptions logged as arguments ("failed: %s", exc) and outside their except block.
            given = record.args.values() if isinstance(record.args, dict) else record.args or ()
            errors = [a for a in given if isinstance(a, BaseException)]
            if record.exc_info:
                errors.append(record.exc_info[1])
            record.msg, record.args = redact(message, *errors), None
            if record.exc_info and not record.exc_text:
                # Tracebacks carry exception messages (a provider's "The 'To' number +44...").
                traceback = logging.Formatter().formatException(record.exc_info)
                record.exc_text = redact(traceback, *errors)
        except Exception:
            # Never let a record out unchecked, nor break the caller's logging.
            record.msg, record.args = (
                "(a log message that could not be checked for personal data)",
                None,
            )
            record.exc_info, record.exc_text = None, None
        return record

    logging.setLogRecordFactory(masked_record)
