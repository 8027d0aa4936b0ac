"""`involve simulate SURVEY --channel voice`: the call's own TwiML turns, in the terminal.

Each turn is the TwiML the webhook would return (`CallFlow`), shown as what the caller hears;
what is typed goes to that turn's `<Gather>`/`<Record>` action exactly as Twilio would post it:
keys as `Digits`, words as `SpeechResult`, an empty line as silence (the `<Redirect>`).
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from bot.channels.base import Channel, Core
from bot.channels.voice.call import BASE, CallFlow, CallIn
from bot.config import Settings

KEYS = re.compile(r"[0-9*#]+")
MAX_TURNS = 500  # a script typed in a loop ends rather than spinning for ever


def heard(root: ET.Element) -> list[str]:
    lines = [f"[spoken] {''.join(say.itertext()).strip()}" for say in root.iter("Say")]
    if root.find("Hangup") is not None:
        lines.append("[the call ends]")
    elif root.find("Record") is not None:
        lines.append("[beep: recording; type what you would say]")
    elif root.find("Gather") is not None:
        lines.append("[waiting for keys or words]")
    return lines


def follow(flow: CallFlow, base: CallIn, url: str, **said: str) -> str:
    """The TwiML for a POST to one of our voice URLs, as the webhook would answer it."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    action = parts.path.removeprefix(BASE).strip("/")
    call = CallIn(
        sid=base.sid,
        address=base.address,
        digits=said.get("Digits", ""),
        speech=said.get("SpeechResult", ""),
        confidence=0.95 if said.get("SpeechResult") else None,
        person_id=base.person_id,
    )
    step = int(query["s"]) if query.get("s", "").isdigit() else 1  # our own URLs
    if action == "open":
        return flow.open(call, step, begin=query.get("begin") == "1")
    if action == "ask":
        return flow.ask(call, step, query.get("lead", ""))
    if action == "answer":
        silences = query.get("n", "0")
        return flow.answer(
            call,
            step,
            query.get("q", ""),
            int(silences) if silences.isdigit() else 0,
            silent=query.get("silent") == "1",
        )
    if action == "confirm":
        return flow.confirm(call, step, query.get("q", ""), query.get("said", ""))
    if action == "stop":
        return flow.stop(call, step)
    raise ValueError(f"the simulator cannot follow {parts.path}")


def play(
    core: Core,
    settings: Settings,
    channel: Channel,
    participant_id: int,
    read: Callable[[], str | None],
    write: Callable[[str], None],
) -> None:
    flow = CallFlow(core, settings, channel)
    base, root = ring(flow, participant_id)
    for _ in range(MAX_TURNS):
        for line in heard(root):
            write(line)
        if root.find("Hangup") is not None:
            return
        typed = read()
        if typed is None:
            write("[input ended; the call is dropped and the answers so far are kept]")
            return
        root = answer(flow, base, root, typed)


def ring(flow: CallFlow, participant_id: int) -> tuple[CallIn, ET.Element]:
    """A simulated call to the person's survey in progress: the call, and its first turn."""
    base = CallIn(sid=f"SIM{uuid.uuid4().hex}", address="", person_id=participant_id)
    return base, ET.fromstring(flow.ring(base))


def answer(flow: CallFlow, base: CallIn, root: ET.Element, typed: str) -> ET.Element:
    """The next turn after the caller keyed or said `typed` (empty: stayed silent) in `root`."""
    typed = typed.strip()
    target = root.find("Gather")
    record = root.find("Record")
    redirect = root.find("Redirect")
    if not typed:
        url = redirect.text if redirect is not None else ""
        return ET.fromstring(follow(flow, base, url or ""))
    if record is not None and not KEYS.fullmatch(typed):
        # A spoken answer: the words typed stand for what would be recorded.
        url = record.get("action") or ""
        return ET.fromstring(follow(flow, base, url, SpeechResult=typed))
    url = (target.get("action") if target is not None else None) or ""
    said = {"Digits": typed} if KEYS.fullmatch(typed) else {"SpeechResult": typed}
    return ET.fromstring(follow(flow, base, url, **said))
