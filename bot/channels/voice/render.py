"""Keypad calls: each prompt spoken slowly, each answer a key press (or a spoken recording).

Keys: 1-9 answer, `*` repeats, `0` skips an optional question, `#` alone stops the calls.
Landlines cannot read texts, so nothing here assumes a screen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bot.engine import Ask, Inbound, Prompt, Reply, Say
from bot.keywords import Command
from bot.survey import Question

REPEAT_KEY, SKIP_KEY, STOP_KEY = "*", "0", "#"
STOP_OFFER = "If you would rather we did not call you again, press hash."
# Scripts are written for texts; "Reply STOP to opt out." means nothing on a call.
_TEXT_ONLY = re.compile(r"\s*(?:Or )?[Rr]eply (?:STOP|SKIP|START)\b[^.!?]*[.!?]?")

SPOKEN = {
    "help": (
        "This call is from {org}, asking for your views to improve our services. "
        "Press star to hear a question again. " + STOP_OFFER
    ),
    "stopped": "We will not call you again. Thank you for your help so far. Goodbye.",
    "started": "Welcome back.",
}


@dataclass(frozen=True)
class Gather:
    """What the call waits for after speaking."""

    num_digits: int | None  # None: until hash
    finish_on_key: str  # "" means every key, hash included, is a digit
    record: bool = False  # a spoken answer, for text questions


@dataclass(frozen=True)
class VoiceTurn:
    say: list[str]
    gather: Gather | None  # None: the call ends after speaking
    pace: str = "medium"  # SSML prosody rate for the words: "slow" for a message to take in


def _two_digit(q: Question) -> bool:
    return q.type == "number" or (q.type == "scale" and (q.max or 0) > 9)


def gather_for(q: Question) -> Gather:
    if q.type == "text":
        return Gather(num_digits=None, finish_on_key="#", record=True)
    if _two_digit(q):
        return Gather(num_digits=None, finish_on_key="#")
    return Gather(num_digits=1, finish_on_key="")


def question_speech(prompt: Ask) -> str:
    q = prompt.question
    parts = [prompt.retry] if prompt.retry else []
    parts.append(prompt.text)
    if q.type in ("choice", "yesno"):
        parts.extend(
            f"Press {n} for {label}." for n, (_, label) in enumerate(prompt.choices, start=1)
        )
    elif q.type == "scale":
        low, high = int(q.min or 0), int(q.max or 0)
        low_label = f", {q.labels[low]}," if low in q.labels else ""
        high_label = f", {q.labels[high]}" if high in q.labels else ""
        then = " then press hash" if high > 9 else ""
        parts.append(f"Press a number from {low}{low_label} to {high}{high_label}{then}.")
    elif q.type == "number":
        parts.append("Key in the number, then press hash.")
    else:
        parts.append("After the tone, please say your answer, then press hash.")
    if q.optional and not (q.type in ("number", "scale") and (q.min or 0) <= 0):
        parts.append("Press 0 to skip this question.")
    parts.append("Press star to hear this again.")
    return " ".join(parts)


def render(prompts: Iterable[Prompt], org: str = "us") -> VoiceTurn:
    said: list[str] = []
    gather: Gather | None = None
    for prompt in prompts:
        if isinstance(prompt, Ask):
            said.append(question_speech(prompt))
            gather = gather_for(prompt.question)
        elif isinstance(prompt, Say):
            spoken = SPOKEN[prompt.kind].format(org=org) if prompt.kind in SPOKEN else prompt.text
            said.append(_TEXT_ONLY.sub("", spoken).strip())
            if prompt.kind == "intro":
                said.append(STOP_OFFER)
    return VoiceTurn(said, gather)


def parse(digits: str, question: Question | None, recording: str | None = None) -> Inbound:
    pressed = (digits or "").strip()
    if pressed == REPEAT_KEY:
        return Command.REPEAT
    if pressed == STOP_KEY:
        return Command.STOP
    if pressed == SKIP_KEY and question is not None and question.optional:
        zero_is_answer = question.type in ("number", "scale") and (question.min or 0) <= 0
        if not zero_is_answer:
            return Command.SKIP
    if recording is not None and question is not None and question.type == "text":
        return Reply(recording)
    return Reply(pressed.rstrip("#"))


def feedback_call(text: str) -> VoiceTurn:
    """A "you said, we did" message for a landline: read slowly, with star to hear it again."""
    return VoiceTurn(
        say=[text, "Press star to hear this message again, or simply hang up. Thank you."],
        gather=Gather(num_digits=1, finish_on_key=""),
        pace="slow",
    )
