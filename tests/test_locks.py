"""One lock order for every writer (issue 19 item 2): a fan-out chunk, reminders, closing a
campaign and channel fallback take the person's lock before they read or write anything of
theirs, people in id order, so each races the one writer (`inbox`) and each other safely.

Each race is forced, not hoped for: one side is held at a known point while it holds what it
holds, the other is started and seen waiting (on PostgreSQL, in `pg_stat_activity`), then the
first is let go. On SQLite the writers' turn holds the whole database for a transaction, so
the second side waits there; the same outcomes must hold on both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import create_engine, select, update
from sqlalchemy.pool import NullPool

from bot import conversations, engine
from bot.commands import runtime
from bot.conversations import inbox
from bot.cycle import campaigns, fallback, reminders, services
from bot.engine import Reply
from bot.engine.keywords import classify
from bot.storage.models import (
    Answer,
    Campaign,
    Conversation,
    Invitation,
    Message,
    Participant,
)
from bot.storage.status import Kind, Outbound
from tests import people

WAIT = 20  # seconds any one side may take on this busy machine before the test gives up


def _number(i: int) -> str:
    return f"+4477009{i:05d}"


def _panel(database, size: int) -> list[int]:
    with database.session() as session:
        return [
            people.person(session, name=f"Person {i}", phone=_number(i), channel="sms").id
            for i in range(size)
        ]


def _campaign(settings, survey: str = "guide-title", **fields: Any) -> int:
    with runtime.database().session() as session:
        campaign, _ = campaigns.create(
            session,
            {"survey": survey, "audience": {"all": True}, "channel": "sms", **fields},
            runtime.library().surveys(),
            settings,
        )
        campaigns.launch(session, campaign, settings)
        return campaign.id


def _text(settings, number: str, body: str, sid: str) -> inbox.Outcome:
    received = inbox.Received("sms", body, classify(body) or Reply(body), number, sid)
    return inbox.receive(
        runtime.database(), settings, received, keywords=runtime.library().keywords()
    )


class Side(threading.Thread):
    """One side of a race: runs `work`, keeps what it returned or raised."""

    def __init__(self, name: str, work: Callable[[], Any]):
        super().__init__(name=name, daemon=True)
        self.work, self.result, self.error = work, None, None

    def run(self) -> None:
        try:
            self.result = self.work()
        except BaseException as exc:  # the test reports it
            self.error = exc

    def outcome(self) -> Any:
        self.join(WAIT)
        assert not self.is_alive(), f"{self.name} still waits after {WAIT} s (a deadlock?)"
        if self.error is not None:
            raise AssertionError(f"{self.name} failed: {self.error!r}") from self.error
        return self.result


class Hold:
    """A point one side stops at, holding what it holds, until the test lets it go."""

    def __init__(self) -> None:
        self.reached, self.go = threading.Event(), threading.Event()

    def stop_here(self) -> None:
        self.reached.set()
        assert self.go.wait(WAIT), "never let go"

    def wait_reached(self) -> None:
        assert self.reached.wait(WAIT), "the held side never got there"


def waits_or_ends(database, side: Side) -> None:
    """Return once `side` waits for a lock (or has ended: the old code did not wait)."""
    if database.engine.dialect.name != "postgresql":
        side.join(0.5)  # SQLite: it waits for the writers' turn, or it has ended
        return
    deadline = time.monotonic() + WAIT
    # Each look in a transaction of its own: PostgreSQL keeps what pg_stat_activity showed
    # for the rest of the transaction, so a side that began waiting after the first look was
    # never seen (the test failed whenever the side was slower to get there than that look).
    watching = create_engine(database.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with watching.connect() as watcher:
        while time.monotonic() < deadline and side.is_alive():
            waiting = watcher.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).scalar()
            if waiting:
                return
            time.sleep(0.02)
    assert not side.is_alive(), f"{side.name} neither waited for a lock nor ended"


def _held_decide(monkeypatch, provider_id: str) -> Hold:
    """The one writer, for the message with this provider id, stops after taking the person's
    lock and reading their conversation, before it decides anything."""
    hold, working = Hold(), inbox._decide

    def decide(session, settings, person, conv, channel, received, *rest):
        if received.provider_id == provider_id:
            hold.stop_here()
        return working(session, settings, person, conv, channel, received, *rest)

    monkeypatch.setattr(inbox, "_decide", decide)
    return hold


def test_a_stop_committed_while_a_fan_out_chunk_waits_leaves_no_survey_in_progress(
    database, app_settings, monkeypatch
):
    ids = _panel(database, 3)
    stopping = ids[1]
    campaign_id = _campaign(app_settings)
    hold = _held_decide(monkeypatch, "SM-stop")
    stop = Side("stop", lambda: _text(app_settings, _number(1), "STOP", "SM-stop"))
    stop.start()
    hold.wait_reached()  # the STOP holds the person's lock
    fan = Side("fan-out", lambda: campaigns.fan_out(runtime.database(), app_settings, campaign_id))
    fan.start()
    waits_or_ends(database, fan)
    hold.go.set()
    assert stop.outcome().status == inbox.PROCESSED
    assert fan.outcome() == {"invited": 2, "waiting": 0, "skipped": 1}
    with database.session() as session:
        active = session.scalars(
            select(Conversation.participant_id).where(Conversation.status == engine.ACTIVE)
        ).all()
        assert sorted(active) == [ids[0], ids[2]]
        skipped = session.scalars(
            select(Invitation).where(Invitation.participant_id == stopping)
        ).one()
        assert (skipped.status, skipped.reason) == ("skipped", "opted out")
        assert session.get(Participant, stopping).opted_out
        to_them = session.scalars(
            select(Message.kind).where(
                Message.participant_id == stopping, Message.direction == "out"
            )
        ).all()
        assert to_them == [Kind.REPLY]  # "you will get no more messages", and no invitation


def test_a_keyword_start_racing_a_fan_out_chunk_does_not_undo_the_chunk(
    database, app_settings, monkeypatch
):
    ids = _panel(database, 3)
    campaign_id = _campaign(app_settings, survey="hear-back")
    hold, starting = Hold(), conversations.start_many

    def start_many(session, survey, version_id, campaign_id, *rest):
        # The chunk has read who is free and holds their locks; it has written nothing yet.
        hold.stop_here()
        return starting(session, survey, version_id, campaign_id, *rest)

    monkeypatch.setattr(conversations, "start_many", start_many)
    fan = Side("fan-out", lambda: campaigns.fan_out(runtime.database(), app_settings, campaign_id))
    fan.start()
    hold.wait_reached()
    keyword = Side("keyword", lambda: _text(app_settings, _number(1), "TITLE", "SM-title"))
    keyword.start()
    waits_or_ends(database, keyword)
    hold.go.set()
    assert fan.outcome() == {"invited": 3, "waiting": 0, "skipped": 0}
    assert keyword.outcome().status == inbox.PROCESSED
    with database.session() as session:
        active = session.execute(
            select(Conversation.participant_id, Conversation.campaign_id).where(
                Conversation.status == engine.ACTIVE
            )
        ).all()
        # Everyone's invitation stands, and nobody has two surveys in progress.
        assert sorted(active) == [(pid, campaign_id) for pid in ids]
        invited = session.scalars(
            select(Message.participant_id).where(Message.kind == Kind.INVITATION)
        ).all()
        assert sorted(invited) == ids


def test_a_reminder_after_an_answer_in_flight_asks_the_next_question(
    database, app_settings, monkeypatch
):
    (pid,) = _panel(database, 1)
    campaign_id = _campaign(app_settings, reminder_after_hours=24)
    campaigns.fan_out(runtime.database(), app_settings, campaign_id)
    hold = _held_decide(monkeypatch, "SM-answer")
    answer = Side("answer", lambda: _text(app_settings, _number(0), "2", "SM-answer"))
    answer.start()
    hold.wait_reached()  # the answer to "Which title?" holds the person's lock
    remind = Side(
        "reminders",
        lambda: reminders.send_reminders(runtime.database(), app_settings, campaign_id),
    )
    remind.start()
    waits_or_ends(database, remind)
    hold.go.set()
    assert answer.outcome().status == inbox.PROCESSED
    assert remind.outcome() == 1
    with database.session() as session:
        (body,) = session.scalars(select(Message.body).where(Message.kind == Kind.REMINDER))
        assert "What made you choose it?" in body  # the question the answer left waiting
        assert "Which title" not in body
        invitation = session.scalars(select(Invitation).where(Invitation.participant_id == pid))
        assert invitation.one().reminded_at is not None


def test_a_reminder_after_the_last_answer_in_flight_is_not_sent(
    database, app_settings, monkeypatch
):
    _panel(database, 1)
    campaign_id = _campaign(app_settings, reminder_after_hours=24)
    campaigns.fan_out(runtime.database(), app_settings, campaign_id)
    for n, body in enumerate(["2", "skip", "4"]):
        _text(app_settings, _number(0), body, f"SM-{n}")
    hold = _held_decide(monkeypatch, "SM-last")
    answer = Side("answer", lambda: _text(app_settings, _number(0), "yes", "SM-last"))
    answer.start()
    hold.wait_reached()
    remind = Side(
        "reminders",
        lambda: reminders.send_reminders(runtime.database(), app_settings, campaign_id),
    )
    remind.start()
    waits_or_ends(database, remind)
    hold.go.set()
    assert answer.outcome().status == inbox.PROCESSED
    assert remind.outcome() == 0  # they finished while it waited: nothing to remind them of
    with database.session() as session:
        assert session.scalars(select(Message.id).where(Message.kind == Kind.REMINDER)).all() == []
        assert session.scalars(select(Conversation.status)).one() == engine.COMPLETED


def _undelivered_with_a_reminder_pending(database, campaign_id: int, pid: int) -> int:
    """The invitation's text went undelivered, and its reminder waits to go: what both a close
    and a fallback cancel. The reminder's id."""
    with database.session() as session:
        invitation = session.scalars(select(Invitation)).one()
        session.execute(
            update(Message)
            .where(Message.id == invitation.message_id)
            .values(status=Outbound.UNDELIVERED, error_code="30005")
        )
        reminder = Message(
            participant_id=pid,
            conversation_id=invitation.conversation_id,
            campaign_id=campaign_id,
            direction="out",
            channel="sms",
            kind=Kind.REMINDER,
            address=_number(0),
            body="A gentle reminder",
            status=Outbound.PENDING,
        )
        session.add(reminder)
        session.flush()
        return reminder.id


def test_closing_a_campaign_while_fallback_moves_its_people_on_does_not_deadlock(
    database, app_settings, monkeypatch
):
    (pid,) = _panel(database, 1)  # a number: texted first, then called
    campaign_id = _campaign(app_settings, fallback_after_hours=0, reminder_after_hours=1)
    campaigns.fan_out(runtime.database(), app_settings, campaign_id)
    reminder_id = _undelivered_with_a_reminder_pending(database, campaign_id, pid)

    # The close stops just before it takes a person's lock, holding whatever it took before.
    hold = Hold()
    lock_person, lock_people = conversations.lock_person, conversations.lock_people

    def held_in_the_close(lock: Callable[..., Any]) -> Callable[..., Any]:
        def locking(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread().name == "close" and not hold.reached.is_set():
                hold.stop_here()
            return lock(*args, **kwargs)

        return locking

    monkeypatch.setattr(conversations, "lock_person", held_in_the_close(lock_person))
    monkeypatch.setattr(conversations, "lock_people", held_in_the_close(lock_people))
    close = Side(
        "close",
        lambda: services.close_campaign(runtime.database(), app_settings, campaign_id),
    )
    close.start()
    hold.wait_reached()
    move = Side("fallback", lambda: fallback.move_all(runtime.database(), app_settings))
    move.start()
    waits_or_ends(database, move)
    hold.go.set()
    assert close.outcome()["status"] == "closed"
    move.outcome()
    with database.session() as session:
        assert session.get(Message, reminder_id).status == Outbound.CANCELLED
        # Whichever went first, the close ended what the campaign had in progress or to send.
        assert (
            session.scalars(
                select(Conversation.id).where(Conversation.status == engine.ACTIVE)
            ).all()
            == []
        )
        assert (
            session.scalars(
                select(Message.id).where(
                    Message.campaign_id == campaign_id, Message.status == Outbound.PENDING
                )
            ).all()
            == []
        )


def test_closing_ends_what_each_person_has_waiting_in_progress_or_to_send(database, app_settings):
    ids = _panel(database, 3)
    first = _campaign(app_settings)
    campaigns.fan_out(runtime.database(), app_settings, first)
    second = _campaign(app_settings, survey="hear-back", reminder_after_hours=1)
    campaigns.fan_out(runtime.database(), app_settings, second)  # all three wait for `first`
    with database.session() as session:
        waiting = session.scalars(
            select(Invitation.status).where(Invitation.campaign_id == second)
        ).all()
        assert waiting == ["waiting"] * 3
    assert services.close_campaign(runtime.database(), app_settings, second) == {
        "id": second,
        "status": "closed",
        "conversations_ended": 0,
    }
    ended = services.close_campaign(runtime.database(), app_settings, first)
    assert ended["conversations_ended"] == 3
    with database.session() as session:
        rows = session.execute(
            select(Invitation.campaign_id, Invitation.status, Invitation.reason).order_by(
                Invitation.campaign_id, Invitation.participant_id
            )
        ).all()
        assert rows == [(first, "invited", None)] * 3 + [(second, "skipped", "campaign closed")] * 3
        cancelled = session.execute(
            select(Message.participant_id, Message.error_message).where(
                Message.status == Outbound.CANCELLED
            )
        ).all()
        assert sorted(cancelled) == [(pid, "campaign closed") for pid in ids]
        assert session.scalars(select(Conversation.status)).all() == [engine.EXPIRED] * 3


def test_people_are_locked_in_id_order_and_unknown_ids_are_left_out(database, monkeypatch):
    ids = _panel(database, 3)
    monkeypatch.setattr(conversations, "LOCK_BATCH", 2)  # two statements, in order
    with database.session() as session:
        assert conversations.lock_people(session, [ids[2], 10_000_000, ids[0], ids[1]]) == ids
        assert conversations.lock_people(session, []) == []


def test_a_reminder_run_cut_short_is_finished_by_the_next_without_sending_twice(
    database, app_settings, monkeypatch
):
    ids = _panel(database, 3)
    campaign_id = _campaign(app_settings, reminder_after_hours=1)
    campaigns.fan_out(runtime.database(), app_settings, campaign_id)
    monkeypatch.setattr(reminders, "BATCH", 2)
    remind = reminders._remind
    calls = []

    def cut_after_the_first_unit(*args: Any) -> int:
        if calls:
            raise RuntimeError("the worker was stopped")
        calls.append(1)
        return remind(*args)

    monkeypatch.setattr(reminders, "_remind", cut_after_the_first_unit)
    with pytest.raises(RuntimeError):
        reminders.send_reminders(runtime.database(), app_settings, campaign_id)
    monkeypatch.setattr(reminders, "_remind", remind)
    assert reminders.send_reminders(runtime.database(), app_settings, campaign_id) == 1
    with database.session() as session:
        reminded = session.scalars(
            select(Message.participant_id).where(Message.kind == Kind.REMINDER)
        ).all()
        assert sorted(reminded) == ids
        assert session.get(Campaign, campaign_id).reminders_sent_at is not None
    assert reminders.send_reminders(runtime.database(), app_settings, campaign_id) == 0


def test_an_erasure_while_an_answer_is_in_flight_erases_that_answer_too(
    database, app_settings, monkeypatch
):
    (pid,) = _panel(database, 1)
    campaign_id = _campaign(app_settings)
    campaigns.fan_out(runtime.database(), app_settings, campaign_id)
    _text(app_settings, _number(0), "2", "SM-title")  # now "What made you choose it?"
    hold = _held_decide(monkeypatch, "SM-why")
    answer = Side("answer", lambda: _text(app_settings, _number(0), "My late mother", "SM-why"))
    answer.start()
    hold.wait_reached()
    erase = Side(
        "erase",
        lambda: services.erase(runtime.database(), app_settings, None, f"id:{pid}", "staff"),
    )
    erase.start()
    waits_or_ends(database, erase)
    hold.go.set()
    assert answer.outcome().status == inbox.PROCESSED
    assert erase.outcome()["erased"]
    with database.session() as session:
        kept = session.execute(select(Answer.question_id, Answer.value, Answer.raw_text)).all()
        assert ("why", None, None) in kept  # counted, and nothing of what they wrote
        assert "My late mother" not in repr(kept)
        bodies = session.scalars(select(Message.body)).all()
        assert not any("My late mother" in (b or "") for b in bodies)
        assert session.get(Participant, pid).erased_at is not None


def test_feedback_sent_while_a_stop_is_in_flight_skips_who_stopped(
    database, app_settings, monkeypatch
):
    ids = _panel(database, 2)
    campaign_id = _campaign(app_settings)
    campaigns.fan_out(runtime.database(), app_settings, campaign_id)
    for i in range(2):
        for n, body in enumerate(["2", "skip", "4", "yes"]):  # both may be told
            _text(app_settings, _number(i), body, f"SM-{i}-{n}")
    hold = _held_decide(monkeypatch, "SM-stop")
    stop = Side("stop", lambda: _text(app_settings, _number(1), "STOP", "SM-stop"))
    stop.start()
    hold.wait_reached()
    send = Side(
        "feedback",
        lambda: services.send_feedback(
            runtime.database(), app_settings, campaign_id, {"message": "We chose a title."}
        ),
    )
    send.start()
    waits_or_ends(database, send)
    hold.go.set()
    assert stop.outcome().status == inbox.PROCESSED
    sent = send.outcome()
    assert sent["queued"] == 1
    assert [s["reason"] for s in sent["skipped"]] == ["opted out"]
    with database.session() as session:
        told = session.scalars(
            select(Message.participant_id).where(Message.kind == Kind.FEEDBACK)
        ).all()
        assert told == [ids[0]]


def test_a_panel_import_while_their_recontact_answer_is_in_flight_keeps_their_own_answer(
    database, app_settings, monkeypatch
):
    """A file saying "recontact: yes" never overwrites the "no" the person is giving: the
    import takes their lock before it reads them, so it sees their own answer (which beats a
    file, as ever) once it commits."""
    (pid,) = _panel(database, 1)
    campaign_id = _campaign(app_settings)
    campaigns.fan_out(runtime.database(), app_settings, campaign_id)
    for n, body in enumerate(["2", "skip", "4"]):
        _text(app_settings, _number(0), body, f"SM-{n}")
    hold = _held_decide(monkeypatch, "SM-no")
    answer = Side("answer", lambda: _text(app_settings, _number(0), "no", "SM-no"))
    answer.start()
    hold.wait_reached()
    csv = f"name,phone,recontact\nPerson 0,{_number(0)},yes\n"
    imported = Side("import", lambda: services.import_csv(runtime.database(), app_settings, csv))
    imported.start()
    waits_or_ends(database, imported)
    hold.go.set()
    assert answer.outcome().status == inbox.PROCESSED
    assert imported.outcome()["rejected"] == []
    with database.session() as session:
        assert session.get(Participant, pid).recontact is False
