"""The one writer: duplicates through every path, two messages in flight at once, retries."""

import threading
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.pool import NullPool

from bot.commands import jobs, runtime
from bot.conversations import inbox
from bot.engine import Reply
from bot.storage.models import Answer, Conversation, Message, Participant
from tests.conftest import ADMIN, PUBLIC, run_worker
from tests.fakes import post_twilio, sms_params

PHONE = "+447700900123"


def say(client, body, sid, sender=PHONE) -> list[str]:
    response = post_twilio(client, PUBLIC, "/webhooks/twilio/sms", sms_params(body, sid, sender))
    assert response.status_code == 200
    return [m.text for m in ET.fromstring(response.data).findall("Message")]


def replies_stored(database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count(Message.id)).where(Message.kind == "reply"))


def test_a_redelivery_changes_nothing_twice_on_every_path(client, database):
    # Each kind of step, delivered twice with the same MessageSid: the second gets no reply
    # (Twilio would text it to the person) and writes nothing.
    steps = [
        ("TITLE", "SM-keyword"),  # a new number joins by keyword
        ("2", "SM-answer"),  # an answer
        ("SKIP", "SM-skip"),  # a skip
        ("4", "SM-scale"),
        ("yes", "SM-last"),  # the answer that ends the survey
        ("thanks", "SM-after"),  # after the end
        ("STOP", "SM-stop"),
        ("START", "SM-start"),
    ]
    for body, sid in steps:
        first = say(client, body, sid)
        assert first, (body, "the first delivery is answered")
        before = replies_stored(database)
        assert say(client, body, sid) == [], (body, "a redelivery is not answered again")
        assert replies_stored(database) == before
    with database.session() as session:
        inbound = session.scalar(select(func.count(Message.id)).where(Message.direction == "in"))
        assert inbound == len(steps)
        answers = session.scalars(select(Answer.question_id).order_by(Answer.id)).all()
        assert answers == ["title", "why", "useful", "recontact"]
        assert session.scalars(select(Conversation.status)).one() == "completed"
        assert session.scalar(select(func.count(Participant.id))) == 1


def test_two_texts_in_flight_at_once_are_applied_in_turn(database, app_settings, monkeypatch):
    """The first text holds the person's lock while the second arrives; the second must wait
    and then work from the state the first left, not a copy read before the wait."""
    settings = app_settings
    db = runtime.database()
    keywords = runtime.library().keywords()
    start = inbox.Received("sms", "TITLE", Reply("TITLE"), PHONE, "SM-start")
    inbox.receive(db, settings, start, keywords=keywords)

    holding, release = threading.Event(), threading.Event()
    working = inbox._decide

    def slow_for_the_first(
        session, settings, person, conv, channel, received, now, keywords, *rest
    ):
        if received.provider_id == "SM-first":
            holding.set()  # it holds the person's lock now
            assert release.wait(10)
        return working(session, settings, person, conv, channel, received, now, keywords, *rest)

    monkeypatch.setattr(inbox, "_decide", slow_for_the_first)
    outcomes: dict[str, inbox.Outcome] = {}

    def send(body: str, sid: str) -> None:
        outcomes[sid] = inbox.receive(
            db, settings, inbox.Received("sms", body, Reply(body), PHONE, sid), keywords=keywords
        )

    first = threading.Thread(target=send, args=("2", "SM-first"))
    first.start()
    assert holding.wait(10)
    second = threading.Thread(target=send, args=("Short and clear", "SM-second"))
    second.start()
    second.join(0.5)
    assert second.is_alive(), "the second text waits for the person's lock"
    release.set()
    first.join(10)
    second.join(10)
    assert outcomes["SM-first"].status == outcomes["SM-second"].status == inbox.PROCESSED
    with database.session() as session:
        answers = session.execute(
            select(Answer.question_id, Answer.value).order_by(Answer.id)
        ).all()
        assert answers == [("title", "your-health"), ("why", "Short and clear")]
        conv = session.scalars(select(Conversation)).one()
        assert conv.state["question_id"] == "useful"
        assert (
            session.scalar(
                select(func.count(Message.id)).where(Message.status.in_(("retrying", "error")))
            )
            == 0
        )


def test_the_last_answer_and_a_thank_you_at_once_both_stand(
    client, database, app_settings, monkeypatch
):
    """The answer that ends a survey (and invites the person to the campaign they waited for)
    and a "thank you" sent a moment later: neither is lost, nobody gets an apology."""
    client.post(
        "/admin/api/participants",
        json={"participants": [{"name": "Ann", "phone": PHONE, "external_id": "A"}]},
        headers=ADMIN,
    )
    db, keywords = runtime.database(), runtime.library().keywords()
    for body, sid in [("TITLE", "SM-1"), ("1", "SM-2"), ("SKIP", "SM-3"), ("4", "SM-4")]:
        inbox.receive(
            db,
            app_settings,
            inbox.Received("sms", body, Reply(body), PHONE, sid),
            keywords=keywords,
        )
    waiting = client.post(
        "/admin/api/campaigns",
        json={"survey": "hear-back", "audience": {"participants": ["A"]}, "channel": "sms"},
        headers=ADMIN,
    ).json
    client.post(f"/admin/api/campaigns/{waiting['id']}/launch", headers=ADMIN)
    from bot.cycle import campaigns

    campaigns.fan_out(db, app_settings, waiting["id"])  # Ann waits: she is mid-survey

    holding, release = threading.Event(), threading.Event()
    working = inbox._decide

    def slow_last(session, settings, person, conv, channel, received, now, keywords, *rest):
        if received.provider_id == "SM-last":
            holding.set()
            assert release.wait(10)
        return working(session, settings, person, conv, channel, received, now, keywords, *rest)

    monkeypatch.setattr(inbox, "_decide", slow_last)
    outcomes = {}

    def send(body, sid):
        outcomes[sid] = inbox.receive(
            db,
            app_settings,
            inbox.Received("sms", body, Reply(body), PHONE, sid),
            keywords=keywords,
        )

    last = threading.Thread(target=send, args=("yes", "SM-last"))
    last.start()
    assert holding.wait(10)
    thanks = threading.Thread(target=send, args=("thank you", "SM-thanks"))
    thanks.start()
    thanks.join(0.5)
    release.set()
    last.join(10)
    thanks.join(10)
    assert outcomes["SM-last"].status == outcomes["SM-thanks"].status == inbox.PROCESSED
    assert not any("went wrong" in r for o in outcomes.values() for r in o.replies)
    with database.session() as session:
        statuses = session.scalars(select(Conversation.status).order_by(Conversation.id)).all()
        assert statuses == ["completed", "active"]  # the survey ended; the waiting one began
        assert session.scalars(
            select(Answer.value).where(Answer.question_id == "recontact")
        ).all() == ["yes"]


def test_a_failed_message_holds_later_ones_back_and_all_are_applied_in_order(
    client, database, redis_conn, twilio_fake, app_settings, monkeypatch
):
    say(client, "TITLE", "SM-1")
    working = inbox._decide
    failing = {"on": True}

    def flaky(*args, **kwargs):
        if failing["on"]:
            raise RuntimeError("the database went away")
        return working(*args, **kwargs)

    monkeypatch.setattr(inbox, "_decide", flaky)
    assert say(client, "2", "SM-2") == []
    failing["on"] = False
    # The next text comes while the first still waits: it queues behind it, unanswered.
    assert say(client, "Short and clear", "SM-3") == []
    with database.session() as session:
        waiting = session.scalars(
            select(Message.provider_id).where(Message.status == "retrying").order_by(Message.id)
        ).all()
        assert waiting == ["SM-2", "SM-3"]
        first_id = session.scalar(select(Message.id).where(Message.provider_id == "SM-2"))
    assert jobs.retry_inbound(first_id) == {"processed": 2, "failed": 0, "waiting": 0}
    with database.session() as session:
        answers = session.execute(
            select(Answer.question_id, Answer.value).order_by(Answer.id)
        ).all()
        assert answers == [("title", "your-health"), ("why", "Short and clear")]
    run_worker(redis_conn)
    bodies = [s["Body"] for s in twilio_fake.sends()]
    assert len(bodies) == 2 and "What made you choose it?" in bodies[0]
    assert "How useful" in bodies[1]
    # Later texts are answered inline again.
    assert any("May we tell you" in t for t in say(client, "5", "SM-4"))


def test_a_message_that_keeps_failing_is_given_up_with_an_apology_and_shown(
    client, database, redis_conn, twilio_fake, monkeypatch
):
    say(client, "TITLE", "SM-1")

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(inbox, "_decide", broken)
    assert say(client, "2", "SM-2") == []
    with database.session() as session:
        message_id = session.scalar(select(Message.id).where(Message.provider_id == "SM-2"))
    for _ in range(len(inbox.RETRY_DELAYS)):
        jobs.retry_inbound(message_id)
    with database.session() as session:
        kept = session.get(Message, message_id)
        assert kept.status == "error" and "RuntimeError" in kept.error_message
        assert kept.body == "2"  # the words are kept for staff
    assert client.get("/healthz").json["inbound"] == {"retrying": 0, "failed": 1}
    run_worker(redis_conn)
    (apology,) = twilio_fake.sends()
    assert apology["Body"].startswith("Sorry, something went wrong on our side")


def test_the_reconciler_retries_what_redis_lost(client, database, redis_conn, monkeypatch):
    from datetime import timedelta

    from bot.storage.models import utcnow

    say(client, "TITLE", "SM-1")
    working = inbox._decide
    monkeypatch.setattr(inbox, "_decide", lambda *a, **k: (_ for _ in ()).throw(RuntimeError()))
    say(client, "2", "SM-2")
    monkeypatch.setattr(inbox, "_decide", working)
    redis_conn.flushdb()  # the retry job is gone
    result = jobs.reconcile_outbox(now=utcnow() + timedelta(seconds=inbox.RETRY_DELAYS[0] + 1))
    assert result["inbound_retried"] == 1
    run_worker(redis_conn)
    with database.session() as session:
        assert session.scalars(select(Answer.question_id)).all() == ["title"]


def test_a_message_given_up_shows_in_its_campaign_status_with_the_reason(
    client, database, redis_conn, twilio_fake, monkeypatch
):
    client.post(
        "/admin/api/participants",
        json={"participants": [{"name": "Ann", "phone": PHONE, "tags": ["t"]}]},
        headers=ADMIN,
    )
    campaign = client.post(
        "/admin/api/campaigns",
        json={"survey": "guide-title", "audience": {"tags": ["t"]}, "channel": "sms"},
        headers=ADMIN,
    ).json["id"]
    client.post(f"/admin/api/campaigns/{campaign}/launch", headers=ADMIN)
    run_worker(redis_conn)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(inbox, "_decide", broken)
    say(client, "2", "SM-given-up")
    with database.session() as session:
        message_id = session.scalar(select(Message.id).where(Message.provider_id == "SM-given-up"))
    for _ in range(len(inbox.RETRY_DELAYS)):
        jobs.retry_inbound(message_id)
    shown = client.get(f"/admin/api/campaigns/{campaign}", headers=ADMIN).json
    assert shown["inbound_problems"]["failed"] == 1
    assert any("RuntimeError" in r for r in shown["inbound_problems"]["reasons"])


def test_asking_whether_an_earlier_message_waits_reads_an_index_not_every_message(database):
    # Asked of every message a person sends. Without its partial index the question read every
    # inbound message on the channel, so each text cost more than the last; with the status as
    # a parameter instead of the index's literal, neither database can use that index. Planned
    # with parameters, as it runs (PostgreSQL: a generic plan, as a prepared statement gets).
    values = {"channel": "sms", "address": PHONE, "participant_id": 1}
    with database.session() as session:
        connection = session.connection()
        dialect = connection.dialect
        for statement in (inbox._WAITING.statement, inbox._ACTIVE_AND_WAITING.statement):
            if dialect.name == "postgresql":
                # As a prepared statement ($1, $2...), planned once for any values.
                compiled = statement.compile(
                    dialect=postgresql.dialect(paramstyle="numeric_dollar")
                )
                params = compiled.construct_params(values)
                sql = compiled.string.replace(" FOR UPDATE", "")
                arguments = ", ".join(repr(params[name]) for name in compiled.positiontup)
                connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
                connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
                connection.exec_driver_sql(f"PREPARE waiting AS {sql}")
                plan = connection.exec_driver_sql(f"EXPLAIN EXECUTE waiting({arguments})")
                plan = plan.scalars().all()
                connection.exec_driver_sql("DEALLOCATE waiting")
            else:
                compiled = statement.compile(dialect=dialect)
                params = compiled.construct_params(values)
                ordered = tuple(params[name] for name in compiled.positiontup)
                sql = compiled.string.replace(" FOR UPDATE", "")
                rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, ordered)
                plan = [row[-1] for row in rows]
            assert any("ix_messages_inbound_retrying" in line for line in plan), plan


def test_a_text_after_the_database_dropped_every_connection_is_answered(client, database):
    # PostgreSQL restarted (or a proxy dropped the pool's connections) a moment after the last
    # message: the next one must be handled at once, not kept for a retry or lost.
    if database.engine.dialect.name != "postgresql":
        pytest.skip("only a database server drops connections")
    say(client, "TITLE", "SM-before")
    with create_engine(database.url, poolclass=NullPool).connect() as admin:
        dropped = admin.exec_driver_sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).scalar()
    assert dropped >= 1
    assert say(client, "2", "SM-after")  # the next question
    with database.session() as session:
        statuses = session.scalars(
            select(Message.status).where(Message.direction == "in").order_by(Message.id)
        ).all()
    assert statuses == ["processed", "processed"]


def test_a_kept_message_handled_by_two_jobs_at_once_is_applied_once(
    client, database, app_settings, monkeypatch
):
    # The reconciler and the after-commit dispatch can both enqueue the same retry; both jobs
    # read it as waiting before either applies it. The second must find it done.
    say(client, "TITLE", "SM-1")
    working = inbox._decide
    monkeypatch.setattr(inbox, "_decide", lambda *a, **k: (_ for _ in ()).throw(RuntimeError()))
    assert say(client, "2", "SM-2") == []
    monkeypatch.setattr(inbox, "_decide", working)
    with database.session() as session:
        kept = session.scalar(select(Message.id).where(Message.provider_id == "SM-2"))

    both_read_it_waiting = threading.Barrier(2, timeout=10)
    reading = inbox.Received

    def received_then_wait(*args, **kwargs):
        both_read_it_waiting.wait()  # each job has its backlog; neither has a lock yet
        return reading(*args, **kwargs)

    monkeypatch.setattr(inbox, "Received", received_then_wait)
    db, counts = runtime.database(), []

    def job() -> None:
        counts.append(inbox.retry_backlog(db, app_settings, kept))

    jobs_at_once = [threading.Thread(target=job) for _ in range(2)]
    for thread in jobs_at_once:
        thread.start()
    for thread in jobs_at_once:
        thread.join(20)
    assert sorted(c["processed"] for c in counts) == [0, 1]
    assert all(c["failed"] == 0 for c in counts)
    with database.session() as session:
        answers = session.execute(
            select(Answer.question_id, Answer.value).order_by(Answer.id)
        ).all()
        assert answers == [("title", "your-health")]  # "2" answered one question, once
        assert session.scalar(select(Message.status).where(Message.id == kept)) == "processed"


def test_a_connection_lost_while_a_text_is_handled_is_tried_again_at_once(
    client, database, monkeypatch
):
    if database.engine.dialect.name != "postgresql":
        pytest.skip("only a database server drops connections")
    say(client, "TITLE", "SM-1")
    working, dropped = inbox._decide, []

    def dropped_midway(session, *args):
        if not dropped:  # the first attempt loses its connection after the person's lock
            pid = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with create_engine(database.url, poolclass=NullPool).connect() as admin:
                admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
            dropped.append(pid)
        return working(session, *args)

    monkeypatch.setattr(inbox, "_decide", dropped_midway)
    assert any("What made you choose it?" in t for t in say(client, "2", "SM-2"))
    assert dropped
    with database.session() as session:
        assert session.scalar(select(Message.status).where(Message.provider_id == "SM-2")) == (
            "processed"
        )
