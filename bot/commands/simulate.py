"""`involve simulate`: play a survey in the terminal exactly as a channel would render it.

It goes through the same engine, renderers and storage as a real participant, so what staff try
here is what people get, and the answers land in the database.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select

from bot import channels, conversations, engine
from bot.config import Settings
from bot.conversations import inbox
from bot.conversations.gateway import Gateway
from bot.conversations.inbox import Interpret
from bot.cycle.campaigns import SIMULATOR
from bot.engine import Inbound, Prompt
from bot.scripts.survey import Question, Survey
from bot.storage.db import Database
from bot.storage.models import Participant


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

    Every typed line goes through the one writer (`bot.conversations.inbox.receive`), as a real message would.
    """
    org = settings.org_name
    person_id, conversation_id, step = begin(
        database, settings, survey, channel, name=name, external_id=f"simulator-{channel}"
    )
    if channels.get(channel).simulate_play(
        Gateway(database, settings), settings, person_id, read, write
    ):
        return conversation_id
    for line in show(channel, step.prompts, org):
        write(line)
    state = step.state
    while state.status == engine.ACTIVE:
        typed = read()
        if typed is None:
            write("[input ended; the conversation stays open]")
            break
        prompts, state = reply(
            database, settings, survey, channel, person_id, conversation_id, state, typed
        )
        for line in show(channel, prompts, org):
            write(line)
    return conversation_id


def begin(
    database: Database,
    settings: Settings,
    survey: Survey,
    channel: str,
    name: str,
    external_id: str,
) -> tuple[int, int, engine.Step]:
    """Start `survey` afresh for the simulator person `external_id` (made on first use, kept
    out of audiences by `joined_via`): (person id, conversation id, the first step)."""
    now = datetime.now(UTC)
    with database.session() as session:
        # Their lock first, as every writer of a person's data takes it.
        person = session.scalar(
            select(Participant).where(Participant.external_id == external_id).with_for_update()
        )
        if person is None:
            person = Participant(
                external_id=external_id,
                name=name,
                channel=channel,
                tags=["simulator"],
                joined_via=SIMULATOR,
            )
            session.add(person)
            session.flush()
        person.opted_out = False
        person.name = name
        current = conversations.active_conversation(session, person, now)
        if current is not None:
            conversations.end_conversation(session, current, engine.EXPIRED)
        conv, step = conversations.start_conversation(
            session, person, survey, channel, now, settings.org_name
        )
        return person.id, conv.id, step


def reply(
    database: Database,
    settings: Settings,
    survey: Survey,
    channel: str,
    person_id: int,
    conversation_id: int,
    state: engine.State,
    typed: str,
    inbound: Interpret | None = None,
) -> tuple[tuple[Prompt, ...], engine.State]:
    """What the simulator person typed (or pressed: `inbound`, with its label as `typed`),
    through the one writer exactly as a real message; the prompts that answer it and the
    conversation's state after."""
    question = survey.question(state.question_id) if state.question_id else None
    if inbound is None:
        inbound = parse_typed(channel, typed, question)
    received = inbox.Received(
        channel=channel, text=typed, inbound=inbound, participant_id=person_id
    )
    outcome = inbox.receive(database, settings, received)
    after = (
        outcome.state
        if outcome.state is not None and outcome.conversation_id == conversation_id
        else engine.State(None, engine.STOPPED)
    )
    return outcome.prompts, after
