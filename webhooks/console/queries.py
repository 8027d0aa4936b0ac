"""Read-only questions the console asks of the database: small, and nothing here writes.

People made by the simulator (`joined_via` = bot.cycle.campaigns.SIMULATOR) are never counted or
listed as the panel.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from bot import conversations
from bot.cycle import progress
from bot.cycle.campaigns import SIMULATOR
from bot.scripts.survey import SurveyError
from bot.storage.models import (
    Answer,
    Campaign,
    ConsentEvent,
    Conversation,
    Message,
    Participant,
    SurveyVersion,
)

PAGE_SIZE = 50
CONSENT_FILTERS = {
    "": "Anyone",
    "opted_out": "Opted out (no contact)",
    "recontact_yes": "Agreed to hear back",
    "recontact_no": "Does not want to hear back",
    "recontact_unknown": "Not asked about hearing back",
}
PROGRESS = (  # the order staff read a campaign's progress in, with plain names
    ("invited", "Invited"),
    ("started", "Started"),
    ("completed", "Completed"),
    ("opted_out", "Opted out"),
    ("failed", "Message failed"),
    ("not_reached", "Not reached"),
)


def real_people() -> ColumnElement[bool]:
    return (Participant.erased_at.is_(None)) & (
        Participant.joined_via.is_(None) | (Participant.joined_via != SIMULATOR)
    )


@dataclass
class CampaignRow:
    id: int
    survey_id: str
    title: str
    status: str
    created_at: datetime
    launched_at: datetime | None
    closed_at: datetime | None
    counts: dict[str, int]

    @property
    def bars(self) -> list[tuple[str, str, int, int]]:
        """(key, label, number, percent) for each stage: of those invited, except "not
        reached", who were never invited (no number for the channel...): of everyone named."""
        invited = self.counts.get("invited", 0)
        named = invited + self.counts.get("not_reached", 0)
        return [
            (
                key,
                label,
                self.counts.get(key, 0),
                _percent(self.counts.get(key, 0), named if key == "not_reached" else invited),
            )
            for key, label in PROGRESS
        ]


def _percent(part: int, whole: int) -> int:
    return min(100, round(100 * part / whole)) if whole else 0


def _row(session: Session, campaign: Campaign) -> CampaignRow:
    version = session.get(SurveyVersion, campaign.survey_version_id)
    return CampaignRow(
        id=campaign.id,
        survey_id=campaign.survey_id,
        title=version.title if version else campaign.survey_id,
        status=campaign.status,
        created_at=campaign.created_at,
        launched_at=campaign.launched_at,
        closed_at=campaign.closed_at,
        counts=progress.counts(session, campaign.id).as_json(),
    )


def campaigns(session: Session, limit: int = 100) -> list[CampaignRow]:
    found = session.scalars(select(Campaign).order_by(Campaign.id.desc()).limit(limit))
    return [_row(session, c) for c in found]


def campaign(session: Session, campaign_id: int) -> CampaignRow | None:
    found = session.get(Campaign, campaign_id)
    return _row(session, found) if found is not None else None


def panel_size(session: Session) -> dict[str, int]:
    total = session.scalar(select(func.count()).select_from(Participant).where(real_people()))
    opted_out = session.scalar(
        select(func.count())
        .select_from(Participant)
        .where(real_people(), Participant.opted_out.is_(True))
    )
    return {"people": total or 0, "opted_out": opted_out or 0}


@dataclass
class PanelPage:
    people: list[Participant]
    total: int
    page: int
    pages: int
    tags: list[str] = field(default_factory=list)


def all_tags(session: Session) -> list[str]:
    """Each tag once, however its case varies ("Readers" and "readers" are one tag)."""
    found: dict[str, str] = {}
    for tags in session.scalars(select(Participant.tags).where(real_people())):
        for tag in tags or ():
            if isinstance(tag, str):
                found.setdefault(tag.casefold(), tag)
    return sorted(found.values(), key=str.casefold)


def search_panel(
    session: Session,
    text: str = "",
    tag: str = "",
    channel: str = "",
    consent: str = "",
    page: int = 1,
) -> PanelPage:
    query = select(Participant).where(real_people()).order_by(Participant.id)
    text = text.strip()
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(
                Participant.name.ilike(pattern, escape="\\"),
                Participant.external_id.ilike(pattern, escape="\\"),
            )
        )
    if channel:
        query = query.where(Participant.channel == channel)
    if consent == "opted_out":
        query = query.where(Participant.opted_out.is_(True))
    elif consent == "recontact_yes":
        query = query.where(Participant.recontact.is_(True))
    elif consent == "recontact_no":
        query = query.where(Participant.recontact.is_(False))
    elif consent == "recontact_unknown":
        query = query.where(Participant.recontact.is_(None))
    people = list(session.scalars(query))
    if tag:
        # Tags are a small JSON list per person; filtering here works the same on every
        # database (as bot.cycle.campaigns does for audiences).
        wanted = tag.casefold()
        people = [p for p in people if any(t.casefold() == wanted for t in p.tags or ())]
    total = len(people)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, page), pages)
    start = (page - 1) * PAGE_SIZE
    return PanelPage(people[start : start + PAGE_SIZE], total, page, pages, all_tags(session))


@dataclass
class PersonView:
    person: Participant
    consent: list[ConsentEvent]
    conversations: list[dict[str, Any]]
    messages: list[Message]


def person(session: Session, person_id: int) -> PersonView | None:
    found = session.get(Participant, person_id)
    if found is None or found.erased_at is not None:
        return None
    found.contact_points  # noqa: B018  loaded now: the page is drawn after the session ends
    consent = list(
        session.scalars(
            select(ConsentEvent)
            .where(ConsentEvent.participant_id == found.id)
            .order_by(ConsentEvent.id)
        )
    )
    convs = []
    for conv in session.scalars(
        select(Conversation)
        .where(Conversation.participant_id == found.id)
        .order_by(Conversation.id.desc())
    ):
        version = session.get(SurveyVersion, conv.survey_version_id)
        asks: dict[str, str] = {}
        if version is not None:
            # A stored script that no longer parses: show question ids only.
            with contextlib.suppress(SurveyError):
                asks = {q.id: q.ask for q in conversations.survey_of(version).questions}
        answers = list(
            session.scalars(
                select(Answer).where(Answer.conversation_id == conv.id).order_by(Answer.id)
            )
        )
        convs.append(
            {
                "conversation": conv,
                "title": version.title if version else "",
                "survey_id": version.survey_id if version else "",
                "answers": answers,
                "asks": asks,
            }
        )
    messages = list(
        session.scalars(
            select(Message)
            .where(Message.participant_id == found.id)
            .order_by(Message.id.desc())
            .limit(200)
        )
    )
    return PersonView(found, consent, convs, messages)
