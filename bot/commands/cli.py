"""The `involve` command."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from bot import channels, logmask
from bot.commands import runtime
from bot.commands import simulate as sim
from bot.commands.output import confirm, echo
from bot.config import ConfigError, is_local_url, unreachable_from_internet
from bot.cycle import services
from bot.cycle import staff as accounts
from bot.cycle.lint import lint_paths
from bot.cycle.refusals import Refused
from bot.cycle.unsuited import Unsuited
from bot.logmask import mask_phone
from bot.privacy import audit, retention
from bot.providers.errors import SendError
from bot.scripts.survey import SurveyError, resolve
from bot.storage import db as storage
from bot.storage.models import Participant, utcnow
from bot.storage.status import CampaignStatus
from bot.text import terminal_safe


def _settings():
    try:
        return runtime.settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def _refusals() -> Iterator[None]:
    """A staff verb's refusal as one line and exit status 1, as the API answers it as JSON."""
    try:
        yield
    except Refused as exc:
        raise click.ClickException(exc.message) from None


def database_problem(exc: BaseException) -> str | None:
    """One line for a database that cannot be used (not reachable, or never set up), or None
    for any other error."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    if not isinstance(exc, OperationalError | ProgrammingError):
        return None
    said = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else ""
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if "no such table" in said or code == "42P01":
        return (
            "DATABASE_URL: this database has no involve tables yet;"
            " run `involve db upgrade` (`involve serve` does it itself)"
        )
    if isinstance(exc, OperationalError):
        return f"DATABASE_URL: cannot use the database ({logmask.redact(said)})"
    return None


class _Commands(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            # Refusals quote what was given (an id, a file's row): shown, not acted on.
            exc.message = terminal_safe(exc.message)
            raise
        except Exception as exc:
            problem = database_problem(exc)
            if problem is None:
                raise
            raise click.ClickException(problem) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """involve: surveys by text, keypad call and Telegram, and telling people what changed."""
    logmask.install()  # the worker and every command log without participants' numbers


@main.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too.")
def lint(files: tuple[str, ...], strict: bool) -> None:
    """Check survey scripts and their *.feedback.yaml files (all of CONVERSATIONS_DIR when no
    file is named)."""
    paths = [Path(f) for f in files] or sorted(_settings().conversations_dir.glob("*.y*ml"))
    if not paths:
        raise click.ClickException(f"no survey scripts to check in {_settings().conversations_dir}")
    errors = warnings = 0
    for report in lint_paths(paths):
        # One stream, in file order: a file's warnings sit beside its errors.
        for line in report.errors:
            echo(f"error: {line}")
        for line in report.warnings:
            echo(f"warning: {line}")
        errors += len(report.errors)
        warnings += len(report.warnings)
        if not report.errors and not report.warnings:
            echo(f"ok: {report.path}")
    if errors or warnings:
        echo(f"{len(paths)} file(s): {errors} error(s), {warnings} warning(s)")
    if errors or (strict and warnings):
        sys.exit(1)


@main.command()
@click.argument("survey")
@click.option(
    "--channel", type=click.Choice(channels.NAMES), default=channels.NAMES[0], show_default=True
)
@click.option(
    "--name", default="Sam", show_default=True, help="The participant's name, for {{ name }}."
)
def simulate(survey: str, channel: str, name: str) -> None:
    """Play SURVEY (a file, or an id in CONVERSATIONS_DIR) as a participant would."""
    settings = _settings()
    try:
        script = resolve(survey, settings.conversations_dir)
    except SurveyError as exc:
        raise click.ClickException(str(exc)) from None
    storage.upgrade(settings.database_url)
    interactive = sys.stdin.isatty()
    hint = channels.get(channel).simulate_hint
    echo(f"Simulating {script.title!r} by {channel} ({hint}; Ctrl-D ends).")

    def read() -> str | None:
        try:
            return input("> " if interactive else "")
        except EOFError:
            return None

    conversation_id = sim.run(runtime.database(), settings, script, channel, read, echo, name=name)
    echo(f"Stored as conversation {conversation_id} in {settings.database_url.split('@')[-1]}.")


@main.group()
def db() -> None:
    """The database."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply database migrations."""
    settings = _settings()
    storage.upgrade(settings.database_url, revision)
    echo(f"database at revision {storage.current_revision(settings.database_url)}")


@main.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="0.0.0.0 to accept outside connections."
)
@click.option(
    "--port",
    default=lambda: int(os.environ.get("PORT", "5000")),
    show_default="5000 or $PORT",
    type=int,
)
@click.option("--web-workers", default=2, show_default=True, type=int)
@click.option(
    "--demo",
    is_flag=True,
    help="Try a whole cycle: local stand-ins for Twilio and Telegram, so nothing reaches anyone.",
)
def serve(host: str, port: int, web_workers: int, demo: bool) -> None:
    """Run everything on this machine: web app, worker, and Redis/SQLite where none is set."""
    # Here, not at the top: only this verb needs the web app, gunicorn and embedded Redis.
    from bot.commands import serve as serving

    if demo:
        # Here: the demo's stand-ins (local fake providers) load only for --demo.
        from bot.commands import demo as demos

        sys.exit(
            demos.serve(
                port, host, lambda settings: serving.serve(settings, host, port, web_workers)
            )
        )
    sys.exit(serving.serve(_settings(), host, port, web_workers))


@main.group("demo")
def demo_group() -> None:
    """Play a participant in the demo that `involve serve --demo` runs."""


@demo_group.command("text")
@click.argument("address")
@click.argument("words", nargs=-1, required=True)
@click.option(
    "--telegram",
    is_flag=True,
    help="A Telegram message from the chat id ADDRESS (rather than a text from a number).",
)
def demo_text(address: str, words: tuple[str, ...], telegram: bool) -> None:
    """Send WORDS to the running demo as the participant at ADDRESS, signed as Twilio (or
    Telegram) would; print what the service answers."""
    # Here: the demo's stand-ins (local fake providers) load only for this verb.
    from bot.commands import demo as demos

    demos.text(address, " ".join(words), telegram)


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
def worker(burst: bool) -> None:
    """An rq worker with the scheduler, for the Procfile."""
    # Here, not at the top: only this verb needs rq's worker and cron machinery.
    from bot.commands import worker as working

    _settings()
    try:
        connection = runtime.redis()
        connection.ping()
    except Exception as exc:
        raise click.ClickException(f"REDIS_URL: cannot reach Redis ({exc})") from None
    working.run(connection, burst=burst)


def _redis():
    try:
        connection = runtime.redis()
        connection.ping()
        return connection
    except Exception as exc:
        raise click.ClickException(
            f"cannot reach Redis ({exc}); set REDIS_URL or run `involve serve`"
        ) from None


@main.group()
def participants() -> None:
    """The panel."""


# The address columns are the channels' own (from the registry), so the help names them.
_PANEL_COLUMNS = ", ".join(
    ("name", *channels.CONTACT_FIELDS, "channel", "tags", "recontact", "external_id", "language")
)


@participants.command("import", help=f"Import or update a panel from FILE.csv ({_PANEL_COLUMNS}).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--replace-tags", is_flag=True, help="Replace each person's tags instead of adding to them."
)
def participants_import(file: str, replace_tags: bool) -> None:
    from tqdm import tqdm

    _settings()
    with tqdm(unit="row", desc="importing", disable=None) as bar, _refusals():
        report = services.import_csv(
            runtime.database(),
            runtime.settings(),
            Path(file).read_bytes(),
            replace_tags=replace_tags,
            source="import",
            actor=audit.cli_actor(),
            progress=bar.update,
            started=lambda total: setattr(bar, "total", total),
        )
    rejected = report["rejected"]
    echo(
        f"created {report['created']}, updated {report['updated']},"
        f" unchanged {report['unchanged']}, rejected {len(rejected)}"
    )
    for problem in rejected:
        echo(f"  row {problem['row']}: {problem['error']}")
    for note in report["notes"]:
        echo(f"  row {note['row']}: imported, but {note['note']}")
    if not report["created"] and not report["updated"] and not report["unchanged"]:
        # A script or a person checking `$?` must see that nothing was imported.
        raise click.ClickException(f"no rows imported from {file}")


@participants.command("show")
@click.argument("key")
def participants_show(key: str) -> None:
    """Print all we hold about one person as JSON (subject access). KEY: id:N, ext:X or either."""
    import json

    _settings()
    with _refusals():
        data = services.subject_access(runtime.database(), key, audit.cli_actor())
    echo(json.dumps(data, indent=2, ensure_ascii=False))


@participants.command("erase")
@click.argument("key")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def participants_erase(key: str, yes: bool) -> None:
    """Erase one person's personal data everywhere. KEY: id:N, ext:X or either."""
    _settings()
    with _refusals():
        number = services.participant_id(runtime.database(), key)
        if not yes:
            # Named as staff know them, the key they typed first: our own id means nothing
            # to them, and erasing the wrong person cannot be undone.
            with runtime.database().read() as session:
                person = session.get(Participant, number)
                who = ", ".join(
                    part
                    for part in (
                        key,
                        person.name if person else None,
                        mask_phone(person.contact_points[0].address)
                        if person and person.contact_points
                        else None,
                    )
                    if part
                )
            confirm(f"Erase {who} (participant {number})? This cannot be undone")
        try:
            redis = runtime.redis()
        except Exception:
            redis = None
        erased = services.erase(
            runtime.database(), runtime.settings(), redis, f"id:{number}", audit.cli_actor()
        )
    if not erased["redis_cleaned"]:
        echo("note: Redis was not reachable; rq's job history there expires on its own")
    echo(f"participant {number} erased")


@main.group()
def privacy() -> None:
    """Retention and the audit log."""


@privacy.command("purge")
def privacy_purge() -> None:
    """Purge message bodies and free text older than RETENTION_DAYS now (the worker does it daily)."""
    settings = _settings()
    if settings.retention_days is None:
        raise click.ClickException("RETENTION_DAYS is not set: nothing is purged by age")
    counts = retention.purge_expired(
        runtime.database(), settings, utcnow(), actor=audit.cli_actor()
    )
    echo(
        f"purged {counts['messages']} message(s), {counts['answers']} answer(s) and "
        f"{counts['conversations']} conversation state(s) older than {settings.retention_days} days"
    )


@privacy.command("audit")
@click.option("--limit", type=int, default=50, show_default=True)
def privacy_audit(limit: int) -> None:
    """The newest audit events: who looked at, erased, exported, launched or purged what."""
    _settings()
    with _refusals():
        events = services.audit_log(runtime.database(), {"limit": limit})
    for event in events:
        detail = " ".join(f"{k}={v}" for k, v in event["detail"].items())
        echo(
            f"{event['at']} {event['actor']} {event['action']} {event['target'] or '-'} {detail}".rstrip()
        )


@participants.command("telegram-links")
@click.argument("file", type=click.Path(dir_okay=False, writable=True), required=False)
@click.option(
    "--participant", "key", help="One person (our id or the external id): print their link."
)
@click.option("--tag", "tags", multiple=True, help="Only people with this tag (repeatable).")
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True, max=365),
    default=28,
    show_default=True,
    help="Days until the links expire.",
)
def participants_telegram_links(
    file: str | None, key: str | None, tags: tuple[str, ...], days: float
) -> None:
    """Single-use Telegram deep links: FILE.csv for a panel mail-out (everyone not yet in
    Telegram, or --tag), or one person's with --participant."""
    import csv
    from datetime import datetime

    settings = _settings()
    if (file is None) == (key is None):
        raise click.UsageError("give FILE.csv or --participant ID (one of them)")
    with _refusals():
        if key is not None:
            issued = services.issue_telegram_link(runtime.database(), settings, key, {"days": days})
            expires = datetime.fromisoformat(issued["expires_at"])
            echo(f"{issued['link']}  (single use, expires {expires:%Y-%m-%d %H:%M} UTC)")
            return
        rows = services.telegram_link_sheet(runtime.database(), settings, tags=tags, days=days)
    assert file is not None
    with open(file, "w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows(rows)
    echo(f"wrote {len(rows) - 1} single-use links to {file} (expire in {days:g} days)")


@main.group("webhooks")
def webhooks_group() -> None:
    """Where Twilio and Telegram send what people write."""


@webhooks_group.command("set")
def webhooks_set() -> None:
    """Point each channel that is on at PUBLIC_BASE_URL, and say what was set."""
    settings = _settings()
    # A provider on the internet pointed at a local or plain-http URL loses every text and
    # call that comes in, silently: refuse before changing anything. A provider that is itself
    # local (a fake, a self-hosted Bot API server) can reach a local URL.
    public = [
        channel.title
        for channel in channels.all_channels()
        if channel.off_reason(settings) is None
        and (api := channel.provider_api(settings)) is not None
        and not is_local_url(api)
    ]
    problem = unreachable_from_internet(settings.public_base_url)
    if public and problem is not None:
        unset = "" if os.environ.get("PUBLIC_BASE_URL", "").strip() else " (unset: the default)"
        raise click.ClickException(
            f"PUBLIC_BASE_URL is {settings.public_base_url}{unset}, but {problem}, so "
            f"{' and '.join(sorted(set(public)))} could not reach it: set it to this service's "
            "public https address and run this again; nothing was changed"
        )
    failed = False
    for channel in channels.all_channels():
        why_not = channel.off_reason(settings)
        if why_not is not None:
            echo(f"{channel.name}: off ({why_not}); not set")
            continue
        try:
            for line in channel.point_webhooks(settings):
                echo(f"{channel.name}: {line}")
        except SendError as exc:
            failed = True
            echo(f"{channel.name}: could not set: {exc}", err=True)
    if failed:
        raise SystemExit(1)


@main.group()
def campaign() -> None:
    """Campaigns: the admin API's verbs from the shell."""


@campaign.command("create")
@click.argument("survey")
@click.option("--tag", "tags", multiple=True, help="Invite people with this tag (repeatable).")
@click.option(
    "--participant",
    "people",
    multiple=True,
    help="Invite this person: id:N, ext:X, or either bare where unambiguous (repeatable).",
)
@click.option("--all", "everyone", is_flag=True, help="Invite the whole panel.")
@click.option(
    "--channel",
    type=click.Choice(channels.NAMES),
    default=None,
    help="Default: each person's preferred channel.",
)
@click.option("--send-at", default=None, help="ISO 8601 time to start, e.g. 2026-12-01T10:00")
@click.option("--reminder-after-hours", type=float, default=None)
@click.option(
    "--fallback-after-hours",
    type=float,
    default=None,
    help="Invite people not reached on their first contact point on their next one, this many"
    " hours after their invitation (0: as soon as it fails). Default: no fallback.",
)
@click.option(
    "--invite-gap-days",
    type=int,
    default=None,
    help="Leave out people another campaign invited in the last this many days"
    " (0: nobody). Default: the INVITE_GAP_DAYS setting (14).",
)
def campaign_create(
    survey,
    tags,
    people,
    everyone,
    channel,
    send_at,
    reminder_after_hours,
    fallback_after_hours,
    invite_gap_days,
) -> None:
    """Create a draft campaign for SURVEY."""
    chosen = [bool(tags), bool(people), everyone]
    if sum(chosen) != 1:
        raise click.UsageError(
            "choose the audience with --tag, --participant or --all (one of them)"
        )
    audience = (
        {"tags": list(tags)}
        if tags
        else {"participants": list(people)}
        if people
        else {"all": True}
    )
    payload = {
        "survey": survey,
        "audience": audience,
        "channel": channel,
        "send_at": send_at,
        "reminder_after_hours": reminder_after_hours,
    }
    # Only when given: a request names what staff chose, and the defaults stay the core's.
    if fallback_after_hours is not None:
        payload["fallback_after_hours"] = fallback_after_hours
    if invite_gap_days is not None:
        payload["invite_gap_days"] = invite_gap_days
    settings = _settings()
    with _refusals():
        created = services.create_campaign(
            runtime.database(), settings, runtime.library(), payload, actor=audit.cli_actor()
        )
    number, size = created["id"], created["audience_size"]
    echo(
        f"campaign {number} created (draft) for {size} {'person' if size == 1 else 'people'};"
        f" launch it with: involve campaign launch {number}"
    )
    for found in map(Unsuited.from_json, created["unsuited"]):
        offer = (
            f" (launch with: involve campaign launch {number} --move-unsuited-to"
            f" {found.offer.channel}; else they are invited by {found.title} all the same)"
            if found.offer
            else f"; they are invited by {found.title} all the same"
        )
        echo(f"warning: {found.sentence()}: {found.offer_sentence()}{offer}")


def _say_whose_settings(settings: Any, redis: Any) -> None:
    """This terminal judges channels and quiet hours by its own environment; the worker, which
    sends, by the service's. Say which were used, and where they differ from the worker's."""
    # Here, as in `worker`: the worker module loads rq's worker and cron machinery.
    from bot.commands.worker import service_view, worker_state, worker_view

    try:
        theirs, state = worker_view(redis), worker_state(redis)
    except Exception:  # Redis away: the launch itself has said so
        return
    ours = service_view(settings)
    if not state["alive"]:
        seen = f"last seen {state['last_seen']}" if state["last_seen"] else "never seen"
        echo(
            f"note: no worker is running ({seen}), and nothing is sent until one is"
            " (`involve worker`, or `involve serve`); this terminal judged by its own settings:"
            f" {_describe_view(ours)}",
            err=True,
        )
        return
    if theirs is None:
        return  # a worker from before workers said what they judge by
    differences = []
    for name, here in ours["channels"].items():
        there = theirs.get("channels", {}).get(name)
        if there != here:
            differences.append(f"{name} {here} here, {there or 'unknown'} in the worker")
    for key, label in (("quiet_hours", "quiet hours"), ("timezone", "time zone")):
        if ours[key] != theirs.get(key):
            differences.append(f"{label} {ours[key]} here, {theirs.get(key)} in the worker")
    if differences:
        echo(
            "warning: this terminal's settings are not the worker's, and the worker's are the"
            f" ones that send ({'; '.join(differences)}): export the"
            " service's settings here, or use the console or the admin API",
            err=True,
        )


def _describe_view(view: dict[str, Any]) -> str:
    on = ", ".join(f"{name} {state}" for name, state in view["channels"].items())
    return f"{on}; quiet hours {view['quiet_hours']} ({view['timezone']})"


@campaign.command("launch")
@click.argument("campaign_id", type=int)
@click.option(
    "--move-unsuited-to",
    type=click.Choice(channels.NAMES),
    default=None,
    help="Invite people whose address cannot take their channel (a landline, for texts) on"
    " this channel instead, where they have an address it suits. `involve campaign create`"
    " says how many and which channel can reach them. Default: invite them as they are.",
)
def campaign_launch(campaign_id: int, move_unsuited_to: str | None) -> None:
    """Send the invitations (a worker does the sending)."""
    settings = _settings()
    redis = _redis()  # fail now, in one line, before anything is launched
    request = {"move_unsuited_to": move_unsuited_to} if move_unsuited_to else None
    with _refusals():
        launched = services.launch_campaign(
            runtime.database(), settings, redis, campaign_id, audit.cli_actor(), request
        )
    if launched["started"] and not launched["queued"]:
        echo(
            f"campaign {campaign_id} launched, but Redis cannot be reached just now: the worker"
            " starts sending within a minute or two of Redis being back"
        )
    elif launched["started"]:
        echo(f"campaign {campaign_id} launching: the worker is sending the invitations")
    else:
        echo(f"campaign {campaign_id} was launched already; nothing is sent twice")
    for why, people in launched.get("left_out", {}).items():
        echo(
            f"left out: {people} {'person' if people == 1 else 'people'} {why}"
            " by another campaign (the gap between invitations; see INVITE_GAP_DAYS)"
        )
    for found in map(Unsuited.from_json, launched.get("unsuited", [])):
        echo(
            f"{'moved' if found.moved else 'warning'}: {found.sentence()}: {found.moved_sentence()}"
        )
    _say_whose_settings(settings, redis)


@campaign.command("list")
def campaign_list() -> None:
    """Campaigns, newest first: their numbers, surveys, where each stands."""
    _settings()
    found = services.list_campaigns(runtime.database())
    if not found:
        echo("no campaigns yet: involve campaign create SURVEY --tag TAG")
    for c in found:
        counts = c["counts"]
        echo(
            f"{c['id']:>5}  {c['survey']:24} {c['status']:10}"
            f" invited {counts.get('invited', 0)}, completed {counts.get('completed', 0)}"
        )


@campaign.command("status")
@click.argument("campaign_id", type=int)
def campaign_status(campaign_id: int) -> None:
    """Progress counts."""
    settings = _settings()
    with _refusals():
        found = services.campaign_status(runtime.database(), settings, campaign_id)
    echo(f"campaign {campaign_id}: {found.survey}, {found.status}")
    if found.send_at is not None and found.status != CampaignStatus.CLOSED:
        local = found.send_at.astimezone(settings.timezone)
        echo(f"  starts at     {local:%H:%M on %a %d %b %Y} ({settings.timezone})")
    for key, value in found.counts.items():
        echo(f"  {key.replace('_', ' '):12} {value}")
    _echo_fallback_and_gap(found)
    # "invited" means written, not sent: say what is still waiting and until when.
    echo(f"  {'held':12} {found.held.describe(settings)}")
    _say_whose_settings(settings, runtime.redis())
    stuck = found.inbound
    if stuck["retrying"] or stuck["failed"]:
        reasons = "; ".join(stuck["reasons"]) or "see subject access"
        echo(
            f"  {'replies':12} {stuck['retrying']} being handled again, "
            f"{stuck['failed']} given up ({reasons})"
        )


def _echo_fallback_and_gap(found: Any) -> None:
    """The status lines for channel fallback and the gap between invitations."""
    moved = found.fallback or {}
    if moved.get("after_hours") is not None:
        echo(
            f"  {'fallback':12} {moved['moved_on']} invited on their next contact point,"
            f" {moved['reached_by_fallback']} reached by fallback"
            f" (after {moved['after_hours']:g} hours)"
        )
    if found.move_unsuited_to:
        echo(
            f"  {'moved':12} to {channels.get(found.move_unsuited_to).title} where their address"
            " cannot take their channel (chosen at launch)"
        )
    gap = found.left_out or {}
    if gap.get("invited_recently"):
        echo(
            f"  {'left out':12} {gap['invited_recently']} invited by another campaign in the"
            f" last {gap['invite_gap_days']} days"
        )


@campaign.command("close")
@click.argument("campaign_id", type=int)
def campaign_close(campaign_id: int) -> None:
    """No more invitations or reminders; conversations in progress end."""
    settings = _settings()
    with _refusals():
        closed = services.close_campaign(
            runtime.database(), settings, campaign_id, actor=audit.cli_actor()
        )
    echo(
        f"campaign {campaign_id} closed; {closed['conversations_ended']} conversation(s) in progress ended"
    )


@campaign.command("export")
@click.argument("campaign_id", type=int)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Default: campaign-ID-responses.csv",
)
def campaign_export(campaign_id: int, output: str | None) -> None:
    """Write responses.csv (the same as the admin API's), with a progress bar."""
    from tqdm import tqdm

    _settings()
    target = Path(output or f"campaign-{campaign_id}-responses.csv")
    with _refusals():
        export = services.export_responses(
            runtime.database(), campaign_id, audit.cli_actor(), target.name, rows_per_chunk=1000
        )
    with (
        target.open("w", encoding="utf-8", newline="") as out,
        tqdm(total=export.rows, unit="row", desc="exporting", disable=None) as bar,
    ):
        for chunk in export.chunks:
            out.write(chunk)
            bar.update(chunk.count("\r\n"))
    echo(f"wrote {target}")


@main.group("feedback")
def feedback_group() -> None:
    """ "You said, we did": tell each person how their input was used."""


@feedback_group.command("preview")
@click.argument("campaign_id", type=int)
@click.option(
    "--file", "file", default=None, help="Default: CONVERSATIONS_DIR/<survey>.feedback.yaml"
)
def feedback_preview(campaign_id: int, file: str | None) -> None:
    """Show each recipient's message without sending anything."""
    settings = _settings()
    with _refusals():
        shown = services.preview_feedback(
            runtime.database(), settings, campaign_id, file=Path(file) if file else None
        )
    for entry in shown["recipients"]:
        size = (
            f", {entry['segments']} segment(s) {entry['encoding']}" if "segments" in entry else ""
        )
        echo(f"--- {entry['participant']} by {entry['channel']}{size}")
        echo(f"(agreed to hear back by: {entry['consent']})")
        echo(entry["message"])
        for warning in entry["warnings"]:
            echo(f"warning: {warning}")
    echo(f"{len(shown['recipients'])} to send, {len(shown['skipped'])} skipped")
    for skip in shown["skipped"]:
        echo(f"  skipped {skip['participant']}: {skip['reason']}")


@feedback_group.command("send")
@click.argument("campaign_id", type=int)
@click.option(
    "--file", "file", default=None, help="Default: CONVERSATIONS_DIR/<survey>.feedback.yaml"
)
def feedback_send(campaign_id: int, file: str | None) -> None:
    """Queue the messages (a worker sends them, honouring quiet hours and SEND_RATE)."""
    settings = _settings()
    _redis()  # fail now, in one line, rather than leave the messages for the reconciler
    with _refusals():
        sent = services.send_feedback(
            runtime.database(),
            settings,
            campaign_id,
            file=Path(file) if file else None,
            actor=audit.cli_actor(),
        )
    echo(f"queued {sent['queued']} message(s); {len(sent['skipped'])} skipped")


if __name__ == "__main__":
    main()


@main.group()
def staff() -> None:
    """Staff accounts for the console (/console/)."""


def _new_password() -> str:
    """Asked for twice at a terminal, or the first line of standard input (for scripts)."""
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    # Only the first line: a trailing newline from `echo` is not part of the password.
    return sys.stdin.readline().rstrip("\r\n")


def _staff_verb(action: str, verb: Any, email: str, *args: Any) -> str:
    """Run one staff-account verb in a unit of work, audited; the account's email."""
    storage.upgrade(_settings().database_url)
    try:
        with runtime.database().session() as session:
            account = verb(session, email, *args)
            audit.record(session, audit.cli_actor(), action, account.email)
            return account.email
    except accounts.StaffError as exc:
        raise click.ClickException(str(exc)) from None


@staff.command("add")
@click.argument("email")
def staff_add(email: str) -> None:
    """Create a console account for EMAIL. The password is asked for twice at a terminal, or
    read from the first line of standard input otherwise (for scripts)."""
    settings = _settings()
    address = _staff_verb("staff_added", accounts.add, email, _new_password())
    echo(f"staff account {address} created; sign in at {settings.public_base_url}/console/")


@staff.command("password")
@click.argument("email")
def staff_password(email: str) -> None:
    """Give EMAIL's account a new password (asked as for `add`); signs out its sessions."""
    address = _staff_verb("staff_password", accounts.set_password, email, _new_password())
    echo(f"new password set for {address}; any console session of theirs has ended")


@staff.command("disable")
@click.argument("email")
def staff_disable(email: str) -> None:
    """Shut EMAIL out of the console (someone who left): no sign-in, open pages sign out."""
    address = _staff_verb("staff_disabled", accounts.disable, email)
    echo(f"{address} can no longer sign in; any console session of theirs has ended")


@staff.command("enable")
@click.argument("email")
def staff_enable(email: str) -> None:
    """Let a disabled account sign in again."""
    address = _staff_verb("staff_enabled", accounts.enable, email)
    echo(f"{address} can sign in again")


@staff.command("list")
def staff_list() -> None:
    """Every staff account: in use or disabled, and when each last signed in."""
    storage.upgrade(_settings().database_url)
    with runtime.database().session() as session:
        rows = [(a.email, a.disabled_at, a.last_signed_in_at) for a in accounts.listing(session)]
    if not rows:
        echo("no staff accounts yet: involve staff add EMAIL")
    for email, disabled, last in rows:
        state = f"disabled {disabled:%d %b %Y}" if disabled else "in use"
        seen = f"last signed in {last:%d %b %Y %H:%M}" if last else "never signed in"
        echo(f"{email}  {state}, {seen}")
