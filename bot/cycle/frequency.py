"""Not too often: nobody is invited again within a few days of their last invitation, whatever
the campaign or the channel (INVITE_GAP_DAYS, 14 by default; a campaign may say otherwise,
0 for nobody left out).

What counts as "invited": an invitation row of another campaign with status `invited` written
in the gap, unless its message never left us or never reached anyone (cancelled before it went,
because staff closed the campaign or the person stopped; failed at the provider). A pending
invitation counts (it is about to go), and so does an unanswered call (the phone rang: the
person was disturbed, which is what the gap spares them). Reminders and fallbacks belong to
their invitation and are not new ones; a person waiting behind another survey has not been
invited yet. Feedback ("you said, we did") answers what they gave and is not an invitation.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.config import Settings
from bot.storage.models import Campaign, Invitation, Message, Participant, utcnow
from bot.storage.status import InvitationStatus, Outbound

REASON_START = "invited in the last"  # every reason this module writes begins so
_NOT_INVITED = (Outbound.CANCELLED, Outbound.FAILED)
_LOOKUP_CHUNK = 5000


def gap_days(campaign: Campaign, settings: Settings) -> int:
    """The campaign's own gap, else the setting's."""
    return (
        settings.invite_gap_days if campaign.invite_gap_days is None else campaign.invite_gap_days
    )


def reason(days: int) -> str:
    return f"{REASON_START} {days} {'day' if days == 1 else 'days'}"


def is_left_out(reason_given: str | None) -> bool:
    return bool(reason_given) and str(reason_given).startswith(REASON_START)


def recently_invited(
    session: Session,
    campaign: Campaign,
    person_ids: Iterable[int],
    settings: Settings,
    now: datetime | None = None,
) -> set[int]:
    """Of these people, those another campaign invited within this campaign's gap."""
    days = gap_days(campaign, settings)
    ids = list(person_ids)
    if days <= 0 or not ids:
        return set()
    since = (now or utcnow()) - timedelta(days=days)
    found: set[int] = set()
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = ids[start : start + _LOOKUP_CHUNK]
        found.update(
            session.scalars(
                select(Invitation.participant_id)
                .outerjoin(Message, Message.id == Invitation.message_id)
                .where(
                    Invitation.participant_id.in_(chunk),
                    Invitation.campaign_id != campaign.id,
                    Invitation.status == InvitationStatus.INVITED,
                    Invitation.invited_at >= since,
                    Message.status.is_(None) | Message.status.not_in(_NOT_INVITED),
                )
                .distinct()
            )
        )
    return found


def left_out_at_launch(
    session: Session, campaign: Campaign, audience: list[int], settings: Settings
) -> dict[str, int]:
    """What a launch leaves out for the gap, before the fan-out writes it: {reason: people},
    counting those in the audience not yet invited by this campaign and not opted out."""
    days = gap_days(campaign, settings)
    if days <= 0 or not audience:
        return {}
    done = set(
        session.scalars(
            select(Invitation.participant_id).where(Invitation.campaign_id == campaign.id)
        )
    )
    candidates: list[int] = []
    for start in range(0, len(audience), _LOOKUP_CHUNK):
        chunk = [pid for pid in audience[start : start + _LOOKUP_CHUNK] if pid not in done]
        candidates += session.scalars(
            select(Participant.id).where(
                Participant.id.in_(chunk), Participant.opted_out.is_(False)
            )
        ).all()
    count = len(recently_invited(session, campaign, candidates, settings))
    return {reason(days): count} if count else {}


def left_out(session: Session, campaign_id: int) -> int:
    """People this campaign left out because another had invited them within the gap."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Invitation)
            .where(
                Invitation.campaign_id == campaign_id,
                Invitation.status == InvitationStatus.SKIPPED,
                Invitation.reason.startswith(REASON_START),
            )
        )
        or 0
    )
