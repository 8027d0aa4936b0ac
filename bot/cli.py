"""The `involve` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from bot.config import ConfigError


def _settings():
    from bot import runtime

    try:
        return runtime.settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """involve: surveys by text, keypad call and Telegram, and telling people what changed."""


@main.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too.")
def lint(files: tuple[str, ...], strict: bool) -> None:
    """Check survey scripts (all of CONVERSATIONS_DIR when no file is named)."""
    from bot.lint import lint_file

    paths = [Path(f) for f in files] or sorted(
        p for p in _settings().conversations_dir.glob("*.y*ml") if ".feedback." not in p.name
    )
    if not paths:
        raise click.ClickException("no survey scripts to check")
    errors = warnings = 0
    for path in paths:
        report = lint_file(path)
        for line in report.errors:
            click.echo(f"error: {line}", err=True)
        for line in report.warnings:
            click.echo(f"warning: {line}", err=True)
        errors += len(report.errors)
        warnings += len(report.warnings)
        if not report.errors and not report.warnings:
            click.echo(f"ok: {path}")
    if errors or warnings:
        click.echo(f"{len(paths)} file(s): {errors} error(s), {warnings} warning(s)", err=True)
    if errors or (strict and warnings):
        sys.exit(1)


@main.command()
@click.argument("survey")
@click.option(
    "--channel", type=click.Choice(["sms", "voice", "telegram"]), default="sms", show_default=True
)
@click.option(
    "--name", default="Sam", show_default=True, help="The participant's name, for {{ name }}."
)
def simulate(survey: str, channel: str, name: str) -> None:
    """Play SURVEY (a file, or an id in CONVERSATIONS_DIR) as a participant would."""
    from bot import db, runtime
    from bot import simulate as sim
    from bot.survey import SurveyError, resolve

    settings = _settings()
    try:
        script = resolve(survey, settings.conversations_dir)
    except SurveyError as exc:
        raise click.ClickException(str(exc)) from None
    db.upgrade(settings.database_url)
    interactive = sys.stdin.isatty()
    hint = {
        "sms": "type a reply",
        "voice": "type keys: 1-9, * repeats, 0 skips, # stops",
        "telegram": "type a button number or text",
    }
    click.echo(f"Simulating {script.title!r} by {channel} ({hint[channel]}; Ctrl-D ends).")

    def read() -> str | None:
        try:
            return input("> " if interactive else "")
        except EOFError:
            return None

    conversation_id = sim.run(
        runtime.database(), script, channel, read, click.echo, name=name, org=settings.org_name
    )
    click.echo(
        f"Stored as conversation {conversation_id} in {settings.database_url.split('@')[-1]}."
    )


@main.group()
def db() -> None:
    """The database."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply database migrations."""
    from bot import db as database

    settings = _settings()
    database.upgrade(settings.database_url, revision)
    click.echo(f"database at revision {database.current_revision(settings.database_url)}")


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
def serve(host: str, port: int, web_workers: int) -> None:
    """Run everything on this machine: web app, worker, and Redis/SQLite where none is set."""
    from bot import serve as serving

    sys.exit(serving.serve(_settings(), host, port, web_workers))


@main.command()
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
def worker(burst: bool) -> None:
    """An rq worker with the scheduler, for the Procfile."""
    from bot import runtime
    from bot import worker as working

    _settings()
    try:
        connection = runtime.redis()
        connection.ping()
    except Exception as exc:
        raise click.ClickException(f"REDIS_URL: cannot reach Redis ({exc})") from None
    working.run(connection, burst=burst)


if __name__ == "__main__":
    main()
