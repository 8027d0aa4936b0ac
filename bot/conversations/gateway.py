"""The core as a channel's request handlers see it (`bot.channels.base.Core`).

A channel never opens a database session: an endpoint builds a `Gateway` over the database
and settings and hands it to the channel's handlers (a call's turns), which read where a
person is and write only through the one writer (`bot.conversations.inbox`).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select

from bot import conversations, engine
from bot.channels.base import Channel, Outcome, Place, Received, SentMessage
from bot.config import Settings
from bot.conversations import inbox
from bot.scripts.survey import Survey
from bot.storage.db import Database
from bot.storage.models import Conversation, Message, Participant, utcnow
from bot.storage.status import Direction


class Gateway:
    def __init__(self, database: Database, settings: Settings):
        self.database = database
        self.settings = settings

    def place(
        self, channel: Channel, address: str | None = None, person_id: int | None = None
    ) -> Place | None:
        """The person and their survey in progress, read without changing anything."""
        with self.database.session() as session:
            if person_id is not None:
                person = session.get(Participant, person_id)
            else:
                person = conversations.person_at(session, channel, address or "")
            if person is None or person.erased_at is not None:
                return None
            conv = session.scalar(
                select(Conversation).where(
                    Conversation.participant_id == person.id,
                    Conversation.status == engine.ACTIVE,
                )
            )
            context = conversations.context_for(
                person, self.settings.org_name, self.settings.contact_phone
            )
            if conv is None or engine.is_expired(conv.last_activity_at, utcnow()):
                return Place(person.id, person.opted_out, context=context)
            survey = conversations.survey_for(session, conv.survey_version_id)
            question_id = conv.state.get("question_id")
            return Place(
                person.id,
                person.opted_out,
                survey,
                conv.id,
                survey.question(question_id) if question_id else None,
                {**context, "answered": conv.state.get("answered") or {}},  # for piped answers
            )

    def receive(self, received: Received, keywords: Mapping[str, Survey] | None = None) -> Outcome:
        return inbox.receive(self.database, self.settings, received, keywords=keywords)

    def sent_message(self, message_id: int) -> SentMessage | None:
        with self.database.session() as session:
            message = session.get(Message, message_id)
            if message is None:
                return None
            return SentMessage(
                id=message.id,
                channel=message.channel,
                outbound=message.direction == Direction.OUT,
                kind=message.kind,
                body=message.body or "",
                participant_id=message.participant_id,
            )

    def transcribed(self, question_id: str, recording_url: str, words: str) -> None:
        inbox.transcribed(self.database, question_id, recording_url, words)
