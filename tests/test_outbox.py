import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from bot.commands import jobs, runtime
from bot.conversations import outbox
from bot.providers.twilio import _sms_senders
from bot.sending import send
from bot.storage.models import ConsentEvent, Message, Participant, utcnow
from tests import people
from tests.conftest import app_env, run_worker
from tests.fakes import FROM_NUMBER, Scripted


def queue_text(
    database, body="Hello from us", kind="reply", phone="+447700900123", opted_out=False
):
    with database.session() as session:
        found = people.at(session, "phone", phone)
        person = found or people.person(session, phone=phone, name="Ann", opted_out=opted_out)
        message = outbox.add(session, person, "sms", body, kind)
        return message.id, person.id


def row(database, message_id):
    with database.session() as session:
        return session.get(Message, message_id)


def test_a_queued_text_is_sent_once_with_a_status_callback(
    app_settings, database, redis_conn, twilio_fake
):
    message_id, _ = queue_text(database)
    outbox.dispatch(redis_conn, [(message_id, None)])
    outbox.dispatch(redis_conn, [(message_id, None)])  # the same job twice
    run_worker(redis_conn)
    (sent,) = twilio_fake.sends()
    assert (
        sent["To"] == "+447700900123"
        and sent["From"] == FROM_NUMBER
        and sent["Body"] == "Hello from us"
    )
    assert (
        sent["StatusCallback"]
        == f"https://involve.example.org/webhooks/twilio/status?m={message_id}"
    )
    stored = row(database, message_id)
    assert (
        stored.status == "queued" and stored.provider_id.startswith("SM") and stored.attempts == 1
    )


def test_carrier_unsubscribed_21610_marks_the_person_opted_out(
    app_settings, database, redis_conn, twilio_fake
):
    twilio_fake.script.append(
        Scripted(status=400, code=21610, message="Attempt to send to unsubscribed recipient")
    )
    message_id, person_id = queue_text(database)
    outbox.dispatch(redis_conn, [(message_id, None)])
    run_worker(redis_conn)
    stored = row(database, message_id)
    assert (stored.status, stored.error_code) == ("failed", "21610")
    with database.session() as session:
        assert session.get(Participant, person_id).opted_out
        assert session.scalars(select(ConsentEvent.how)).all() == ["carrier"]


def test_an_invalid_number_fails_permanently_with_the_reason(
    app_settings, database, redis_conn, twilio_fake
):
    twilio_fake.script.append(
        Scripted(status=400, code=21211, message="The 'To' number is not a valid phone number.")
    )
    message_id, _ = queue_text(database)
    outbox.dispatch(redis_conn, [(message_id, None)])
    run_worker(redis_conn)
    stored = row(database, message_id)
    assert stored.status == "failed" and stored.error_code == "21211"
    assert "not a valid phone number" in stored.error_message
    assert len(twilio_fake.sends()) == 1
    assert ScheduledJobRegistry("involve", connection=redis_conn).count == 0


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_and_rate_limits_retry_with_back_off(
    app_settings, database, redis_conn, twilio_fake, status
):
    twilio_fake.script.append(Scripted(status=status, code=None, message="try later"))
    message_id, _ = queue_text(database)
    before = utcnow()
    outbox.dispatch(redis_conn, [(message_id, None)])
    run_worker(redis_conn)
    stored = row(database, message_id)
    assert stored.status == "pending" and stored.attempts == 1
    assert stored.send_after >= before + timedelta(seconds=20)
    assert ScheduledJobRegistry("involve", connection=redis_conn).count == 1
    # When the retry comes due it goes through.
    with database.session() as session:
        session.get(Message, message_id).send_after = utcnow()
    outbox.dispatch(redis_conn, [(message_id, None)])
    run_worker(redis_conn)
    assert row(database, message_id).status == "queued"
    assert len(twilio_fake.sends()) == 2


def test_a_timeout_is_retried(app_settings, database, redis_conn, twilio_fake, monkeypatch):
    monkeypatch.setattr("bot.providers.twilio.TIMEOUT_SECONDS", 0.3)
    _sms_senders.clear()
    released = threading.Event()
    twilio_fake.script.append(Scripted(hold=released, record=False))
    message_id, _ = queue_text(database)
    outbox.dispatch(redis_conn, [(message_id, None)])
    try:
        run_worker(redis_conn)
    finally:
        released.set()  # only after the worker has given up and moved on
    stored = row(database, message_id)
    assert stored.status == "pending" and stored.error_code == "timeout"


def test_opted_out_is_checked_at_send_time(app_settings, database, redis_conn, twilio_fake):
    message_id, person_id = queue_text(database)
    with database.session() as session:
        session.get(
            Participant, person_id
        ).opted_out = True  # STOP arrived after the row was queued
    outbox.dispatch(redis_conn, [(message_id, None)])
    run_worker(redis_conn)
    assert row(database, message_id).status == "cancelled"
    assert twilio_fake.sends() == []


def test_sms_off_without_credentials_says_so(
    database, redis_conn, redis_url, twilio_fake, tmp_path
):
    from bot.config import load_settings

    env = app_env(database.url, redis_url, twilio_fake.url, tmp_path)
    del env["TWILIO_ACCOUNT_SID"], env["TWILIO_AUTH_TOKEN"]
    runtime.configure(load_settings(env))
    message_id, _ = queue_text(database)
    outbox.dispatch(redis_conn, [(message_id, None)])
    run_worker(redis_conn)
    stored = row(database, message_id)
    assert (
        stored.status == "failed"
        and "set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM_NUMBER"
        in stored.error_message
    )


def test_reconciler_requeues_rows_redis_lost(app_settings, database, redis_conn, twilio_fake):
    message_id, _ = queue_text(database)  # written, but its job never reached Redis
    result = jobs.reconcile_outbox(now=utcnow() + timedelta(minutes=2))
    assert result["requeued"] == 1
    run_worker(redis_conn)
    assert row(database, message_id).status == "queued"
    assert len(twilio_fake.sends()) == 1


def _worker_process(env):
    return subprocess.Popen(
        [sys.executable, "-m", "bot.commands.cli", "worker"],
        env={**os.environ, **env},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _running_in_session(leader: int) -> list[int]:
    """Processes (not yet dead) in the session `leader` began: the worker and every work horse."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                state = stat.read().rsplit(")", 1)[1].split()[0]
            if os.getsid(int(entry)) == leader and state not in ("Z", "X"):
                found.append(int(entry))
        except (OSError, IndexError):
            continue  # gone while we looked
    return found


def _kill_session(worker: subprocess.Popen) -> None:
    """SIGKILL the worker and everything it started, and wait until none of it runs.

    Killing the worker's process group is not enough: rq's work horse makes a group of its
    own (os.setpgrp), so it lived on mid-send, and its HTTP client's timeout later wrote a
    retry over the row the test was judging, whenever the test took longer than that.
    """
    worker.kill()  # the worker first, so that it forks no new horse
    worker.wait()
    while members := _running_in_session(worker.pid):
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


# A worker that never reaches Twilio fails the test after this long instead of hanging the run;
# a slow start on a busy machine only waits longer, it never fails.
WORKER_START_LIMIT = 600


@pytest.mark.parametrize("twilio_got_it", [True, False])
def test_worker_killed_mid_send_neither_loses_nor_doubles(
    app_settings, database, redis_conn, redis_url, twilio_fake, tmp_path, twilio_got_it
):
    env = app_env(database.url, redis_url, twilio_fake.url, tmp_path)
    workers: list[subprocess.Popen] = []
    started = threading.Event()
    killed = threading.Event()

    def kill_the_worker() -> None:
        # Killed by the fake while it holds the request, before any answer: the send is cut
        # off mid-call whatever the load, not only if the test's own thread gets round to
        # the kill before the client's 15 s timeout.
        started.wait()
        killed.set()  # before the kill: the loop below may see the worker gone at once
        _kill_session(workers[0])

    twilio_fake.script.append(Scripted(record=twilio_got_it, on_receive=kill_the_worker))
    message_id, _ = queue_text(database)
    outbox.dispatch(redis_conn, [(message_id, None)])
    worker = _worker_process(env)
    workers.append(worker)
    started.set()
    try:
        waited = 0.0
        while not twilio_fake.received.wait(0.5):
            waited += 0.5
            stopped = worker.poll() is not None
            assert killed.is_set() or not stopped, "the worker stopped before it called Twilio"
            assert waited < WORKER_START_LIMIT, "the worker never called Twilio"
    finally:
        _kill_session(worker)
    assert _running_in_session(worker.pid) == [], "nothing the worker started runs on"
    stuck = row(database, message_id)
    assert stuck.status == "claimed" and stuck.provider_id is None
    # Too early to judge, up to the claim's last second: a send may still be under way.
    # Judged by the claim's own time, not by how soon the test gets here.
    almost = stuck.claimed_at + send.CLAIM_TIMEOUT - timedelta(seconds=1)
    too_early = jobs.reconcile_outbox(now=almost)
    assert too_early["settled"] + too_early["resent"] == 0
    assert row(database, message_id).status == "claimed"
    result = jobs.reconcile_outbox(now=stuck.claimed_at + send.CLAIM_TIMEOUT + timedelta(seconds=5))
    run_worker(redis_conn)
    settled = row(database, message_id)
    created = twilio_fake.created
    assert len(created) == 1, "the person must get exactly one text"
    assert settled.provider_id == created[0]["sid"] and settled.status == "queued"
    if twilio_got_it:
        assert result["settled"] == 1 and len(twilio_fake.sends()) == 1
    else:
        assert result["resent"] == 1 and len(twilio_fake.sends()) == 2


def test_jobs_take_ids_and_a_missing_row_is_harmless(app_settings):
    assert jobs.send_message(999999) == "no such outbound message"


def test_a_sender_gets_the_window_the_surveys_options_and_the_template_variables(
    app_settings, database, redis_conn, monkeypatch
):
    """`Outgoing` carries what a channel may choose a message's form by: when the person last
    wrote from this address, their survey's options for the channel, and the words a template
    is filled with."""
    from bot import conversations
    from bot.providers.base import Handed
    from bot.scripts.survey import load_text
    from bot.storage.models import ContactPoint, Conversation

    survey = load_text(
        "id: opts\ntitle: Our lunch club\nquestions:\n  - {id: a, type: yesno, ask: 'A?'}\n"
        "channels:\n  sms: {invitation: HX123}\n"
    )
    wrote_at = utcnow().replace(microsecond=0) - timedelta(hours=3)
    with database.session() as session:
        person = people.person(session, phone="+447700900123", name="Mrs Margaret Jones")
        point = session.scalars(select(ContactPoint).where(ContactPoint.channel == "sms")).one()
        point.last_inbound_at = wrote_at
        version = conversations.survey_version(session, survey)
        conv = Conversation(participant_id=person.id, survey_version_id=version.id, channel="sms")
        session.add(conv)
        session.flush()
        message_id = outbox.add(
            session, person, "sms", "Hello", "invitation", conversation_id=conv.id
        ).id
        bare_id = outbox.add(session, person, "sms", "Hi", "notice").id

    got = []

    class Recording:
        sender_key = "recording"

        def send(self, message):
            got.append(message)
            return Handed(f"SM{message.id:032d}", "queued")

    monkeypatch.setattr(send, "_sender", lambda settings, channel: Recording())
    send.send_batch(database, redis_conn, app_settings, [message_id, bare_id])
    first, bare = sorted(got, key=lambda m: m.id)
    assert first.last_inbound_at is not None
    assert first.last_inbound_at.replace(tzinfo=None) == wrote_at.replace(tzinfo=None)
    assert dict(first.options) == {"invitation": "HX123"}
    assert dict(first.variables) == {
        "name": "Mrs Jones",
        "org": "Age Better",
        "survey": "Our lunch club",
    }
    assert dict(bare.options) == {} and bare.variables["survey"] == ""
