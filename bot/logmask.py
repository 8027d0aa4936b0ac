"""Personal data out of logs: the one helper that masks phone numbers, and a log-record hook.

Logs are kept longer and seen by more people (hosting staff, error trackers) than the
database, and participants' numbers reveal who took part in a health survey. Numbers are
masked to their first digits (`+44770090****`): enough to tell two apart while debugging, not
enough to call anyone. Message bodies are never logged at all; that is a rule for callers
(and SQLAlchemy's `hide_parameters`), since a body cannot be recognised by its shape.
"""

from __future__ import annotations

import logging
import re
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
        record.msg, record.args = mask_phones(message), None
        if record.exc_info and not record.exc_text:
            # Tracebacks carry exception messages (a provider's "The 'To' number +44...").
            record.exc_text = mask_phones(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(masked_record)
