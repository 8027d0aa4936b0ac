"""`involve simulate`: play a survey in the terminal exactly as a channel would render it.

It goes through the same engine, renderers and storage as a real participant, so what staff try
here is what people get, and the answers land in the database.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select

from bot import conversations, engine
from bot.channels import sms, telegram, voice
from bot.db import Database
from bot.engine import Inbound, Prompt
from bot.models import Participant
from bot.survey import Question, Survey


def show(channel: str, prompts: tuple[Prompt, ...], org: str) -> list[str]:
    """The lines a person would see or hear for these prompts."""
    if channel == "sms":
        return [
            f"[text] {line}" if i == 0 else f"       {line}"
            for text in sms.render(prompts)
            for i, line in enumerate(text.splitlines())
        ]
    if channel == "voice":
        turn = voice.render(prompts, org)
        lines = [f"[spoken] {sentence}" for sentence in turn.say]
        if turn.gather is None:
            lines.append("[the call ends]")
        elif turn.gather.record:
            lines.append("[beep: recording; type what you would say]")
        else:
            lines.append("[waiting for keys]")
        return lines
    lines = []
    for message in telegram.render(prompts, org):
        lines.append(f"[telegram] {message.text}")
        if message.keyboard is not None:
            buttons = [
                f"[{b.callback_data}] {b.text}"
                for row in message.keyboard.inline_keyboard
                for b in row
            ]
            lines.append("           buttons: " + "   ".join(buttons))
    return lines


def parse_typed(channel: str, typed: str, question: Question | None) -> Inbound:
    if channel == "sms":
        return sms.parse(typed)
    if channel == "voice":
        if (
            question is not None
            and question.type == "text"
            and typed.strip() not in ("*", "#", "0")
        ):
            return voice.parse("", question, recording=typed)
        return voice.parse(typed, question)
    stripped = typed.strip()
    if (
        question is not None
        and question.type in ("choice", "yesno", "scale")
        and stripped.isdigit()
    ):
        return telegram.parse(callback_data=stripped)  # tapping the button with that number
    return telegram.parse(text=typed)


def run(
    database: Database,
    survey: Survey,
    channel: str,
    read: Callable[[], str | None],
    write: Callable[[str], None],
    name: str = "Sam",
    org: str = "our involvement team",
) -> int:
    """Play the survey until it ends or input runs out; returns the conversation id."""
    now = datetime.now(UTC)
    with database.session() as session:
        person = session.scalar(
            select(Participant).where(Participant.external_id == f"simulator-{channel}")
        )
        if person is None:
            person = Participant(
                external_id=f"simulator-{channel}",
                name=name,
                channel=channel,
                tags=["simulator"],
                joined_via="simulate",
            )
            session.add(person)
            session.flush()
        person.opted_out = False
        person.name = name
        current = conversations.active_conversation(session, person, now)
        if current is not None:
            current.status = engine.EXPIRED
            session.flush()
        conv, step = conversations.start_conversation(session, person, survey, channel, now, org)
        conversation_id, person_id = conv.id, person.id
    for line in show(channel, step.prompts, org):
        write(line)
    state = step.state
    while state.status == engine.ACTIVE:
        typed = read()
        if typed is None:
            write("[input ended; the conversation stays open]")
            break
        question = survey.question(state.question_id) if state.question_id else None
        inbound = parse_typed(channel, typed, question)
        with database.session() as session:
            person = session.get(Participant, person_id)
            outcome = conversations.handle_inbound(
                session, person, channel, inbound, datetime.now(UTC), org, raw=typed
            )
            conv = outcome.conversation
            state = (
                engine.State.from_json(conv.state)
                if conv is not None and conv.id == conversation_id
                else engine.State(None, engine.STOPPED)
            )
        for line in show(channel, outcome.prompts, org):
            write(line)
    return conversation_id
