"""Telegram: inline buttons for closed questions, free text otherwise."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.engine import Ask, Inbound, Prompt, Reply, Say
from bot.keywords import Command, classify

SKIP_DATA, REPEAT_DATA = "/skip", "/repeat"
TELEGRAM_TEXT = {
    "help": (
        "This is {org}, asking for your views to improve our services. "
        "Tap a button or type your answer. /repeat shows the question again, "
        "/skip leaves out an optional one, /stop stops all messages."
    ),
    "stopped": "You will not hear from {org} again. Thank you for your help so far. Send /start if you change your mind.",
}


_REPLY_WORD = re.compile(r"\b([Rr])eply (STOP|SKIP|START|HELP|REPEAT)\b")


def _for_telegram(text: str) -> str:
    """Scripts say "Reply STOP"; in Telegram the same words are commands: "send /stop"."""
    return _REPLY_WORD.sub(
        lambda m: f"{'S' if m.group(1) == 'R' else 's'}end /{m.group(2).lower()}", text
    )


@dataclass(frozen=True)
class TelegramMessage:
    text: str
    keyboard: InlineKeyboardMarkup | None = None


def _keyboard(prompt: Ask) -> InlineKeyboardMarkup | None:
    q = prompt.question
    if q.type == "text" and not q.optional:
        return None
    rows: list[list[InlineKeyboardButton]] = []
    if q.type in ("choice", "yesno"):
        rows = [
            [InlineKeyboardButton(label, callback_data=str(n))]
            for n, (_, label) in enumerate(prompt.choices, start=1)
        ]
        if q.type == "yesno":
            rows = [[button for row in rows for button in row]]
    elif q.type == "scale":
        rows = [[InlineKeyboardButton(value, callback_data=value) for value, _ in prompt.choices]]
    if q.optional:
        rows.append([InlineKeyboardButton("Skip this question", callback_data=SKIP_DATA)])
    return InlineKeyboardMarkup(rows) if rows else None


def question_text(prompt: Ask) -> str:
    q = prompt.question
    lines = [prompt.retry] if prompt.retry else []
    lines.append(prompt.text)
    if q.type == "scale" and q.labels:
        lines.append(", ".join(f"{point} = {label}" for point, label in sorted(q.labels.items())))
    elif q.type == "number":
        lines.append("Type a number.")
    elif q.type == "text":
        lines.append("Type your answer.")
    return "\n".join(lines)


def render(prompts: Iterable[Prompt], org: str = "us") -> list[TelegramMessage]:
    messages: list[TelegramMessage] = []
    for prompt in prompts:
        if isinstance(prompt, Ask):
            messages.append(TelegramMessage(question_text(prompt), _keyboard(prompt)))
        elif isinstance(prompt, Say):
            text = (
                TELEGRAM_TEXT[prompt.kind].format(org=org)
                if prompt.kind in TELEGRAM_TEXT
                else prompt.text
            )
            messages.append(TelegramMessage(_for_telegram(text)))
    return messages


def parse(text: str | None = None, callback_data: str | None = None) -> Inbound:
    if callback_data is not None:
        if callback_data == SKIP_DATA:
            return Command.SKIP
        if callback_data == REPEAT_DATA:
            return Command.REPEAT
        return Reply(callback_data)
    return classify(text or "") or Reply(text or "")
