from datetime import timedelta

from rq import Queue
from sqlalchemy import select

from bot.commands import runtime
from bot.conversations import outbox
from bot.privacy import retention
from bot.storage.models import Answer, AuditEvent, Conversation, Message, utcnow
from tests.conftest import PUBLIC, run_worker
from tests.fakes import post_twilio, sms_params

PHONE = "+447700900077"
WORDS = "The stairs at the day centre are too steep for my knees"


def _answer_a_survey(client):
    for body in ["TITLE", "1", WORDS, "4", "yes"]:
        assert (
            post_twilio(client, PUBLIC, "/webhooks/twilio/sms", sms_params(body, sender=PHONE))
        ).status_code == 200


def _held(database):
    with database.session() as session:
        return {
            "bodies": [m.body for m in session.scalars(select(Message)) if m.body],
            "answers": {
                a.question_id: (a.value, a.raw_text) for a in session.scalars(select(Answer))
            },
            "states": [c.state for c in session.scalars(select(Conversation))],
        }


def test_purge_removes_old_words_and_keeps_the_counts(client, database, app_settings):
    _answer_a_survey(client)
    settings = app_settings.with_overrides(retention_days=30)
    # Not yet 30 days old: nothing goes.
    early = retention.purge_expired(database, settings, utcnow() + timedelta(days=29))
    assert (early["messages"], early["answers"], early["conversations"]) == (0, 0, 0)
    assert any(WORDS in b for b in _held(database)["bodies"])

    counts = retention.purge_expired(database, settings, utcnow() + timedelta(days=31))
    held = _held(database)
    assert held["bodies"] == []
    assert held["answers"]["why"] == (None, None)
    assert held["answers"]["title"] == ("living-well", None)  # closed answers stay, untyped
    assert held["answers"]["useful"] == ("4", None)
    assert all(not s.get("answered") for s in held["states"])
    assert (counts["messages"], counts["answers"], counts["conversations"]) == (10, 1, 1)
    with database.session() as session:
        (event,) = session.scalars(select(AuditEvent)).all()
        assert (event.actor, event.action, event.detail["messages"]) == (
            "worker",
            "retention_purge",
            10,
        )
    # Running again finds nothing more and leaves no second audit row.
    again = retention.purge_expired(database, settings, utcnow() + timedelta(days=31))
    assert (again["messages"], again["answers"], again["conversations"]) == (0, 0, 0)
    with database.session() as session:
        assert len(session.scalars(select(AuditEvent)).all()) == 1


def test_retention_off_keeps_everything(client, database, app_settings):
    _answer_a_survey(client)
    assert app_settings.retention_days is None
    retention.purge_expired(database, app_settings, utcnow() + timedelta(days=3650))
    assert any(WORDS in b for b in _held(database)["bodies"])


def test_pending_messages_are_not_purged(client, database, app_settings):
    _answer_a_survey(client)
    with database.session() as session:
        message = session.scalars(select(Message).where(Message.direction == "out")).first()
        message.status = "pending"
    retention.purge_expired(
        database, app_settings.with_overrides(retention_days=1), utcnow() + timedelta(days=2)
    )
    with database.session() as session:
        assert session.get(Message, message.id).body is not None


def test_the_worker_runs_the_purge_once_a_day(client, database, redis_conn, app_settings):
    _answer_a_survey(client)
    runtime.configure(app_settings.with_overrides(retention_days=30))
    today = utcnow()
    assert retention.enqueue_if_due(redis_conn, runtime.settings(), today) is True
    assert (
        retention.enqueue_if_due(redis_conn, runtime.settings(), today) is False
    )  # one a day, however often asked
    assert Queue(outbox.QUEUE, connection=redis_conn).count == 1
    run_worker(redis_conn)
    assert (
        retention.enqueue_if_due(redis_conn, runtime.settings(), today) is False
    )  # the day's record is kept
    assert (
        retention.enqueue_if_due(redis_conn, runtime.settings(), today + timedelta(days=1)) is True
    )
    runtime.configure(app_settings)
    assert (
        retention.enqueue_if_due(redis_conn, runtime.settings(), today + timedelta(days=2)) is False
    )  # off


def test_the_cli_purges_by_hand(client, database, app_settings, monkeypatch):
    from click.testing import CliRunner

    from bot.commands.cli import main

    monkeypatch.setenv("LOGNAME", "ffion")
    _answer_a_survey(client)
    runner = CliRunner()
    off = runner.invoke(main, ["privacy", "purge"])
    assert off.exit_code == 1 and "RETENTION_DAYS is not set" in off.output
    runtime.configure(app_settings.with_overrides(retention_days=1))
    # Nothing is a day old yet: the command runs and says so.
    done = runner.invoke(main, ["privacy", "purge"])
    assert done.exit_code == 0 and "purged 0 message(s)" in done.output
    runtime.configure(app_settings)
