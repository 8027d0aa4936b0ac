"""Keypad calls over Twilio Voice: the person's number is the address, keys are the answers.

Rendering and key parsing are in `render`, the turns of a call in `call` (behind the thin
endpoint `webhooks/twilio_voice.py`), placing calls in `sender`, and calling again after no
answer in `retry`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence

from bot.channels.base import Core, RetryPolicy, Sender
from bot.channels.phone_number import PhoneNumberChannel
from bot.channels.voice import render, simulate
from bot.channels.voice.call import CallFlow, CallIn, read_call
from bot.channels.voice.retry import call_again
from bot.config import Settings
from bot.engine import Inbound, Prompt
from bot.scripts.survey import Question, Survey

_RECORDING = re.compile(r"/Recordings/(RE[0-9a-fA-F]{32})")


class VoiceChannel(PhoneNumberChannel):
    name = "voice"
    title = "phone call (keypad)"
    keypad = True
    answers_later = False
    simulate_hint = "type keys: 1-9, * repeats, 0 skips; or type what you would say"
    max_choices = 9  # one key each
    webhooks = ("webhooks.twilio_voice:bp",)

    def sender(self, settings: Settings) -> Sender:
        # Here: the provider's client library loads only where we send or set it up.
        from bot.channels.voice.sender import call_sender

        self.require_on(settings)
        return call_sender(settings)

    def retry_policy(self, settings: Settings) -> RetryPolicy:
        return call_again(settings)

    def held_at_provider(self, texts: Iterable[str]) -> list[str]:
        # A text question answered on a call keeps the recording's URL at Twilio.
        return sorted({found for text in texts for found in _RECORDING.findall(text or "")})

    def point_webhooks(self, settings: Settings) -> list[str]:
        # Here: the provider's client library loads only where we send or set it up.
        from bot.providers.twilio import point_number

        url = f"{settings.public_base_url}/webhooks/twilio/voice"
        return [point_number(settings, "voice", url, "calls")]

    def answers_offered(self, question: Question) -> int:
        # A scale past 9 is keyed in, digits then hash ("1 0 #"); only a list needs a key each.
        if question.type == "scale" and render.two_digit(question):
            return 0
        return len(question.choices)

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

    def simulate_play(
        self,
        core: Core,
        settings: Settings,
        participant_id: int,
        read: Callable[[], str | None],
        write: Callable[[str], None],
    ) -> bool:
        simulate.play(core, settings, self, participant_id, read, write)
        return True

    # --- the call's turns, for its endpoint (webhooks/twilio_voice.py) ---------------------

    def call_flow(
        self, core: Core, settings: Settings, inbound_survey: Survey | None = None
    ) -> CallFlow:
        return CallFlow(core, settings, self, inbound_survey)

    def read_call(self, form: Mapping[str, str]) -> CallIn | str:
        """The call's parameters as Twilio posts them, or what is wrong with them."""
        return read_call(self, form)

    def simulate_call(
        self,
        core: Core,
        settings: Settings,
        person_id: int,
        call: tuple[str, str] | None = None,
        typed: str = "",
    ) -> tuple[str, str]:
        flow = CallFlow(core, settings, self)
        if call is None:
            base, root = simulate.ring(flow, person_id)
        else:
            base = CallIn(sid=call[0], address="", person_id=person_id)
            root = simulate.answer(flow, base, ET.fromstring(call[1]), typed)
        return base.sid, ET.tostring(root, encoding="unicode")

    def simulate_parse(self, typed: str, question: Question | None) -> Inbound:
        if question is not None and question.type == "text" and typed.strip() not in "*#0":
            return render.parse("", question, recording=typed)
        return render.parse(typed, question)


VOICE = VoiceChannel()
