"""The words a participant can always use (CONTRACT.md), recognised before anything else."""

from __future__ import annotations

import enum
import re


class Command(enum.Enum):
    STOP = "stop"
    START = "start"
    HELP = "help"
    REPEAT = "repeat"
    SKIP = "skip"


STOP_WORDS = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit"}
WORDS: dict[str, Command] = {
    **{w: Command.STOP for w in STOP_WORDS},
    "start": Command.START,
    "unstop": Command.START,
    "help": Command.HELP,
    "info": Command.HELP,
    "repeat": Command.REPEAT,
    "again": Command.REPEAT,
    "skip": Command.SKIP,
}
_POLITE = {"please", "pls", "thanks", "thank", "you", "now"}


def classify(text: str) -> Command | None:
    """The command a whole message stands for, or None for an ordinary reply.

    Only a message that is the word itself counts (any case, stray spaces and punctuation, a
    leading `/` as Telegram sends it, "please"): "stop" is a command, "make the pain stop" is not.
    """
    words = re.sub(r"[^a-z/ ]", " ", (text or "").casefold()).split()
    words = [w.lstrip("/") for w in words if w.lstrip("/") not in _POLITE]
    if len(words) == 1:
        return WORDS.get(words[0])
    if len(words) == 2 and words[0] == "start":
        # Telegram deep links arrive as "/start <payload>"; that is a start, not a reply.
        return Command.START
    return None


def start_payload(text: str) -> str | None:
    """The keyword in "/start title" or "start title", upper-cased, if there is one."""
    words = (text or "").strip().split()
    if len(words) == 2 and words[0].lstrip("/").casefold() == "start":
        return words[1].upper()
    return None
