"""The staff verbs: one function per thing staff can do, shared by the admin API, the `involve`
command and (next) the browser console.

Each takes what it needs (the database, the settings, Redis, the survey library, an `actor` for
the audit log), does the whole verb (its audit row, its locking, its after-commit work, its
refusals) and returns plain data, or raises `Refused` with an HTTP-like status and one line.
Callers only parse their input and render what comes back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import conversations, privacy
from bot.channels.base import LinkError
from bot.config import Settings
from bot.conversations import inbox, links, outbox
from bot.cycle import campaigns, exports, fallback, frequency, panel, progress
from bot.cycle import feedback as fb
from bot.cycle.refusals import Refused
from bot.cycle.requests import (
    AuditQuery,
    FeedbackRequest,
    ImportRequest,
    LaunchRequest,
    TelegramLinkRequest,
)
from bot.privacy import audit
from bot.scripts.library import SurveyLibrary
from bot.scripts.survey import Question
from bot.storage import status as stored
from bot.storage.db import Database
from bot.storage.models import Campaign, Conversation, Invitation, Participant, SurveyVersion

log = logging.getLogger(__name__)

__all__ = [
    "Refused",
    "audit_log",
    "campaign_number",
    "campaign_status",
    "close_campaign",
    "create_campaign",
    "erase",
    "export_responses",
    "feedback_counts",
    "import_csv",
    "import_json",
    "issue_telegram_link",
    "launch_campaign",
    "list_surveys",
    "participant_id",
    "preview_feedback",
    "send_feedback",
    "subject_access",
    "summary",
    "telegram_link_sheet",
    "unsuited_before_launch",
]


# --- surveys -----------------------------------------------------------------------------


def list_surveys(library: SurveyLibrary) -> list[dict[str, Any]]:
    """Every script, with its questions; a script with a mistake is listed as not loaded, with
    its problems, since staff would otherwise look for it in vain."""
    listed: list[dict[str, Any]] = [
        {
            "id": s.id,
            "title": s.title,
            "questions": [_question(q) for q in s.questions],
            "loaded": True,
        }
        for s in library.surveys().values()
    ]
    listed += [
        {"id": Path(name).stem, "title": name, "questions": [], "loaded": False, "problems": p}
        for name, p in sorted(library.broken.items())
    ]
    return listed


def _question(question: Question) -> dict[str, Any]:
    described: dict[str, Any] = {
        "id": question.id,
        "type": question.type,
        "ask": question.ask,
        "optional": question.optional,
    }
    if question.choices:
        described["options"] = [{"value": o.value, "label": o.label} for o in question.choices]
    if question.when:
        described["when"] = {k: list(v) for k, v in question.when.items()}
    return described


# --- participants ------------------------------------------------------------------------


def import_json(
    database: Database,
    settings: Settings,
    body: Any,
    *,
    replace_tags: bool = False,
    source: str = "api",
    actor: str | None = None,
) -> dict[str, Any]:
    """`{"participants": [...]}`: how many were created, changed and already up to date, and
    each bad row with its number (from 1)."""
    request = ImportRequest.parse(body)
    return _import(
        database, settings, request.participants, [], 1, replace_tags, source, None, actor
    )


def import_csv(
    database: Database,
    settings: Settings,
    data: bytes | str,
    *,
    replace_tags: bool = False,
    source: str = "api",
    progress: Callable[[int], None] | None = None,
    started: Callable[[int], None] | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """A CSV file (UTF-8, with or without a BOM); rows are numbered as a spreadsheet shows them
    (the header is row 1). `started(n)` is told how many rows there are before any is stored."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise Refused("the CSV is not UTF-8 text; save it as 'CSV UTF-8'") from None
    rows, problems = panel.read_csv(data)
    if started:
        started(len(rows))
    return _import(database, settings, rows, problems, 2, replace_tags, source, progress, actor)


def _import(
    database: Database,
    settings: Settings,
    rows: list[Any],
    problems: list[dict[str, Any]],
    first_row: int,
    replace_tags: bool,
    source: str,
    progress: Callable[[int], None] | None,
    actor: str | None = None,
) -> dict[str, Any]:
    with database.session() as session:
        report = panel.import_rows(
            session,
            settings,
            rows,
            replace_tags=replace_tags,
            source=source,
            first_row=first_row,
            progress=progress,
        )
        if actor:
            audit.record(
                session,
                actor,
                "import",
                "panel",
                created=report.created,
                updated=report.updated,
                unchanged=report.unchanged,
                rejected=len(report.rejected) + len(problems),
            )
    result = report.as_json()
    result["rejected"] = problems + result["rejected"]
    return result


def _person(session: Session, key: str) -> Participant:
    if "\x00" in key:
        # No stored id holds a NUL, and PostgreSQL refuses one in a query (a 500).
        raise Refused(f"no participant {key!r}", 404)
    try:
        person = privacy.find(session, key)
    except privacy.AmbiguousKey as exc:
        raise Refused(str(exc), 409) from None
    if person is None or person.erased_at is not None:
        raise Refused(f"no participant {key!r}", 404)
    return person


def participant_id(database: Database, key: str) -> int:
    """Our id for `key` (id:N, ext:X, or either bare where it names one person)."""
    with database.read() as session:
        return _person(session, key).id


def subject_access(database: Database, key: str, actor: str) -> dict[str, Any]:
    """Everything held about one person; the look is written to the audit log."""
    with database.session() as session:
        person = _person(session, key)
        data = privacy.subject_access(session, person)
        audit.record(session, actor, "subject_access", f"participant {person.id}")
    return data


def erase(
    database: Database, settings: Settings, redis: Redis | None, key: str, actor: str
) -> dict[str, Any]:
    """Erase one person's personal data (answers stay as anonymous counts), then their
    addresses in rq's job history. `redis_cleaned` is False when Redis could not be reached:
    that history expires on its own (rq's result TTL)."""
    with database.session() as session:
        person = _person(session, key)
        privacy.lock_for_erasure(session, person)
        number = person.id
        addresses = privacy.addresses_of(person)
        held = privacy.held_at_providers(session, person)
        removed = privacy.erase(session, settings, person)
        removed["recordings"] = sum(len(refs) for refs in held.values())
        audit.record(session, actor, "erasure", f"participant {number}", **removed)
    cleaned = False
    if redis is not None:
        try:
            privacy.forget_in_redis(redis, addresses)
            cleaned = True
        except Exception:
            log.warning("erasure: could not clean rq's job history in Redis")
    recordings_queued = not held
    if held and redis is not None:
        try:
            from rq import Retry

            for channel, refs in held.items():
                outbox.queue(redis).enqueue(
                    "bot.commands.jobs.erase_at_provider",
                    channel,
                    refs,
                    retry=Retry(max=5, interval=[60, 300, 900, 3600, 86400]),
                    result_ttl=0,
                )
            recordings_queued = True
        except Exception:
            log.warning("erasure: could not queue deleting what %d providers hold", len(held))
    return {
        "participant": number,
        "erased": True,
        **removed,
        "redis_cleaned": cleaned,
        "recordings_deletion_queued": recordings_queued,
    }


def issue_telegram_link(
    database: Database, settings: Settings, key: str, request: Any = None
) -> dict[str, Any]:
    """A single-use deep link that joins the person's Telegram chat to them when tapped; only
    a hash of its code is kept, so this is the one time it can be shown."""
    days = TelegramLinkRequest.parse(request if request is not None else {}).days
    try:
        prefix = links.link_prefix(settings)
    except LinkError as exc:
        raise Refused(str(exc), 409) from None
    with database.session() as session:
        person = _person(session, key)
        try:
            issued = links.issue(session, person, days=days)
        except LinkError as exc:
            raise Refused(str(exc)) from None
        external_id = person.external_id
    return {
        "participant": issued.participant_id,
        "external_id": external_id,
        "link": issued.link(prefix),
        "expires_at": issued.expires_at.isoformat(),
    }


def telegram_link_sheet(
    database: Database, settings: Settings, tags: tuple[str, ...] = (), days: float = 28
) -> list[list[str]]:
    """Links for a panel mail-out (everyone not yet in Telegram, or with any of `tags`): CSV
    rows, a header first."""
    days = TelegramLinkRequest.parse({"days": days}).days
    try:
        prefix = links.link_prefix(settings)
    except LinkError as exc:
        raise Refused(str(exc), 409) from None
    with database.session() as session:
        rows = links.panel_links(session, prefix, tags=tags, days=days)
    return [[exports.defuse(cell) for cell in row] for row in rows]


# --- campaigns ---------------------------------------------------------------------------


def campaign_number(value: str | int) -> int:
    """A campaign id from a URL or a form; anything that cannot be one is "no campaign"."""
    try:
        number = int(value)
    except ValueError:
        raise Refused(f"no campaign {value!r}", 404) from None
    if not 0 < number < 2**62:
        raise Refused(f"no campaign {value!r}", 404)
    return number


def create_campaign(
    database: Database,
    settings: Settings,
    library: SurveyLibrary,
    request: Any,
    actor: str | None = None,
) -> dict[str, Any]:
    """A draft campaign from a CampaignRequest (or the JSON of one); audited when `actor` is
    given. `unsuited`: who it would invite at an address their channel does not suit (a
    landline, for texts), and the offer of another channel for them, which the launch takes
    (`bot.cycle.unsuited`); empty when there is nobody."""
    with database.session() as session:
        surveys = library.surveys()
        campaign, size = campaigns.create(
            session, request, surveys, settings, broken=library.broken
        )
        if actor:
            audit.record(session, actor, "create_campaign", f"campaign {campaign.id}")
        found = campaigns.unsuited_in(session, campaign, surveys[campaign.survey_id], settings)
        return {
            "id": campaign.id,
            "status": campaign.status,
            "audience_size": size,
            "unsuited": [u.as_json() for u in found],
        }


def unsuited_before_launch(
    database: Database, settings: Settings, campaign_id: int
) -> list[dict[str, Any]]:
    """What a launch now would be warned of (`create_campaign`'s `unsuited`), for the people
    not invited yet: the console asks before staff launch."""
    with database.read() as session:
        campaign = campaigns.get_or_404(session, campaign_id)
        survey = conversations.survey_of(session.get(SurveyVersion, campaign.survey_version_id))
        return [u.as_json() for u in campaigns.unsuited_in(session, campaign, survey, settings)]


def list_campaigns(database: Database, limit: int = 100) -> list[dict[str, Any]]:
    """The newest campaigns first: what each asks, where it stands, and its counts."""
    with database.read() as session:
        found = session.scalars(
            select(Campaign).order_by(Campaign.id.desc()).limit(max(1, min(limit, 1000)))
        ).all()
        return [
            {
                "id": c.id,
                "survey": c.survey_id,
                "status": c.status,
                "channel": c.channel,
                "created_at": c.created_at.isoformat(),
                "launched_at": c.launched_at.isoformat() if c.launched_at else None,
                "closed_at": c.closed_at.isoformat() if c.closed_at else None,
                "counts": progress.counts(session, c.id).as_json(),
            }
            for c in found
        ]


def launch_campaign(
    database: Database,
    settings: Settings,
    redis: Redis,
    campaign_id: int,
    actor: str,
    request: Any = None,
) -> dict[str, Any]:
    """Start sending; the fan-out is enqueued once the launch has committed. `started` is False
    when it was launched already and nobody is left to invite (nothing is sent twice);
    `queued` is False when the job queue could not be reached: the launch stands, and the
    worker's reconciler enqueues it once Redis is back. `request` is a LaunchRequest (or its
    JSON, or None): with `move_unsuited_to`, people whose address is unsuited to their
    channel are invited on that one instead; `unsuited` says who and how many."""
    chosen = LaunchRequest.parse({} if request is None else request)
    with database.session() as session:
        campaign = campaigns.get_or_404(session, campaign_id)
        started = campaigns.launch(session, campaign, settings, chosen.move_unsuited_to)
        left_out = _left_out_at_launch(session, campaign, settings) if started else {}
        found = []
        if started:
            moved = campaign.move_unsuited_to
            detail = {"move_unsuited_to": moved} if moved else {}
            audit.record(session, actor, "launch", f"campaign {campaign.id}", **detail)
            survey = conversations.survey_of(session.get(SurveyVersion, campaign.survey_version_id))
            found = campaigns.unsuited_in(session, campaign, survey, settings)
        status = stored.CampaignStatus.LAUNCHING if started else campaign.status
    queued = started
    if started:
        try:
            campaigns.enqueue_fan_out(redis, campaign)
        except RedisError as exc:
            queued = False
            log.warning(
                "campaign %d launched; its fan-out waits for the reconciler (%s)",
                campaign_id,
                type(exc).__name__,
            )
    return {
        "id": campaign_id,
        "status": status,
        "started": started,
        "queued": queued,
        "left_out": left_out,
        "unsuited": [u.as_json() for u in found],
    }


def _left_out_at_launch(session: Session, campaign: Campaign, settings: Settings) -> dict[str, int]:
    """Who this launch leaves out, and why ({reason: people}), as the fan-out will judge it:
    staff learn it when they launch, not only once the invitations have gone."""
    audience = campaigns.audience_ids(session, campaign.audience)
    return frequency.left_out_at_launch(session, campaign, audience, settings)


def close_campaign(
    database: Database, settings: Settings, campaign_id: int, actor: str | None = None
) -> dict[str, Any]:
    """No more invitations or reminders; its conversations in progress end. Audited when
    `actor` is given."""
    with database.session() as session:
        campaign = campaigns.get_or_404(session, campaign_id)
        ended = campaigns.close(session, campaign, settings)
        if actor:
            audit.record(session, actor, "close", f"campaign {campaign_id}", ended=ended)
    return {"id": campaign_id, "status": stored.CampaignStatus.CLOSED, "conversations_ended": ended}


@dataclass(frozen=True)
class CampaignStatus:
    id: int
    survey: str
    status: str
    channel: str | None
    send_at: Any  # datetime | None
    counts: dict[str, int]
    held: progress.Held
    inbound: dict[str, Any]  # their messages whose handling is still retrying or gave up
    fallback: dict[str, Any] | None = None  # moved on to a next contact point, and reached
    left_out: dict[str, Any] | None = None  # invited lately by another campaign
    # Staff's choice at launch: where people whose address does not suit their channel go.
    move_unsuited_to: str | None = None

    def as_json(self, settings: Settings) -> dict[str, Any]:
        return {
            "id": self.id,
            "survey": self.survey,
            "status": self.status,
            "channel": self.channel,
            "send_at": self.send_at.isoformat() if self.send_at else None,
            "counts": self.counts,
            "held": self.held.as_json(settings),
            "inbound_problems": self.inbound,
            "fallback": self.fallback,
            "left_out": self.left_out,
            "move_unsuited_to": self.move_unsuited_to,
        }


def campaign_status(database: Database, settings: Settings, campaign_id: int) -> CampaignStatus:
    """Progress: counts per state, and what is held (quiet hours, a later start) until when."""
    with database.read() as session:
        campaign = campaigns.get_or_404(session, campaign_id)
        return CampaignStatus(
            id=campaign.id,
            survey=campaign.survey_id,
            status=campaign.status,
            channel=campaign.channel,
            send_at=campaign.send_at,
            counts=progress.counts(session, campaign.id).as_json(),
            held=progress.held(session, campaign.id, settings),
            inbound=inbox.problems(
                session,
                select(Invitation.participant_id).where(Invitation.campaign_id == campaign.id),
            ),
            fallback=fallback.counts(session, campaign).as_json(),
            left_out={
                "invite_gap_days": frequency.gap_days(campaign, settings),
                "invited_recently": frequency.left_out(session, campaign.id),
            },
            move_unsuited_to=campaign.move_unsuited_to,
        )


@dataclass
class Export:
    """responses.csv: `rows` invited people, and the file's text in chunks, read lazily (the
    campaign was found and the export written to the audit log before this is returned)."""

    campaign_id: int
    rows: int
    chunks: Iterator[str]


def export_responses(
    database: Database, campaign_id: int, actor: str, file: str, rows_per_chunk: int = 100
) -> Export:
    with database.session() as session:
        campaigns.get_or_404(session, campaign_id)
        audit.record(session, actor, "export", f"campaign {campaign_id}", file=file)
        total = session.scalar(
            select(func.count())
            .select_from(Invitation)
            .where(Invitation.campaign_id == campaign_id)
        )

    def generate() -> Iterator[str]:
        with database.read() as session:
            campaign = session.get(Campaign, campaign_id)
            rows = exports.response_rows(session, campaign)
            yield from exports.csv_chunks(rows, rows_per_chunk=rows_per_chunk)

    return Export(campaign_id, total or 0, generate())


def summary(database: Database, campaign_id: int) -> dict[str, Any]:
    """Per question: counts per option, or the list of text answers."""
    with database.read() as session:
        return exports.summary(session, campaigns.get_or_404(session, campaign_id))


# --- feedback ----------------------------------------------------------------------------


def _plan_feedback(
    session: Session,
    settings: Settings,
    campaign_id: int,
    request: FeedbackRequest,
    file: Path | None,
    sending: bool = False,
) -> tuple[Campaign, fb.Plan]:
    campaign = campaigns.get_or_404(session, campaign_id)
    # One feedback send at a time per campaign: a second waits, then sees the first's rows.
    # FOR NO KEY UPDATE, not FOR UPDATE: a writer holding a person's lock may still write a
    # row naming the campaign (a reply), which a FOR UPDATE would make wait on us while we
    # wait for that person's lock below.
    session.refresh(campaign, with_for_update={"key_share": True})
    if sending:
        # The campaign's row, then its people's locks in id order, as every bulk writer takes
        # them: their consent and answers are read below as their last writer left them.
        conversations.lock_people(
            session,
            session.scalars(
                select(Conversation.participant_id).where(Conversation.campaign_id == campaign.id)
            ),
        )
    survey = conversations.survey_for(session, campaign.survey_version_id)
    try:
        if request.uses_file() or file is not None:
            # Staff write `<survey>.feedback.yaml` once and preview or send it from anywhere.
            path = file or settings.conversations_dir / f"{survey.id}.feedback.yaml"
            definition = fb.load_file(path, survey)
        else:
            definition = fb.parse_definition(request.definition_payload(), survey)
        return campaign, fb.plan(session, campaign, definition)
    except fb.FeedbackError as exc:
        raise Refused(str(exc)) from None


def preview_feedback(
    database: Database,
    settings: Settings,
    campaign_id: int,
    request: Any = None,
    file: Path | None = None,
) -> dict[str, Any]:
    """Each recipient's message, rendered, with SMS size warnings; nothing is sent. The message
    comes from `request` (a FeedbackRequest or its JSON), else from `file`, else from the
    survey's `<id>.feedback.yaml`."""
    parsed = FeedbackRequest.parse(request if request is not None else {})
    with database.session() as session:
        _campaign, planned = _plan_feedback(session, settings, campaign_id, parsed, file)
        return fb.preview(planned)


def send_feedback(
    database: Database,
    settings: Settings,
    campaign_id: int,
    request: Any = None,
    file: Path | None = None,
    actor: str | None = None,
) -> dict[str, Any]:
    """Queue each recipient's message; they go once this commits (quiet hours, SEND_RATE,
    STOP honoured), at most once per person per campaign."""
    parsed = FeedbackRequest.parse(request if request is not None else {})
    with database.session() as session:
        campaign, planned = _plan_feedback(
            session, settings, campaign_id, parsed, file, sending=True
        )
        queued = fb.send(session, campaign, planned)
        if actor:
            audit.record(
                session, actor, "send_feedback", f"campaign {campaign_id}", queued=len(queued)
            )
    return {"queued": len(queued), "skipped": planned.skipped}


def feedback_counts(database: Database, campaign_id: int) -> dict[str, int]:
    with database.read() as session:
        return fb.counts(session, campaigns.get_or_404(session, campaign_id))


# --- the audit log -----------------------------------------------------------------------


def audit_log(database: Database, query: Mapping[str, Any] | AuditQuery) -> list[dict[str, Any]]:
    """Newest first: who looked at, erased, exported, launched or purged what, and when."""
    parsed = AuditQuery.parse(query)
    with database.read() as session:
        return [audit.as_json(e) for e in audit.recent(session, parsed.limit, parsed.before)]
