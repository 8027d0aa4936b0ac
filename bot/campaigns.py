"""Campaigns: a survey sent to an audience, invitations fanned out in rq, one reminder, counts.

Launching returns at once; `fan_out` (an rq job) invites the audience a thousand at a time with
bulk writes, and can be run again after any crash: each person is invited at most once per
campaign (a unique row in `invitations`). Someone already in another survey waits and is invited
when that one ends or expires.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from bot import channels, conversations, engine, events, outbox
from bot.config import Settings
from bot.db import Database, queue_after_commit
from bot.models import (
    Campaign,
    Conversation,
    Invitation,
    Message,
    Participant,
    SurveyVersion,
    as_id,
    utcnow,
)
from bot.survey import Survey, SurveyError
from bot.text import clean_text

BATCH = 1000


class CampaignError(ValueError):
    """Bad input from staff; the message says what to change. `status` is the HTTP code."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# --- creating --------------------------------------------------------------------------


def _parse_time(value: Any, name: str, settings: Settings) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise CampaignError(f"{name} must be an ISO 8601 time such as 2026-12-01T10:00:00Z")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CampaignError(
            f"{name} must be an ISO 8601 time such as 2026-12-01T10:00:00Z, got {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=settings.timezone)
    return moment


def _audience(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise CampaignError(
            'audience must be one of {"tags": [...]}, {"participants": [...]} or {"all": true}'
        )
    ((kind, value),) = raw.items()
    if kind == "all":
        if value is not True:
            raise CampaignError('audience {"all": ...} must be true')
        return {"all": True}
    if kind in ("tags", "participants"):
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in value)
        ):
            raise CampaignError(f"audience {kind} must be a non-empty list")
        return {
            kind: [clean_text(v) for v in value]
            if kind == "tags"
            else [v if isinstance(v, int) else clean_text(v) for v in value]
        }
    raise CampaignError(f"unknown audience {kind!r}: use tags, participants or all")


def audience_ids(session: Session, audience: Mapping[str, Any]) -> list[int]:
    """Ids of the people an audience names (erased people never), in id order."""
    live = Participant.erased_at.is_(None)
    if audience.get("all"):
        return list(session.scalars(select(Participant.id).where(live).order_by(Participant.id)))
    if "tags" in audience:
        wanted = set(audience["tags"])
        # Tags are a small JSON list per person; filtering here works the same on every database.
        rows = session.execute(
            select(Participant.id, Participant.tags).where(live).order_by(Participant.id)
        )
        return [pid for pid, tags in rows if wanted & set(tags or [])]
    ids: set[int] = set()
    externals: set[str] = set()
    for value in audience["participants"]:
        text = str(value)
        if isinstance(value, int) or text.startswith("id:"):
            number = as_id(text.removeprefix("id:"))
            ids.update([number] if number is not None else [])
        elif text.startswith("ext:"):
            externals.add(text.removeprefix("ext:")[:100])
        else:
            # A bare key from before create() resolved them: either kind, as it was then.
            number = as_id(text)
            ids.update([number] if number is not None else [])
            externals.add(text[:100])
    found = session.scalars(
        select(Participant.id).where(
            live, Participant.id.in_(ids) | Participant.external_id.in_(externals)
        )
    )
    return sorted(set(found))


def _person_key(session: Session, value: str | int) -> str | int:
    """One audience entry made explicit: our id as a number, an external id as `ext:<x>`.

    A bare text that is one person's id and another person's external id is refused (409), as
    in the admin API's URLs, rather than inviting both. A key nobody has yet is kept as given.
    """
    from bot import privacy

    if isinstance(value, int):
        return value
    try:
        person = privacy.find(session, value)
    except privacy.AmbiguousKey as exc:
        raise CampaignError(f"audience participants: {exc}", 409) from None
    if person is None:
        return value
    if value.startswith("ext:") or (not value.startswith("id:") and value == person.external_id):
        return f"ext:{person.external_id}"
    return person.id


def create(
    session: Session, payload: Mapping[str, Any], surveys: Mapping[str, Survey], settings: Settings
) -> tuple[Campaign, int]:
    if not isinstance(payload, Mapping):
        raise CampaignError("the body must be a JSON object")
    allowed = {"survey", "audience", "channel", "send_at", "reminder_after_hours"}
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise CampaignError(f"unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    survey_id = payload.get("survey")
    if not isinstance(survey_id, str) or survey_id not in surveys:
        known = ", ".join(sorted(surveys)) or "none"
        sent = (
            f"there is no survey {survey_id!r}"
            if isinstance(survey_id, str)
            else "survey is missing"
        )
        raise CampaignError(
            f"{sent}: survey must be the id of a survey script (there are: {known})"
        )
    channel = payload.get("channel")
    if channel is not None and channel not in channels.NAMES:
        raise CampaignError(
            "channel must be null (each person's preferred channel) or one of "
            + ", ".join(channels.NAMES)
        )
    if channel is not None:
        why_not = channels.get(channel).off_reason(settings)
        if why_not is not None:
            raise CampaignError(f"cannot invite by {channel} now: {why_not}", 409)
    reminder = payload.get("reminder_after_hours")
    if reminder is not None and (
        isinstance(reminder, bool)
        or not isinstance(reminder, int | float)
        or not 0 < reminder <= 24 * 60
    ):
        raise CampaignError("reminder_after_hours must be null or a number of hours from 1 to 1440")
    audience = _audience(payload.get("audience"))
    if "participants" in audience:
        audience = {"participants": [_person_key(session, v) for v in audience["participants"]]}
    send_at = _parse_time(payload.get("send_at"), "send_at", settings)
    version = conversations.survey_version(session, surveys[survey_id])
    campaign = Campaign(
        survey_id=survey_id,
        survey_version_id=version.id,
        status="draft",
        audience=audience,
        channel=channel,
        send_at=send_at,
        reminder_after_hours=reminder,
    )
    session.add(campaign)
    session.flush()
    return campaign, len(audience_ids(session, audience))


# --- launching -------------------------------------------------------------------------


def launch(session: Session, campaign: Campaign) -> bool:
    """Start the fan-out; False (and nothing new) if it was launched already."""
    if campaign.status == "closed":
        raise CampaignError("this campaign is closed", 409)
    if campaign.status != "draft":
        return False
    campaign.status = "launching"
    campaign.launched_at = utcnow()
    return True


def fan_out_job_id(campaign_id: int) -> str:
    # A fixed id per campaign, so the reconciler can ask Redis whether the job still exists.
    return f"involve-fanout-{campaign_id}"


def reminder_due(campaign: Campaign) -> datetime | None:
    if not campaign.reminder_after_hours or campaign.launched_at is None:
        return None
    start = max(campaign.send_at or campaign.launched_at, campaign.launched_at)
    return start + timedelta(hours=campaign.reminder_after_hours)


def enqueue_fan_out(redis: Redis, campaign: Campaign, reminder: bool = True) -> None:
    """Enqueue the fan-out (at `send_at`, if that is to come) and the reminder when it is due.
    If Redis loses either, the reconciler enqueues it again (`bot.jobs`)."""
    from bot import reminders
    from bot.jobs import fan_out_job

    queue = outbox.queue(redis)
    job_id = fan_out_job_id(campaign.id)
    if campaign.send_at is not None and campaign.send_at > utcnow():
        queue.enqueue_at(
            campaign.send_at, fan_out_job, campaign.id, job_timeout=3600, job_id=job_id
        )
    else:
        queue.enqueue(fan_out_job, campaign.id, job_timeout=3600, job_id=job_id)
    due = reminder_due(campaign) if reminder else None
    if due is not None:
        queue.enqueue_at(
            max(due, utcnow()), reminders.send_reminders_job, campaign.id, job_timeout=3600
        )


def _channel_for(
    campaign: Campaign, person: Participant, settings: Settings
) -> tuple[str | None, str | None]:
    """The channel to invite this person on, or (None, why not)."""
    choice = campaign.channel or channels.default_for(person)
    if choice is None:
        return None, "no address on any channel"
    channel = channels.get(choice)
    if channel.address_of(person) is None:
        return None, f"no {channel.title} address"
    why_not = channel.off_reason(settings)
    if why_not is not None:
        return None, f"{channel.title} is off: {why_not}"
    return choice, None


def render_for(channel: str, prompts: Iterable[engine.Prompt], org: str) -> str:
    """What an outbound message says, as stored in the outbox, for each channel."""
    return channels.get(channel).render_body(list(prompts), org)


def fan_out(database: Database, settings: Settings, campaign_id: int) -> dict[str, int]:
    """Invite everyone in the audience not yet invited. Safe to run again at any point."""
    with database.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None or campaign.status == "closed":
            return {}
        ids = audience_ids(session, campaign.audience)
        survey = conversations.survey_of(session.get(SurveyVersion, campaign.survey_version_id))
    totals = {"invited": 0, "waiting": 0, "skipped": 0}
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        with database.session() as session:
            campaign = session.get(Campaign, campaign_id)
            made = _invite_chunk(session, campaign, survey, chunk, settings)
        for key, value in made.items():
            totals[key] += value
    with database.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign.status == "launching":
            campaign.status = "launched"
        campaign.fanout_done_at = utcnow()
    return totals


def _invite_chunk(
    session: Session, campaign: Campaign, survey: Survey, chunk: list[int], settings: Settings
) -> dict[str, int]:
    done = set(
        session.scalars(
            select(Invitation.participant_id).where(
                Invitation.campaign_id == campaign.id, Invitation.participant_id.in_(chunk)
            )
        )
    )
    people = [
        p
        for p in session.scalars(
            select(Participant).where(Participant.id.in_(chunk)).order_by(Participant.id)
        )
        if p.id not in done
    ]
    busy = set(
        session.scalars(
            select(Conversation.participant_id).where(
                Conversation.participant_id.in_([p.id for p in people]),
                Conversation.status == engine.ACTIVE,
            )
        )
    )
    now = utcnow()
    invitations: list[dict[str, Any]] = []
    starting: list[tuple[Participant, str]] = []
    counts = {"invited": 0, "waiting": 0, "skipped": 0}
    for person in people:
        channel, why_not = _channel_for(campaign, person, settings)
        if person.opted_out:
            channel, why_not = channel, "opted out"
        if why_not is not None:
            invitations.append(
                _invitation(campaign.id, person.id, channel, "skipped", why_not, now)
            )
            counts["skipped"] += 1
        elif person.id in busy:
            invitations.append(
                _invitation(campaign.id, person.id, channel, "waiting", "in another survey", now)
            )
            counts["waiting"] += 1
        else:
            starting.append((person, channel))
    _start_many(session, campaign, survey, starting, settings, now, invitations)
    counts["invited"] = len(starting)
    if invitations:
        session.execute(insert(Invitation.__table__), invitations)
    return counts


def _invitation(
    campaign_id: int,
    person_id: int,
    channel: str | None,
    status: str,
    reason: str | None,
    now: datetime,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "participant_id": person_id,
        "channel": channel,
        "status": status,
        "reason": reason,
        "created_at": now,
        "conversation_id": extra.get("conversation_id"),
        "message_id": extra.get("message_id"),
        "invited_at": extra.get("invited_at"),
        "reminder_message_id": None,
        "reminded_at": None,
    }


def _start_many(
    session: Session,
    campaign: Campaign,
    survey: Survey,
    starting: list[tuple[Participant, str]],
    settings: Settings,
    now: datetime,
    invitations: list[dict[str, Any]],
) -> list[int]:
    """Begin each person's conversation and queue their invitation, with bulk inserts; the
    invitations are sent once the caller's unit of work commits."""
    if not starting:
        return []
    steps = [
        engine.begin(survey, conversations.context_for(person, settings.org_name))
        for person, _ in starting
    ]
    conv_ids = session.scalars(
        insert(Conversation.__table__).returning(
            Conversation.__table__.c.id, sort_by_parameter_order=True
        ),
        [
            {
                "participant_id": person.id,
                "survey_version_id": campaign.survey_version_id,
                "campaign_id": campaign.id,
                "channel": channel,
                "status": engine.ACTIVE,
                "state": step.state.to_json(),
                "started_at": None,
                "last_activity_at": now,
                "completed_at": None,
            }
            for (person, channel), step in zip(starting, steps, strict=True)
        ],
    ).all()
    message_ids = session.scalars(
        insert(Message.__table__).returning(Message.__table__.c.id, sort_by_parameter_order=True),
        [
            {
                "participant_id": person.id,
                "conversation_id": conv_id,
                "campaign_id": campaign.id,
                "in_reply_to_id": None,
                "direction": "out",
                "channel": channel,
                "kind": "invitation",
                "address": outbox.address_for(person, channel),
                "body": render_for(channel, step.prompts, settings.org_name),
                "provider_id": None,
                "status": "pending",
                "error_code": None,
                "error_message": None,
                "attempts": 0,
                "send_after": None,
                "claimed_at": None,
                "sent_at": None,
                "created_at": now,
                "updated_at": now,
            }
            for (person, channel), step, conv_id in zip(starting, steps, conv_ids, strict=True)
        ],
    ).all()
    for (person, channel), conv_id, message_id in zip(starting, conv_ids, message_ids, strict=True):
        invitations.append(
            _invitation(
                campaign.id,
                person.id,
                channel,
                "invited",
                None,
                now,
                conversation_id=conv_id,
                message_id=message_id,
                invited_at=now,
            )
        )
    queue_after_commit(session, [(message_id, None) for message_id in message_ids])
    return list(message_ids)


@events.survey_ended.connect
def _on_survey_ended(
    _survey_id: str, *, session: Session, participant_id: int, settings: Settings, **_: Any
) -> None:
    promote_waiting(session, participant_id, settings)


def promote_waiting(session: Session, participant_id: int, settings: Settings) -> list[int]:
    """Their survey just ended: invite them to the oldest campaign they were waiting for.
    The caller holds the person's lock (`conversations.lock_person`)."""
    invitation = session.scalar(
        select(Invitation)
        .where(Invitation.participant_id == participant_id, Invitation.status == "waiting")
        .order_by(Invitation.id)
        .limit(1)
        .with_for_update()
    )
    if invitation is None:
        return []
    campaign = session.get(Campaign, invitation.campaign_id)
    person = session.get(Participant, participant_id)
    if campaign.status == "closed" or person.opted_out:
        invitation.status, invitation.reason = (
            "skipped",
            "campaign closed" if campaign.status == "closed" else "opted out",
        )
        return []
    survey = conversations.survey_of(session.get(SurveyVersion, campaign.survey_version_id))
    now = utcnow()
    made: list[dict[str, Any]] = []
    channel = invitation.channel or channels.default_for(person)
    if channel is None:
        invitation.status, invitation.reason = "skipped", "no address on any channel"
        return []
    message_ids = _start_many(session, campaign, survey, [(person, channel)], settings, now, made)
    invitation.status, invitation.reason = "invited", None
    invitation.conversation_id, invitation.message_id, invitation.invited_at = (
        made[0]["conversation_id"],
        made[0]["message_id"],
        now,
    )
    return message_ids


def close(session: Session, campaign: Campaign) -> None:
    """No more invitations or reminders; conversations in progress may still finish."""
    campaign.status, campaign.closed_at = "closed", utcnow()
    session.execute(
        update(Invitation)
        .where(Invitation.campaign_id == campaign.id, Invitation.status == "waiting")
        .values(status="skipped", reason="campaign closed")
    )
    session.execute(
        update(Message)
        .where(
            Message.campaign_id == campaign.id,
            Message.status == "pending",
            Message.kind.in_(("invitation", "reminder")),
        )
        .values(status="cancelled", error_message="campaign closed", updated_at=utcnow())
    )


def get_or_404(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignError(f"no campaign {campaign_id}", 404)
    return campaign


__all__ = ["CampaignError", "SurveyError", "close", "create", "fan_out", "launch"]
