"""The console's simulator: a survey played in the browser through the real engine.

Each turn goes through the same code as `involve simulate` (bot.commands.simulate, and the voice
channel's own TwiML turns), so the one writer stores it as it would a real message; the person
is a simulator person of the signed-in staff member's own (`joined_via` = simulate), so no real
participant is touched and the panel and audiences leave them out. What has been said so far is
kept in Redis between requests, for a few hours.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from typing import Any

from redis import Redis

from bot import channels, engine
from bot.commands import simulate as sim
from bot.config import Settings
from bot.conversations.gateway import Gateway
from bot.engine import Prompt
from bot.scripts.survey import Survey
from bot.storage.db import Database

TTL_SECONDS = 6 * 3600
MAX_ENTRIES = 400  # a thread typed into for ever stops growing rather than filling Redis
MAX_TYPED = 2000
NAME = "Sam"


@dataclass
class Entry:
    who: str  # "them": what the person sees or hears; "you": what they sent
    text: str
    buttons: list[list[dict[str, str]]] = field(default_factory=list)  # Telegram: label, data


@dataclass
class Play:
    survey_id: str
    channel: str
    person_id: int
    conversation_id: int
    entries: list[Entry] = field(default_factory=list)
    state: dict[str, Any] | None = None  # the engine's state (text and button channels)
    call_sid: str = ""  # keypad: the simulated call
    twiml: str = ""  # keypad: the call's current turn
    ended: bool = False

    @property
    def buttons(self) -> list[list[dict[str, str]]]:
        """The buttons under the newest message, the only ones that still answer anything."""
        for entry in reversed(self.entries):
            if entry.who == "them":
                return entry.buttons
        return []

    @property
    def listening(self) -> str:
        """Keypad: "keys", "record" (words stand for a recording) or "" when the call ended."""
        if self.ended or not self.twiml:
            return ""
        root = ET.fromstring(self.twiml)
        if root.find("Record") is not None:
            return "record"
        return "keys" if root.find("Gather") is not None else ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Play:
        data = json.loads(raw)
        data["entries"] = [Entry(**e) for e in data.get("entries", [])]
        return cls(**data)


def _key(staff_id: int, survey_id: str, channel: str) -> str:
    return f"involve:console-sim:{staff_id}:{survey_id}:{channel}"


def external_id(staff_id: int, channel: str) -> str:
    # One simulator person per staff member and channel: two colleagues trying a survey at
    # once never step on each other's conversation (one is active per person).
    return f"simulator-console-{staff_id}-{channel}"


def load(redis: Redis, staff_id: int, survey_id: str, channel: str) -> Play | None:
    raw = redis.get(_key(staff_id, survey_id, channel))
    return Play.from_json(raw) if raw else None


def _save(redis: Redis, staff_id: int, play: Play) -> None:
    play.entries = play.entries[-MAX_ENTRIES:]
    redis.set(_key(staff_id, play.survey_id, play.channel), play.to_json(), ex=TTL_SECONDS)


def _shown(channel: str, prompts: tuple[Prompt, ...], org: str) -> list[Entry]:
    """The prompts as the channel would show them: one entry per message sent."""
    return [
        Entry(
            "them", text, [[{"label": label, "data": data} for label, data in row] for row in rows]
        )
        for text, rows in channels.get(channel).simulate_screen(prompts, org)
    ]


def _heard(root: ET.Element) -> list[Entry]:
    said = [" ".join("".join(say.itertext()).split()) for say in root.iter("Say")]
    entries = [Entry("them", line) for line in said if line]
    if root.find("Hangup") is not None:
        entries.append(Entry("them", "(The call ends.)"))
    return entries


def start(
    database: Database,
    settings: Settings,
    redis: Redis,
    staff_id: int,
    survey: Survey,
    channel: str,
) -> Play:
    """Begin the survey afresh for this staff member on this channel."""
    person_id, conversation_id, step = sim.begin(
        database, settings, survey, channel, name=NAME, external_id=external_id(staff_id, channel)
    )
    play = Play(survey.id, channel, person_id, conversation_id)
    if channels.get(channel).keypad:
        play.call_sid, play.twiml = channels.get(channel).simulate_call(
            Gateway(database, settings), settings, person_id
        )
        root = ET.fromstring(play.twiml)
        play.entries = _heard(root)
        play.ended = root.find("Hangup") is not None
    else:
        play.state = step.state.to_json()
        play.entries = _shown(channel, step.prompts, settings.org_name)
        play.ended = step.finished
    _save(redis, staff_id, play)
    return play


def send(
    database: Database,
    settings: Settings,
    redis: Redis,
    staff_id: int,
    survey: Survey,
    play: Play,
    typed: str = "",
    button: str = "",
) -> Play:
    """What the staff member typed, keyed or tapped, through the engine; the thread after."""
    if play.ended:
        return play
    typed = typed[:MAX_TYPED]
    if channels.get(play.channel).keypad:
        _, play.twiml = channels.get(play.channel).simulate_call(
            Gateway(database, settings),
            settings,
            play.person_id,
            (play.call_sid or "", play.twiml or ""),
            typed,
        )
        root = ET.fromstring(play.twiml)
        play.entries.append(Entry("you", typed.strip() or "(silence)"))
        play.entries.extend(_heard(root))
        play.ended = root.find("Hangup") is not None
    else:
        state = engine.State.from_json(play.state or {})
        press = channels.get(play.channel).simulate_press(button) if button else None
        label = _label(play.buttons, button) if press is not None else ""
        if press is not None:
            prompts, after = sim.reply(
                database,
                settings,
                survey,
                play.channel,
                play.person_id,
                play.conversation_id,
                state,
                label,
                inbound=press,
            )
            play.entries.append(Entry("you", f"(tapped) {label}"))
        else:
            prompts, after = sim.reply(
                database,
                settings,
                survey,
                play.channel,
                play.person_id,
                play.conversation_id,
                state,
                typed,
            )
            play.entries.append(Entry("you", typed))
        play.entries.extend(_shown(play.channel, prompts, settings.org_name))
        play.state = after.to_json()
        play.ended = after.status != engine.ACTIVE
    _save(redis, staff_id, play)
    return play


def _label(rows: list[list[dict[str, str]]], data: str) -> str:
    for row in rows:
        for button in row:
            if button["data"] == data:
                return button["label"]
    return data  # a stale button: the engine says what is asked now
