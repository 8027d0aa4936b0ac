"""Campaigns: a survey sent to an audience, invitations fanned out in rq, one reminder, counts.

Launching returns at once; `fan_out` (an rq job) invites the audience a thousand at a time with
bulk writes, and can be run again after any crash: each person is invited at most once per
campaign (a unique row in `invitations`). Someone already in another survey waits and is invited
when that one ends or expires.

Locks, as every writer takes them (`bot.conversations`): a chunk holds the campaign's row shared
(closing it waits for the chunk, and a chunk after a close sees it closed), then its thousand
people's rows in id order, and only then reads who they are, whether they stopped and whether a
survey is in progress for them. Closing takes the campaign's row, then each person's in the same
order, and cancels their messages after their lock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from redis import Redis
from sqlalchemy import bindparam, delete, insert, select, union, update
from sqlalchemy.orm import Session, selectinload

from bot import channels, conversations, engine, privacy
from bot.config import Settings
from bot.conversations import events, outbox
from bot.cycle import frequency, unsuited
from bot.cycle.requests import CampaignError, CampaignRequest
from bot.scripts.survey import Survey, SurveyError
from bot.sending import pacing
from bot.storage import contacts
from bot.storage.db import Database, connection_of
from bot.storage.models import (
    Campaign,
    ContactPoint,
    Conversation,
    Invitation,
    Message,
    Participant,
    SurveyVersion,
    as_id,
    utcnow,
)
from bot.storage.prepared import Prepared
from bot.storage.status import CampaignStatus, InvitationStatus, Kind, Outbound
from bot.text import normal_external_id

BATCH = 1000
SIMULATOR = "simulate"  # Participant.joined_via of the people `involve simulate` plays
FAN_OUT_JOB = "bot.commands.jobs.fan_out"  # rq jobs, by name (`bot.commands.jobs`)
REMINDERS_JOB = "bot.commands.jobs.send_reminders"
CAMPAIGN_CLOSED = "campaign closed"  # why waiting invitations and unsent messages ended
_ENDED_BY_CLOSING = (Kind.INVITATION, Kind.REMINDER)  # a campaign's messages a close cancels


# --- can a channel send ----------------------------------------------------------------


def channel_off(channel: str, settings: Settings) -> str | None:
    """None when invitations on `channel` can go out now, else why not (and what to set).

    The one question launching, fan-out and creating ask; the channel registry answers it.
    """
    return channels.get(channel).off_reason(settings)


# --- creating --------------------------------------------------------------------------


def audience_ids(session: Session, audience: Mapping[str, Any]) -> list[int]:
    """Ids of the people an audience names (erased people never), in id order."""
    live = Participant.erased_at.is_(None)
    if audience.get("all"):
        # "Everyone" means the panel: the people `involve simulate` made to try scripts are not
        # in it (they can still be named, or tagged, on purpose).
        real = Participant.joined_via.is_(None) | (Participant.joined_via != SIMULATOR)
        return list(
            session.scalars(select(Participant.id).where(live, real).order_by(Participant.id))
        )
    if "tags" in audience:
        wanted = {tag.casefold() for tag in audience["tags"]}  # "Readers" is "readers"
        # Tags are a small JSON list per person; filtering here works the same on every database.
        rows = session.execute(
            select(Participant.id, Participant.tags).where(live).order_by(Participant.id)
        )
        return [pid for pid, tags in rows if wanted & {t.casefold() for t in tags or []}]
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


def _person_key(session: Session, value: str | int) -> str | int | None:
    """One audience entry made explicit: our id as a number, an external id as `ext:<x>`.

    A bare text that is one person's id and another person's external id is refused (409), as
    in the admin API's URLs, rather than inviting both. A key nobody has is returned as None:
    the caller names it (a typo must not quietly shrink the audience).
    """
    if isinstance(value, int):
        number = as_id(str(value))
        return number if number is not None and session.get(Participant, number) else None
    try:
        person = privacy.find(session, value)
    except privacy.AmbiguousKey as exc:
        raise CampaignError(f"audience participants: {exc}", 409) from None
    if person is None:
        return None
    typed_external = not value.startswith("id:") and (
        person.external_id in (value, normal_external_id(value))
    )
    if value.startswith("ext:") or typed_external:
        return f"ext:{person.external_id}"
    return person.id


def create(
    session: Session,
    payload: Mapping[str, Any] | CampaignRequest,
    surveys: Mapping[str, Survey],
    settings: Settings,
    broken: Mapping[str, list[str]] | None = None,
) -> tuple[Campaign, int]:
    """A draft campaign. The request is checked by `bot.cycle.requests.CampaignRequest`; `broken`
    names scripts that did not load, so staff learn why theirs is missing instead of only
    that it is."""
    request = CampaignRequest.parse(payload, surveys=surveys, broken=broken, settings=settings)
    survey_id, channel = request.survey, request.channel
    assert survey_id is not None  # the model refuses a missing survey
    if channel is not None:
        why_not = channel_off(channel, settings)
        if why_not is not None:
            raise CampaignError(f"cannot invite by {channel} now: {why_not}", 409)
        if channel not in channels.able_to_carry(surveys[survey_id]):
            # A keypad has keys 1 to 9: a longer list cannot be answered on a call.
            raise CampaignError(
                f"survey {survey_id!r} cannot go by {channel}: "
                f"{surveys[survey_id].too_many_for(channels.get(channel))}; "
                "choose another channel"
            )
    audience = request.audience_json()
    if "participants" in audience:
        keys = {v: _person_key(session, v) for v in audience["participants"]}
        unknown = [str(v) for v, key in keys.items() if key is None]
        if unknown:
            raise CampaignError(
                f"no participant {', '.join(unknown)}: check the ids or external ids"
                " (people are found by either), or import them first",
                409,
            )
        audience = {"participants": list(dict.fromkeys(keys.values()))}
    version = conversations.survey_version(session, surveys[survey_id])
    campaign = Campaign(
        survey_id=survey_id,
        survey_version_id=version.id,
        status=CampaignStatus.DRAFT,
        audience=audience,
        channel=channel,
        send_at=request.send_at,
        reminder_after_hours=request.reminder_after_hours,
        fallback_after_hours=request.fallback_after_hours,
        invite_gap_days=request.invite_gap_days,
    )
    size = len(audience_ids(session, audience))
    if size == 0:
        # 409, like a channel that is off: the request is well formed, the panel is what lacks.
        raise CampaignError(f"nobody to invite: {_why_empty(audience)}", 409)
    session.add(campaign)
    session.flush()
    return campaign, size


def _why_empty(audience: Mapping[str, Any]) -> str:
    if audience.get("all"):
        return "the panel is empty; import people first (involve participants import FILE.csv)"
    if "tags" in audience:
        return f"nobody has the tag(s) {', '.join(map(str, audience['tags']))}"
    return "none of these ids or external ids is a participant"


# --- launching -------------------------------------------------------------------------


def _reachable_people(session: Session, ids: list[int]) -> Iterator[SimpleNamespace]:
    """The people with these ids who have not opted out, as just what choosing their channel
    looks at (`id`, `channel` and `contact_points`), read in bulk: not 100,000 loaded people."""
    for start in range(0, len(ids), BATCH * 10):
        chunk = ids[start : start + BATCH * 10]
        people = {
            person_id: SimpleNamespace(id=person_id, channel=preferred, contact_points=[])
            for person_id, preferred in session.execute(
                select(Participant.id, Participant.channel).where(
                    Participant.id.in_(chunk), Participant.opted_out.is_(False)
                )
            )
        }
        for point in session.execute(
            select(
                ContactPoint.participant_id,
                ContactPoint.channel,
                ContactPoint.address,
                ContactPoint.opted_out_at,
                ContactPoint.unreachable_at,
                ContactPoint.last_inbound_at,
            )
            .where(ContactPoint.participant_id.in_(list(people)))
            .order_by(ContactPoint.participant_id, ContactPoint.position, ContactPoint.id)
        ):
            people[point.participant_id].contact_points.append(point)
        yield from people.values()


def _first_choice(campaign: Campaign, person: Any) -> str | None:
    """The channel to invite this person on: the campaign's, or their own; moved where staff
    chose another for people whose address there is unsuited (`bot.cycle.unsuited`)."""
    choice = campaign.channel or channels.default_for(person)
    return unsuited.channel_for(person, choice, campaign.move_unsuited_to)


def _channels_needed(
    session: Session, campaign: Campaign
) -> tuple[Counter[str], dict[str, list[datetime | None]]]:
    """How many people in the audience (not opted out) each channel would have to reach;
    and, of those with a contact point there we may use, when each last wrote to us on it
    (None: never), for a channel's reply window (`Channel.launch_problem`)."""
    needed: Counter[str] = Counter()
    last_wrote: dict[str, list[datetime | None]] = {}
    for person in _reachable_people(session, audience_ids(session, campaign.audience)):
        choice = _first_choice(campaign, person)
        if choice is not None:
            needed[choice] += 1
            usable = [
                p for p in person.contact_points if p.channel == choice and contacts.is_usable(p)
            ]
            if usable:
                last_wrote.setdefault(choice, []).append(usable[0].last_inbound_at)
    return needed, last_wrote


def unsuited_in(
    session: Session, campaign: Campaign, survey: Survey, settings: Settings
) -> list[unsuited.Unsuited]:
    """Who, of the people this campaign has yet to invite, would be invited at an address
    their channel does not suit (a landline, for texts), and who else could reach them; with
    the launch's choice (`move_unsuited_to`) where it made one."""
    done = set(
        session.scalars(
            select(Invitation.participant_id).where(Invitation.campaign_id == campaign.id)
        )
    )
    ids = [pid for pid in audience_ids(session, campaign.audience) if pid not in done]
    return unsuited.tally(
        _reachable_people(session, ids),
        campaign.channel,
        survey,
        settings,
        move_to=campaign.move_unsuited_to,
    )


def _check_move(campaign: Campaign, survey: Survey, settings: Settings, move_to: str) -> None:
    """Refuse a channel to move people to that could not take them, saying why."""
    if move_to not in channels.NAMES:
        raise CampaignError(
            f"move_unsuited_to must be one of {', '.join(channels.NAMES)}, got {move_to!r}"
        )
    channel = channels.get(move_to)
    if move_to == campaign.channel:
        raise CampaignError(f"move_unsuited_to: this campaign already invites by {channel.title}")
    if not channel.can_start:
        raise CampaignError(f"move_unsuited_to: we cannot invite people by {channel.title}")
    why_not = channel_off(move_to, settings)
    if why_not is not None:
        raise CampaignError(f"cannot move people to {channel.title} now: {why_not}", 409)
    if move_to not in channels.able_to_carry(survey):
        raise CampaignError(
            f"cannot move people to {channel.title}: {survey.too_many_for(channel)}", 409
        )


def _refuse_if_cannot_send(session: Session, campaign: Campaign, settings: Settings) -> None:
    """A launch that could reach nobody would only use the campaign up: refuse it, naming what
    to set. When some people can be reached it goes ahead; those whose channel is off are
    skipped with the reason, and a later launch (once it is on) invites them."""
    needed, last_wrote = _channels_needed(session, campaign)
    off = {name: why for name in needed if (why := channel_off(name, settings)) is not None}
    if not needed:
        return
    if len(off) < len(needed):
        _refuse_if_bound_to_fail(session, campaign, settings, needed, off, last_wrote)
        return
    problems = [
        f"{channels.get(name).title} is off and {people} "
        f"{'person' if people == 1 else 'people'} would not be reached: {off[name]}"
        for name, people in sorted(needed.items())
    ]
    raise CampaignError(f"cannot launch: {'; '.join(problems)}; then launch again", 409)


def _refuse_if_bound_to_fail(
    session: Session,
    campaign: Campaign,
    settings: Settings,
    needed: Mapping[str, int],
    off: Mapping[str, str],
    last_wrote: Mapping[str, list[datetime | None]],
) -> None:
    """A channel that is on may still be unable to carry this launch's invitations (no
    approved template for people outside a provider's reply window): each would fail for
    good at send time. Refuse the launch, naming what to set, rather than use it up."""
    survey = conversations.survey_for(session, campaign.survey_version_id)
    now = utcnow()
    # When the invitations are due: a scheduled launch's time, after any quiet hours.
    due = pacing.next_allowed(
        max(campaign.send_at or now, now), settings.quiet_hours, settings.timezone
    )
    problems = []
    for name in sorted(needed):
        if name in off:
            continue
        channel = channels.get(name)
        options = survey.channel_options.get(name, {})
        problem = channel.launch_problem(options, settings, last_wrote.get(name, []), due)
        if problem is not None:
            problems.append(f"{channel.title}: {problem}")
    if problems:
        raise CampaignError(f"cannot launch: {'; '.join(problems)}; then launch again", 409)


def _off_channel(channel: str | None, reason: str | None) -> str | None:
    """The channel a skipped invitation waits for, when it was skipped only because that
    channel was off ("text message is off: set ..."); rows from before the channel was kept
    on them name it only in the reason."""
    if not reason or " is off" not in reason:
        return None
    if channel in channels.NAMES:
        return channel
    said = reason.split(" is off", 1)[0]
    by_title = {c.title: c.name for c in channels.all_channels()}
    return by_title.get(said) or (said if said in channels.NAMES else None)


def _unreached_because_off(session: Session, campaign: Campaign, settings: Settings) -> list[int]:
    """Invitation ids skipped only because a channel was off, on channels that can send now."""
    rows = session.execute(
        select(Invitation.id, Invitation.channel, Invitation.reason).where(
            Invitation.campaign_id == campaign.id, Invitation.status == InvitationStatus.SKIPPED
        )
    )
    return [
        iid
        for iid, channel, reason in rows
        if (name := _off_channel(channel, reason)) is not None
        and channel_off(name, settings) is None
    ]


def launch(
    session: Session,
    campaign: Campaign,
    settings: Settings,
    move_unsuited_to: str | None = None,
) -> bool:
    """Start the fan-out; False (and nothing new) if it was launched already.

    A launched campaign whose people were not reached only because their channel was off is
    launched again for them, once the channel can send. `move_unsuited_to` is staff's choice
    of a channel for people whose address on theirs is unsuited (`bot.cycle.unsuited`); it
    holds for everyone this and later launches invite, and a launch without one keeps the
    campaign's.
    """
    if campaign.status == CampaignStatus.CLOSED:
        raise CampaignError("this campaign is closed", 409)
    kept = campaign.move_unsuited_to
    if move_unsuited_to is not None:
        survey = conversations.survey_of(session.get(SurveyVersion, campaign.survey_version_id))
        _check_move(campaign, survey, settings, move_unsuited_to)
        # Before the check below, which counts the people each channel must reach: moved.
        campaign.move_unsuited_to = move_unsuited_to
    _refuse_if_cannot_send(session, campaign, settings)
    if campaign.status == CampaignStatus.DRAFT:
        campaign.status = CampaignStatus.LAUNCHING
        campaign.launched_at = utcnow()
        return True
    retry = _unreached_because_off(session, campaign, settings)
    if not retry:
        campaign.move_unsuited_to = kept  # nothing is launched, so nothing changes
        return False
    # The fan-out invites everyone without an invitation row, so removing these rows is all a
    # second pass needs; each person is still invited at most once.
    session.execute(delete(Invitation).where(Invitation.id.in_(retry)))
    # As a fresh launch for the reconciler: it resumes this fan-out if the job is lost, and
    # does not race the job just enqueued (it waits FANOUT_STALL after launched_at).
    campaign.status, campaign.launched_at, campaign.fanout_done_at = (
        CampaignStatus.LAUNCHING,
        utcnow(),
        None,
    )
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
    If Redis loses either, the reconciler enqueues it again (`bot.cycle.upkeep`)."""
    queue = outbox.queue(redis)
    job_id = fan_out_job_id(campaign.id)
    if campaign.send_at is not None and campaign.send_at > utcnow():
        queue.enqueue_at(
            campaign.send_at, FAN_OUT_JOB, campaign.id, job_timeout=3600, job_id=job_id
        )
    else:
        queue.enqueue(FAN_OUT_JOB, campaign.id, job_timeout=3600, job_id=job_id)
    due = reminder_due(campaign) if reminder else None
    if due is not None:
        queue.enqueue_at(max(due, utcnow()), REMINDERS_JOB, campaign.id, job_timeout=3600)


def _channel_for(
    campaign: Campaign, person: Participant, settings: Settings, survey: Survey | None = None
) -> tuple[str | None, str | None]:
    """The channel to invite this person on, or (None, why not)."""
    choice = _first_choice(campaign, person)
    if choice is None:
        return None, "no address on any channel"
    channel = channels.get(choice)
    if contacts.first_usable(person.contact_points, choice) is None:
        # None given, or each one stopped or unreachable there (the provider said so).
        why = contacts.why_not_usable(person.contact_points, choice)
        return None, f"{channel.title} {why}" if why else f"no {channel.title} address"
    if survey is not None and choice not in channels.able_to_carry(survey):
        # Their own channel cannot carry this survey (a keypad has keys 1 to 9).
        return None, survey.too_many_for(channel)
    why_not = channel_off(choice, settings)
    if why_not is not None:
        # The channel is kept, so that a launch once it is on finds these people again
        # (`_unreached_because_off`).
        return choice, f"{channel.title} is off: {why_not}"
    return choice, None


def render_for(channel: str, prompts: Iterable[engine.Prompt], org: str) -> str:
    """What an outbound message says, as stored in the outbox, for each channel."""
    return channels.get(channel).render_body(list(prompts), org)


def fan_out(database: Database, settings: Settings, campaign_id: int) -> dict[str, int]:
    """Invite everyone in the audience not yet invited. Safe to run again at any point."""
    with database.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None or campaign.status == CampaignStatus.CLOSED:
            return {}
        ids = audience_ids(session, campaign.audience)
        survey = conversations.survey_of(session.get(SurveyVersion, campaign.survey_version_id))
    totals = {"invited": 0, "waiting": 0, "skipped": 0}
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        with database.session() as session:
            # Shared: chunks never wait for each other, and a close waits for this one.
            campaign = session.get(Campaign, campaign_id, with_for_update={"read": True})
            if campaign.status == CampaignStatus.CLOSED:
                return totals  # closed meanwhile: nobody more is invited
            made = _invite_chunk(session, campaign, survey, chunk, settings)
        for key, value in made.items():
            totals[key] += value
    with database.session() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign.status == CampaignStatus.LAUNCHING:
            campaign.status = CampaignStatus.LAUNCHED
        campaign.fanout_done_at = utcnow()
    return totals


def _invite_chunk(
    session: Session, campaign: Campaign, survey: Survey, chunk: list[int], settings: Settings
) -> dict[str, int]:
    """Invite these people, in the caller's unit of work, which holds the campaign's row."""
    # Their locks first: a STOP, a keyword start or an answer in flight for one of them
    # finishes before anything below reads them, and what it wrote is what is read.
    chunk = conversations.lock_people(session, chunk)
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
            select(Participant)
            .where(Participant.id.in_(chunk))
            .order_by(Participant.id)
            .options(selectinload(Participant.contact_points))
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
    # Not too often: people another campaign invited lately are left out (`frequency`).
    recent = frequency.recently_invited(session, campaign, [p.id for p in people], settings, now)
    invitations: list[dict[str, Any]] = []
    starting: list[tuple[Participant, str]] = []
    counts = {"invited": 0, "waiting": 0, "skipped": 0}
    for person in people:
        channel, why_not = _channel_for(campaign, person, settings, survey)
        if person.opted_out:
            channel, why_not = channel, "opted out"
        elif why_not is None and person.id in recent:
            why_not = frequency.reason(frequency.gap_days(campaign, settings))
        if why_not is not None:
            invitations.append(
                _invitation(campaign.id, person.id, channel, InvitationStatus.SKIPPED, why_not, now)
            )
            counts["skipped"] += 1
        elif person.id in busy:
            invitations.append(
                _invitation(
                    campaign.id,
                    person.id,
                    channel,
                    InvitationStatus.WAITING,
                    "in another survey",
                    now,
                )
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
    started = conversations.start_many(
        session,
        survey,
        campaign.survey_version_id,
        campaign.id,
        starting,
        now,
        settings.org_name,
    )
    conv_ids = [conv_id for conv_id, _ in started]
    message_ids = outbox.add_many(
        session,
        [
            outbox.outgoing(
                person,
                channel,
                render_for(channel, step.prompts, settings.org_name),
                Kind.INVITATION,
                campaign_id=campaign.id,
                conversation_id=conv_id,
                now=now,
            )
            for (person, channel), (conv_id, step) in zip(starting, started, strict=True)
        ],
    )
    for (person, channel), conv_id, message_id in zip(starting, conv_ids, message_ids, strict=True):
        invitations.append(
            _invitation(
                campaign.id,
                person.id,
                channel,
                InvitationStatus.INVITED,
                None,
                now,
                conversation_id=conv_id,
                message_id=message_id,
                invited_at=now,
            )
        )
    return message_ids


def connect() -> None:
    """Subscribe to what conversations announce. Every process that handles people's input
    calls this at start (`bot.commands.runtime`), so it never depends on an import order."""
    events.survey_ended.connect(_on_survey_ended)


def _on_survey_ended(
    _survey_id: str, *, session: Session, participant_id: int, settings: Settings, **_: Any
) -> None:
    promote_waiting(session, participant_id, settings)


_OLDEST_WAITING = Prepared(
    select(Invitation.id)
    .where(
        Invitation.participant_id == bindparam("participant_id"),
        Invitation.status == InvitationStatus.WAITING,
    )
    .order_by(Invitation.id)
    .limit(1)
    .with_for_update()
)


def promote_waiting(session: Session, participant_id: int, settings: Settings) -> list[int]:
    """Their survey just ended: invite them to the oldest campaign they were waiting for.
    The caller holds the person's lock (`conversations.lock_person`)."""
    # What the caller changed (their conversation ended) is written first: a new conversation
    # for them below must not meet the old one still active.
    session.flush()
    # Most people were waiting for nothing: one prebuilt statement says so (every survey's end),
    # on the unit of work's connection: `session.connection()` made the ORM session join its
    # transaction (bookkeeping that cost more than the statement), which only the ORM work
    # below needs.
    found = _OLDEST_WAITING.first(connection_of(session), {"participant_id": participant_id})
    if found is None:
        return []
    invitation = session.get(Invitation, found.id)  # locked by the statement above
    campaign = session.get(Campaign, invitation.campaign_id)
    person = session.get(Participant, participant_id)
    if campaign.status == CampaignStatus.CLOSED or person.opted_out:
        invitation.status, invitation.reason = (
            InvitationStatus.SKIPPED,
            CAMPAIGN_CLOSED if campaign.status == CampaignStatus.CLOSED else "opted out",
        )
        return []
    if frequency.recently_invited(session, campaign, [participant_id], settings):
        # Another campaign invited them while they waited: not again so soon.
        invitation.status = InvitationStatus.SKIPPED
        invitation.reason = frequency.reason(frequency.gap_days(campaign, settings))
        return []
    survey = conversations.survey_of(session.get(SurveyVersion, campaign.survey_version_id))
    now = utcnow()
    made: list[dict[str, Any]] = []
    channel = invitation.channel or channels.default_for(person)
    if channel is None:
        invitation.status, invitation.reason = InvitationStatus.SKIPPED, "no address on any channel"
        return []
    message_ids = _start_many(session, campaign, survey, [(person, channel)], settings, now, made)
    invitation.status, invitation.reason = InvitationStatus.INVITED, None
    invitation.conversation_id, invitation.message_id, invitation.invited_at = (
        made[0]["conversation_id"],
        made[0]["message_id"],
        now,
    )
    return message_ids


def close(session: Session, campaign: Campaign, settings: Settings) -> int:
    """No more invitations or reminders, and its conversations in progress end.

    Left open, they would keep their people "in a survey" for up to 7 days, and the next
    campaign to the same people would wait behind them: whoever waited is invited now (the
    messages go when the unit of work commits). Returns how many conversations ended.
    """
    campaign.status, campaign.closed_at = CampaignStatus.CLOSED, utcnow()
    # Written now: the campaign's row lock comes before any person's (a fan-out chunk holding
    # it finishes first; one after this sees the campaign closed), and who has something to
    # end is read after it.
    session.flush()
    people = _touched_by(session, campaign.id)
    ended = 0
    for start in range(0, len(people), BATCH):
        # Their locks first, in id order as every writer of many people takes them; what each
        # has waiting, in progress or pending is read and ended after it.
        for participant_id in conversations.lock_people(session, people[start : start + BATCH]):
            ended += _close_for(session, campaign, participant_id, settings)
    return ended


def _touched_by(session: Session, campaign_id: int) -> list[int]:
    """Everyone closing this campaign has something to end for: an invitation waiting, a
    conversation in progress, an invitation or reminder not yet sent."""
    found = session.scalars(
        union(
            select(Invitation.participant_id).where(
                Invitation.campaign_id == campaign_id,
                Invitation.status == InvitationStatus.WAITING,
            ),
            select(Conversation.participant_id).where(
                Conversation.campaign_id == campaign_id, Conversation.status == engine.ACTIVE
            ),
            select(Message.participant_id).where(
                Message.campaign_id == campaign_id,
                Message.status == Outbound.PENDING,
                Message.kind.in_(_ENDED_BY_CLOSING),
            ),
        )
    )
    return sorted(pid for pid in found if pid is not None)


def _close_for(
    session: Session, campaign: Campaign, participant_id: int, settings: Settings
) -> int:
    """End one person's part in a closed campaign; the caller holds their lock. 1 if a
    conversation of theirs ended."""
    session.execute(
        update(Invitation)
        .where(
            Invitation.campaign_id == campaign.id,
            Invitation.participant_id == participant_id,
            Invitation.status == InvitationStatus.WAITING,
        )
        .values(status=InvitationStatus.SKIPPED, reason=CAMPAIGN_CLOSED)
    )
    conversations.cancel_pending(
        session,
        participant_id,
        CAMPAIGN_CLOSED,
        campaign_id=campaign.id,
        kinds=_ENDED_BY_CLOSING,
    )
    conv = session.scalar(
        select(Conversation)
        .where(
            Conversation.campaign_id == campaign.id,
            Conversation.participant_id == participant_id,
            Conversation.status == engine.ACTIVE,
        )
        .with_for_update()
    )
    if conv is None:  # they finished meanwhile, or only waited
        return 0
    conversations.end_conversation(session, conv, engine.EXPIRED)
    promote_waiting(session, participant_id, settings)
    return 1


def get_or_404(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignError(f"no campaign {campaign_id}", 404)
    return campaign


__all__ = ["CampaignError", "SurveyError", "close", "create", "fan_out", "launch"]
