"""Keypad calls over Twilio Voice: the person's number is the address, keys are the answers.

Rendering and parsing are here; placing and answering calls arrive with the voice webhooks,
so until then the channel cannot send (`sender` says so).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from bot.channels.base import Channel, InvalidAddress, Sender
from bot.channels.voice import render
from bot.engine import Inbound, Prompt
from bot.phone import InvalidPhoneNumber, normalise_phone

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.survey import Question


class VoiceChannel(Channel):
    name = "voice"
    title = "phone call (keypad)"
    address_field = "phone"
    simulate_hint = "type keys: 1-9, * repeats, 0 skips, # stops"

    def normalise(self, raw: str) -> str:
        try:
            return normalise_phone(raw)
        except InvalidPhoneNumber as exc:
            raise InvalidAddress(str(exc)) from None

    def off_reason(self, settings: Settings) -> str | None:
        # Until placing calls lands, no setting turns it on.
        return "not available yet"

    def sender(self, settings: Settings) -> Sender:
        self.require_on(settings)
        raise AssertionError("unreachable: this channel has no sender yet")

    def render_body(self, prompts: Iterable[Prompt], org: str) -> str:
        return " ".join(render.render(list(prompts), org).say)

    def parse_stored(self, body: str) -> Inbound:
        return render.parse(body, None)

    def simulate_show(self, prompts: Sequence[Prompt], org: str) -> list[str]:
        turn = render.render(prompts, org)
        lines = [f"[spoken] {sentence}" for sentence in turn.say]
        if turn.gather is None:
            lines.append("[the call ends]")
        elif turn.gather.record:
            lines.append("[beep: recording; type what you would say]")
        else:
            lines.append("[waiting for keys]")
        return lines

    def simulate_parse(self, typed: str, question: Question | None) -> Inbound:
        if question is not None and question.type == "text" and typed.strip() not in "*#0":
            return render.parse("", question, recording=typed)
        return render.parse(typed, question)


VOICE = VoiceChannel()
