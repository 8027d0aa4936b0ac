"""`involve simulate`: play a survey in the terminal exactly as a channel would render it.

It goes through the same engine, renderers and storage as a real participant, so what staff try
here is what people get, and the answers land in the database.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select

from bot import channels, conversations, engine, inbox
from bot.config import Settings
from bot.db import Database
from bot.engine import Inbound, Prompt
from bot.models import Participant
from bot.survey import Question, Survey


def show(channel: str, prompts: tuple[Prompt, ...], org: str) -> list[str]:
    """The lines a person would see or hear for these prompts."""
    return channels.get(channel).simulate_show(prompts, org)


def parse_typed(channel: str, typed: str, question: Question | None) -> Inbound:
    return channels.get(channel).simulate_parse(typed, question)


def run(
    database: Database,
    settings: Settings,
    survey: Survey,
    channel: str,
    read: Callable[[], str | None],
    write: Callable[[str], None],
    name: str = "Sam",
) -> int:
    """Play the survey until it ends or input runs out; returns the conversation id.

    Every typed line goes through the one writer (`bot.inbox.receive`), as a real message would.
    """
    now = datetime.now(UTC)
    org = settings.org_name
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
    if channels.get(channel).simulate_play(database, settings, person_id, read, write):
        return conversation_id
    for line in show(channel, step.prompts, org):
        write(line)
    state = step.state
    while state.status == engine.ACTIVE:
        typed = read()
        if typed is None:
            write("[input ended; the conversation stays open]")
            break
        question = survey.question(state.question_id) if state.question_id else None
        received = inbox.Received(
            channel=channel,
            text=typed,
            inbound=parse_typed(channel, typed, question),
            participant_id=person_id,
        )
        outcome = inbox.receive(database, settings, received)
        state = (
            outcome.state
            if outcome.state is not None and outcome.conversation_id == conversation_id
            else engine.State(None, engine.STOPPED)
        )
        for line in show(channel, outcome.prompts, org):
            write(line)
    return conversation_id
