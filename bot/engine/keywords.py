"""The words a participant can always use (CONTRACT.md), recognised before anything else,
and the few everyday things people write that are not answers (`intent`)."""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass


class Command(enum.Enum):
    STOP = "stop"
    START = "start"
    HELP = "help"
    REPEAT = "repeat"
    SKIP = "skip"


# Every word Twilio itself takes as an opt-out (it stops the number at once, whatever we do):
# we must stop too, on every channel, or the next text fails and calls carry on.
STOP_WORDS = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
WORDS: dict[str, Command] = {
    **{w: Command.STOP for w in STOP_WORDS},
    "start": Command.START,
    "unstop": Command.START,
    "help": Command.HELP,
    "info": Command.HELP,
    "repeat": Command.REPEAT,
    "again": Command.REPEAT,
    "skip": Command.SKIP,
    # Welsh, as our Welsh texts offer them and as people type them (the English words work
    # too, and carriers honour STOP and START in any case).
    "stopio": Command.STOP,
    "dechrau": Command.START,
    "ailddechrau": Command.START,
    "cymorth": Command.HELP,
    "helpu": Command.HELP,
    "ailadrodd": Command.REPEAT,
    "eto": Command.REPEAT,
    "hepgor": Command.SKIP,
    "sgipio": Command.SKIP,
}
_POLITE = {"please", "pls", "thanks", "thank", "you", "now"}
# Words around a few commands that do not change them: "stop it", "help me", "skip this one".
# Not around the others: "cancel it" or "end it" may be about something else.
_AROUND = {"it", "me", "this", "one"}
_TAKE_AROUND = {"stop", "help", "skip", "repeat"}


# Compiled once: every message is classified, and `re.sub(pattern, ...)` looks the pattern up
# in re's cache each time.
_NOT_A_WORD = re.compile(r"[^a-z/ ]")


def classify(text: str) -> Command | None:
    """The command a whole message stands for, or None for an ordinary reply.

    Only a message that is the word itself counts (any case, stray spaces and punctuation, a
    leading `/` as Telegram sends it, "please"): "stop" is a command, "make the pain stop" is not.
    """
    words = _NOT_A_WORD.sub(" ", (text or "").casefold()).split()
    words = [w.lstrip("/") for w in words if w.lstrip("/") not in _POLITE]
    if words[:2] in (["stop", "all"], ["opt", "out"]):
        words = ["stopall" if words[0] == "stop" else "optout", *words[2:]]  # "STOP ALL"
    core = [w for w in words if w not in _AROUND]
    if len(set(core)) == 1 and core[0] in _TAKE_AROUND:
        words = core  # "stop it", "STOP STOP", "help me"
    if len(words) == 1 or (words and len(set(words)) == 1):
        return WORDS.get(words[0])
    if len(words) == 2 and words[0] == "start":
        # Telegram deep links arrive as "/start <payload>"; that is a start, not a reply.
        return Command.START
    return None


@dataclass(frozen=True)
class ProviderKeyword:
    """A text the provider has already acted on as a keyword (Twilio's Advanced Opt-Out
    sends `OptOutType`: STOP, START or HELP), whatever words it holds. The writer decides what
    it means for the person: a STOP is a STOP; a START only for someone who had stopped (a
    "YES" that Twilio also counts as START may be an answer)."""

    command: Command
    text: str

    @classmethod
    def read(cls, kind: str | None, text: str) -> ProviderKeyword | None:
        command = {"STOP": Command.STOP, "START": Command.START, "HELP": Command.HELP}.get(
            (kind or "").strip().upper()
        )
        return None if command is None else cls(command, text)


def start_payload(text: str) -> str | None:
    """The keyword in "/start title" or "start title", upper-cased, if there is one."""
    words = (text or "").strip().split()
    if len(words) == 2 and words[0].lstrip("/").casefold() == "start":
        return words[1].upper()
    return None


class Intent(enum.Enum):
    """Not a command and not an answer: what a person meant by an everyday message."""

    STOP_REQUEST = "stop_request"  # "please stop texting me": ask before acting on it
    WHO = "who"  # "hello, who is this?"
    THANKS = "thanks"  # "thanks", "ok", a thumbs up


# Stop requests in the words people use. Only short messages count: a long text answer that
# mentions "stop sending me letters" is an answer about letters, not a request to us.
_STOP_REQUEST = re.compile(
    r"\b(?:"
    r"stop (?:texting|messaging|sending|contacting|calling|phoning|bothering|pestering)(?: me| us)?"
    r"|(?:do not|dont|don t|never) (?:text|message|contact|call|phone|send)(?: me| us)?"
    r"|unsubscribe me|remove me|take me off|opt me out|leave me alone|no more (?:texts|messages)"
    r"|(?:want|like) (?:to|you to) stop"
    # Only as a whole message: "please stop the cuts to the day centre" is an answer.
    r"|(?:^|^please |^(?:please )?(?:can|could|would|will) (?:you|u) (?:please |pls )?)stop"
    r"(?: it| this| now| please| pls| thanks| thank you)*$"
    r"|^no more(?: please| thanks| thank you)?$"
    r")\b"
)
_WHO = re.compile(
    r"\b(?:who (?:is|s) (?:this|that|it|texting|messaging)|who are (?:you|u)|whos this"
    r"|who sent (?:this|me this)|what is this about|what s this about"
    r"|how did you get (?:my|this) number|do i know you"
    # Welsh: "pwy sydd yna?", "pwy sy 'na?", "pwy ydych chi?", "pwy yw hwn?", "beth yw hwn?"
    r"|pwy (?:sydd|sy) (?:yna|na|yma|ma|n tecstio|n anfon)|pwy (?:ydych|dych|wyt) (?:chi|ti)"
    r"|pwy (?:yw|ydi|di) (?:hwn|hon|hyn|chi)|beth (?:yw|ydi|di) (?:hwn|hyn)"
    r"|pwy anfonodd (?:hwn|hyn))\b"
)
_THANKS_WORDS = {
    "thanks",
    "thank",
    "you",
    "thankyou",
    "ta",
    "cheers",
    "ok",
    "okay",
    "k",
    "great",
    "lovely",
    "brilliant",
    "fine",
    "good",
    "many",
    "very",
    "much",
    "so",
    "will",
    "do",
    "bye",
    "goodbye",
    "x",
    "xx",
    "xxx",
    "cool",
    "nice",
    "done",
    "welcome",
    "and",
    "again",
    "diolch",  # Welsh: thank you
    "yn",
    "fawr",
}
_STOP_REQUEST_MAX_WORDS = 8
_WHO_MAX_WORDS = 10


_SPACES = re.compile(r"\s+")
_PUNCTUATION = re.compile(r"[^\w\s]")


def _plain(text: str) -> str:
    text = (text or "").casefold().replace("’", "'").replace("'", " ")
    return _SPACES.sub(" ", _PUNCTUATION.sub(" ", text)).strip()


def _only_emoji(text: str) -> bool:
    """A message of symbols alone (👍, 🙂🙏, ❤️): a thumbs up, not an answer."""
    kept = [ch for ch in text if not ch.isspace()]
    return bool(kept) and all(
        unicodedata.category(ch) in ("So", "Sk", "Mn", "Cf") or ch in "!.❤" for ch in kept
    )


# A short reply to "Do you want us to stop all messages?": yes (stop), or no (carry on).
_YES_WORDS = {
    "yes",
    "yeah",
    "yep",
    "yea",
    "yup",
    "y",
    "ok",
    "okay",
    "sure",
    "confirm",
    "ie",
    "iawn",
}
_YES_FILLER = _YES_WORDS | {"please", "pls", "do", "i", "stop", "it", "them", "all", "thanks"}
_YES_FILLER |= {"of", "course", "thank", "you", "absolutely", "correct", "definitely", "right"}
_YES_WORDS |= {"absolutely", "correct", "definitely"}
_NO_WORDS = {"no", "nope", "nah", "n", "na", "nage", "naddo", "nac"}
_NO_FILLER = _NO_WORDS | {"thanks", "thank", "you", "ydw", "dont", "don", "t", "please"}
_NO_FILLER |= {"carry", "on", "continue", "keep", "going", "im", "i", "m", "fine"}


def confirms_stop(text: str) -> bool:
    """ "Yes", "yes please", "ok stop", "No. Stop.": yes to our question whether to stop all
    messages (a yes as a yes/no question reads one counts too: see the engine)."""
    words = _plain(text).split()
    if 0 < len(words) <= 5 and "stop" in words and not set(words) & _NOT_STOPPING:
        return True
    return 0 < len(words) <= 5 and set(words) <= _YES_FILLER and bool(set(words) & _YES_WORDS)


_NOT_STOPPING = {"dont", "don", "not", "never", "t"}


def declines_stop(text: str) -> bool:
    """ "No", "no thanks", "don't stop", "carry on": no to stopping all messages."""
    plain = _plain(text)
    if plain in ("carry on", "continue", "keep going", "go on", "don t stop", "do not stop"):
        return True
    words = plain.split()
    return 0 < len(words) <= 6 and set(words) <= _NO_FILLER and bool(set(words) & _NO_WORDS)


# Agreeing to take part, or saying it arrived: "yes", "of course", "ok", "happy to", "👍". Not an
# answer to a question that asks something else, and not a miss either.
_AGREEING = re.compile(
    r"^(?:(?:yes|yeah|yep|ok|okay|sure|of course|happy to|certainly|fine|go on|go ahead"
    r"|ready|ie|iawn|ok then|why not|no problem|will do|please|thanks|thank you|i will"
    r"|i can|i would|love to|glad to|be)\b\s*)+$"
)


def agreeing(text: str) -> bool:
    """A message that says yes to taking part rather than answering the question asked."""
    plain = _plain(text)
    return bool(plain) and len(plain.split()) <= 6 and bool(_AGREEING.match(plain + " "))


def intent(text: str) -> Intent | None:
    """What an everyday message that is neither a command nor an answer means, if anything."""
    plain = _plain(text)
    words = plain.split()
    if words and len(words) <= _STOP_REQUEST_MAX_WORDS and _STOP_REQUEST.search(plain):
        return Intent.STOP_REQUEST
    if words and len(words) <= _WHO_MAX_WORDS and _WHO.search(plain):
        return Intent.WHO
    if _only_emoji(text or "") or (
        words
        and len(words) <= 6
        and all(w in _THANKS_WORDS for w in words)
        and any(
            w in ("thanks", "thank", "thankyou", "ta", "cheers", "ok", "okay", "diolch")
            for w in words
        )
    ):
        return Intent.THANKS
    return None
