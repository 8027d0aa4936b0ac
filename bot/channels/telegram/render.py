"""Telegram: inline buttons for closed questions, free text otherwise.

A message is stored in the outbox as its text, readable as it is, followed (when it has buttons)
by one line that starts with `KEYBOARD_MARK` and holds the buttons as JSON: staff and subject
access read the words, and the sender rebuilds the exact keyboard from the same row.

Each button's callback data names the question it answers (`<question>:<value>`), so a button
left on an old message cannot answer a later question: the press is checked against the
question in front of the person when it is applied.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.engine import Ask, Done, Inbound, Prompt, Reply, Say, Toggle
from bot.engine.keywords import Command, classify
from bot.engine.parsing import range_words
from bot.i18n import N_, t
from bot.scripts.survey import Question

MAX_ROW = 8  # buttons side by side; more are unreadable on a phone held by older hands
CALLBACK_BYTES = 64  # Telegram's limit on callback_data
SKIP_VALUE = "skip"
SKIP_LABEL = N_("Skip this question")
KEYBOARD_MARK = "\u2328 buttons: "  # "⌨ buttons: " — a line no script writes
BUTTONED = ("choice", "yesno", "scale", "multi")
TOGGLE, DONE_VALUE, DONE_LABEL, TICK = (
    "+",
    "done",
    N_("Done"),
    "\u2705 ",
)  # "✅ " on a tapped answer

# Words a script tells people to send, in capitals by convention ("Reply STOP to opt out").
_WORD = re.compile(r"\b(STOP|SKIP|START|HELP|REPEAT)\b")
_REPLY = re.compile(r"\b([RrTt])(?:eply|ext)(ing)?( with)? /")


def for_telegram(text: str) -> str:
    """Scripts say "Reply STOP"; in Telegram the same words are commands: "Send /stop"."""
    text = _WORD.sub(lambda m: "/" + m.group(1).lower(), text)
    return _REPLY.sub(
        lambda m: f"{'S' if m.group(1).isupper() else 's'}end{'ing' if m.group(2) else ''} /",
        text,
    )


@dataclass(frozen=True)
class TelegramMessage:
    text: str
    keyboard: InlineKeyboardMarkup | None = None


def question_key(question_id: str) -> str:
    """The question's id as callback data carries it: short ids as they are, long ones hashed
    so that `<key>:<value>` always fits Telegram's 64 bytes."""
    if len(question_id.encode()) <= 40:
        return question_id
    return "#" + hashlib.sha256(question_id.encode()).hexdigest()[:16]


def callback(question_id: str, value: str) -> str:
    data = f"{question_key(question_id)}:{value}"
    assert len(data.encode()) <= CALLBACK_BYTES
    return data


def wrap(buttons: list[InlineKeyboardButton]) -> list[list[InlineKeyboardButton]]:
    """Rows of at most MAX_ROW, as even as they can be: 11 points are 6 and 5, not 8 and 3."""
    if not buttons:
        return []
    rows = math.ceil(len(buttons) / MAX_ROW)
    width = math.ceil(len(buttons) / rows)
    return [buttons[i : i + width] for i in range(0, len(buttons), width)]


def keyboard(prompt: Ask) -> InlineKeyboardMarkup | None:
    q = prompt.question
    rows: list[list[InlineKeyboardButton]] = []
    if q.type == "choice":
        # Labels are long sentences: one to a row.
        rows = [
            [InlineKeyboardButton(label, callback_data=callback(q.id, str(n)))]
            for n, (_, label) in enumerate(prompt.choices, start=1)
        ]
    elif q.type == "yesno":
        rows = [
            [
                InlineKeyboardButton(label, callback_data=callback(q.id, str(n)))
                for n, (_, label) in enumerate(prompt.choices, start=1)
            ]
        ]
    elif q.type == "multi":
        # Each tap turns one answer on or off (a tick shows it); Done sends them together.
        own = len(q.points)
        rows = [
            [
                InlineKeyboardButton(
                    f"{TICK if value in prompt.picked else ''}{n}. {label}",
                    callback_data=callback(q.id, f"{TOGGLE}{n}"),
                )
            ]
            for n, (value, label) in enumerate(prompt.choices[:own], start=1)
        ]
        rows += [
            [InlineKeyboardButton(label, callback_data=callback(q.id, str(n)))]
            for n, (_, label) in enumerate(prompt.choices[own:], start=own + 1)
        ]
        done = t(prompt.language, DONE_LABEL)
        rows.append([InlineKeyboardButton(done, callback_data=callback(q.id, DONE_VALUE))])
    elif q.type == "scale":
        # The point itself is the button (labels for the ends are in the text above).
        own = len(q.points)
        rows = wrap(
            [
                InlineKeyboardButton(value, callback_data=callback(q.id, value))
                for value, _ in prompt.choices[:own]
            ]
        )
        rows += [
            [InlineKeyboardButton(label, callback_data=callback(q.id, value))]
            for value, label in prompt.choices[own:]
        ]
    if q.optional:
        skip = t(prompt.language, SKIP_LABEL)
        rows.append([InlineKeyboardButton(skip, callback_data=callback(q.id, SKIP_VALUE))])
    return InlineKeyboardMarkup(rows) if rows else None


def question_text(prompt: Ask) -> str:
    q = prompt.question
    lang = prompt.language
    lines = [for_telegram(prompt.retry)] if prompt.retry else []
    lines.append(for_telegram(prompt.text))
    if q.type == "scale" and q.labels:
        lines.append(", ".join(f"{point} = {label}" for point, label in sorted(q.labels.items())))
    elif q.type == "number":
        bounds = range_words(q, lang)
        lines.append(
            t(lang, "Type a number {bounds}.", bounds=bounds)
            if bounds
            else t(lang, "Type a number.")
        )
    elif q.type == "date":
        lines.append(t(lang, "Type the date, like 3/4/1948."))
    elif q.type == "multi":
        lines.append(
            t(lang, "Tap each answer that applies, then Done. Or type their numbers, like 1 3.")
        )
    elif q.type == "text":
        lines.append(t(lang, "Type your answer."))
    if q.type in BUTTONED and q.type != "multi":
        lines.append(t(lang, "Tap a button, or type your answer."))
    return "\n".join(lines)


def render(prompts: Iterable[Prompt], org: str = "us") -> list[TelegramMessage]:
    messages: list[TelegramMessage] = []
    for prompt in prompts:
        if isinstance(prompt, Ask):
            messages.append(TelegramMessage(question_text(prompt), keyboard(prompt)))
        elif isinstance(prompt, Say):
            messages.append(TelegramMessage(for_telegram(prompt.text)))
    return messages


def combine(messages: list[TelegramMessage]) -> TelegramMessage | None:
    """One chat message for one step: the words in order, the buttons of its question below.

    One message a step, not one per prompt: each is a Bot API call counted against the rate,
    and a thank-you followed by the next question reads naturally as one message.
    """
    if not messages:
        return None
    keyboards = [m.keyboard for m in messages if m.keyboard is not None]
    return TelegramMessage(
        "\n\n".join(m.text for m in messages if m.text), keyboards[-1] if keyboards else None
    )


# --- the stored form -------------------------------------------------------------------


def to_body(message: TelegramMessage) -> str:
    if message.keyboard is None:
        return message.text
    rows = [[[b.text, b.callback_data] for b in row] for row in message.keyboard.inline_keyboard]
    return f"{message.text}\n\n{KEYBOARD_MARK}{json.dumps(rows, ensure_ascii=False)}"


def from_body(body: str) -> TelegramMessage:
    """The message a stored outbox body stands for (a body with no buttons is all text)."""
    text, sep, tail = body.rpartition("\n\n" + KEYBOARD_MARK)
    if not sep or "\n" in tail:
        return TelegramMessage(body)
    try:
        rows = json.loads(tail)
        markup = InlineKeyboardMarkup(
            [[InlineKeyboardButton(str(t), callback_data=str(d)) for t, d in row] for row in rows]
        )
    except (ValueError, TypeError):
        return TelegramMessage(body)  # not ours after all: send every word as it is
    return TelegramMessage(text, markup)


# --- input -------------------------------------------------------------------------------


@dataclass
class Press:
    """A button pressed, read against the question in front of the person when it is applied
    (`bot.conversations.inbox` calls it once it holds their conversation). `stale` says what it found."""

    key: str
    value: str
    stale: bool | None = field(default=None, compare=False)

    @classmethod
    def read(cls, data: str) -> Press | None:
        key, sep, value = (data or "").rpartition(":")
        return cls(key, value) if sep and key and value else None

    def __call__(self, question: Question | None) -> Inbound:
        if question is None or question_key(question.id) != self.key:
            # A button from an earlier message: it answers nothing; show what is asked now.
            self.stale = True
            return Command.REPEAT
        self.stale = False
        if self.value == SKIP_VALUE:
            return Command.SKIP
        if question.type == "multi":
            if self.value == DONE_VALUE:
                return Done()
            number = self.value.removeprefix(TOGGLE)
            if number.isdigit() and 1 <= int(number) <= len(question.choices):
                return Toggle(question.choices[int(number) - 1].value)
            return Command.REPEAT
        return Reply(self.value)


def parse(text: str | None = None) -> Inbound:
    return classify(text or "") or Reply(text or "")
