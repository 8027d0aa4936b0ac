"""Telegram: a chat id is the address; closed questions are answered by tapping buttons.

Rendering and parsing are here; the webhook and the sender arrive with the Telegram work, so
until then the channel cannot send (`sender` says so).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from bot.channels.base import Channel, InvalidAddress, Sender
from bot.channels.telegram import render
from bot.engine import Inbound, Prompt

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.survey import Question

MAX_CHAT_ID = 2**52  # Telegram promises chat ids fit in 52 bits


class TelegramChannel(Channel):
    name = "telegram"
    title = "Telegram"
    address_field = "telegram_chat_id"
    buttons = True
    simulate_hint = "type a button number or text"

    def normalise(self, raw: str) -> str:
        text = str(raw).strip()
        digits = text[1:] if text.startswith("-") else text
        if not (digits.isascii() and digits.isdigit()) or not 0 < int(digits) < MAX_CHAT_ID:
            raise InvalidAddress(f"{raw!r} is not a Telegram chat id (a whole number)")
        return str(int(text))

    def column_value(self, address: str) -> Any:
        return int(address)

    def off_reason(self, settings: Settings) -> str | None:
        # Until the Telegram sender lands, no setting turns it on.
        return "not available yet"

    def sender(self, settings: Settings) -> Sender:
        self.require_on(settings)
        raise AssertionError("unreachable: this channel has no sender yet")

    def render_body(self, prompts: Iterable[Prompt], org: str) -> str:
        return "\n\n".join(m.text for m in render.render(prompts, org))

    def parse_stored(self, body: str) -> Inbound:
        return render.parse(text=body)

    def simulate_show(self, prompts: Sequence[Prompt], org: str) -> list[str]:
        lines = []
        for message in render.render(prompts, org):
            lines.append(f"[telegram] {message.text}")
            if message.keyboard is not None:
                buttons = [
                    f"[{b.callback_data}] {b.text}"
                    for row in message.keyboard.inline_keyboard
                    for b in row
                ]
                lines.append("           buttons: " + "   ".join(buttons))
        return lines

    def simulate_parse(self, typed: str, question: Question | None) -> Inbound:
        stripped = typed.strip()
        if (
            question is not None
            and question.type in ("choice", "yesno", "scale")
            and stripped.isdigit()
        ):
            return render.parse(callback_data=stripped)  # tapping the button with that number
        return render.parse(text=typed)


TELEGRAM = TelegramChannel()
