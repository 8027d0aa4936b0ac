"""Channel fallback (issue 19 item 5): people an invitation did not reach on one contact point
are invited on their next one, `fallback_after_hours` after it went; never twice, never to a
person or contact point that stopped, one live invitation at a time."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import func, select, update

from bot import engine
from bot.commands import runtime
from bot.config import parse_quiet_hours
from bot.cycle import fallback, upkeep
from bot.sending import send
from bot.storage.models import (
    ContactPoint,
    Conversation,
    Invitation,
    Message,
    Participant,
    utcnow,
)
from tests import people
from tests.conftest import ADMIN, PUBLIC, run_worker
from tests.fakes import call_status_params, post_twilio, sms_params, status_params

SURVEY = "guide-title"


def _number(i: int) -> str:
    return f"+4477009{i:05d}"


def _panel(database, size: int, **fields) -> list[int]:
    with database.session() as session:
        return [
            people.person(session, name=f"Person {i}", phone=_number(i), **fields).id
            for i in range(size)
        ]


def _campaign(client, **body) -> int:
    payload = {"survey": SURVEY, "audience": {"all": True}, "fallback_after_hours": 2, **body}
    created = client.post("/admin/api/campaigns", json=payload, headers=ADMIN)
    assert created.status_code == 201, created.json
    launched = client.post(f"/admin/api/campaigns/{created.json['id']}/launch", headers=ADMIN)
    assert launched.status_code == 202, launched.json
    return created.json["id"]


def _status(client, campaign_id: int) -> dict:
    return client.get(f"/admin/api/campaigns/{campaign_id}", headers=ADMIN).json


def _text_status(client, sid: str, to: str, status: str, code: str | None = None) -> None:
    response = post_twilio(
        client, PUBLIC, "/webhooks/twilio/status", status_params(sid, status, code, to=to)
    )
    assert response.status_code == 204


def _call_status(client, call: dict, status: str) -> None:
    callback = urlsplit(call["status_callback"])
    path = callback.path + (f"?{callback.query}" if callback.query else "")
    response = post_twilio(
        client, PUBLIC, path, call_status_params(call["sid"], status, To=call["to"])
    )
    assert response.status_code == 204


def _beat(at_hours: float) -> dict[str, int]:
    return upkeep.keep_moving(
        runtime.database(),
        runtime.redis(),
        runtime.settings(),
        now=utcnow() + timedelta(hours=at_hours),
    )


def test_fifty_of_five_hundred_unreachable_by_text_are_reached_by_their_next_contact_point(
    client, database, redis_conn, twilio_fake
):
    _panel(database, 500)
    campaign_id = _campaign(client)
    run_worker(redis_conn)
    texts = {m["to"]: m["sid"] for m in twilio_fake.created}
    assert len(texts) == 500 and len(twilio_fake.created) == 500
    # The carrier cannot deliver to 50 of them: the handset unreachable (30003) or the number
    # not in service (30005), as Twilio says in its status callbacks.
    unreachable = [_number(i) for i in range(0, 500, 10)]
    for n, number in enumerate(unreachable):
        _text_status(client, texts[number], number, "undelivered", "30005" if n % 2 else "30003")
    # The other 450 stay as Twilio took them (queued): nothing says they were not reached.

    assert _beat(at_hours=1)["fallbacks_sent"] == 0  # not yet: 2 hours
    assert _beat(at_hours=2.1)["fallbacks_sent"] == 50
    run_worker(redis_conn)
    assert _beat(at_hours=3)["fallbacks_sent"] == 0  # none twice

    # Their next contact point, in their order, is a call to the same number.
    assert sorted(c["to"] for c in twilio_fake.calls) == sorted(unreachable)
    assert len(twilio_fake.created) == 500  # no text went twice
    for call in twilio_fake.calls:
        _call_status(client, call, "completed")

    status = _status(client, campaign_id)
    assert status["fallback"] == {"after_hours": 2.0, "moved_on": 50, "reached_by_fallback": 50}
    assert status["counts"]["invited"] == 500
    with database.session() as session:
        moved = session.execute(
            select(Invitation.fallback_from, Invitation.channel, func.count())
            .where(Invitation.fallback_at.is_not(None))
            .group_by(Invitation.fallback_from, Invitation.channel)
        ).all()
        assert moved == [("sms", "voice", 50)]
        # One live invitation each: the first conversation ended, the new one is on the call.
        active = dict(
            session.execute(
                select(Conversation.channel, func.count())
                .where(Conversation.status == engine.ACTIVE)
                .group_by(Conversation.channel)
            ).all()
        )
        assert active == {"sms": 450, "voice": 50}
        assert (
            session.scalar(
                select(func.count())
                .select_from(Conversation)
                .where(Conversation.status == engine.EXPIRED)
            )
            == 50
        )


def _only_message(session, participant_id: int) -> Message:
    return session.scalars(
        select(Message).where(Message.participant_id == participant_id, Message.direction == "out")
    ).one()


def _undeliver_first_text(client, twilio_fake, code: str = "30003") -> None:
    (sent,) = twilio_fake.created
    _text_status(client, sent["sid"], sent["to"], "undelivered", code)


def test_someone_who_answered_after_all_is_reached_and_not_invited_again(
    client, database, redis_conn, twilio_fake
):
    (pid,) = _panel(database, 1)
    campaign_id = _campaign(client)
    run_worker(redis_conn)
    _undeliver_first_text(client, twilio_fake)
    # The carrier said undelivered, yet they answer (a late delivery).
    post_twilio(client, PUBLIC, "/webhooks/twilio/sms", sms_params("1", sender=_number(0)))
    assert _beat(at_hours=3)["fallbacks_sent"] == 0
    run_worker(redis_conn)
    assert twilio_fake.calls == []
    with database.session() as session:
        invitation = session.scalars(select(Invitation)).one()
        assert invitation.fallback_end == fallback.ANSWERED and invitation.fallback_at is None
    assert _status(client, campaign_id)["fallback"]["moved_on"] == 0
    assert pid


def test_nobody_who_stopped_is_invited_again_and_no_stopped_contact_point_is_tried(
    client, database, redis_conn, twilio_fake
):
    stopped, blocked_call = _panel(database, 2)
    _campaign(client)
    run_worker(redis_conn)
    for sent in twilio_fake.created:
        _text_status(client, sent["sid"], sent["to"], "undelivered", "30003")
    with database.session() as session:
        session.get(Participant, stopped).opted_out = True
        # The other's number cannot take calls either (stopped there at the provider).
        session.execute(
            update(ContactPoint)
            .where(ContactPoint.participant_id == blocked_call, ContactPoint.channel == "voice")
            .values(opted_out_at=utcnow(), opted_out_reason="stopped at the provider")
        )
    assert _beat(at_hours=3)["fallbacks_sent"] == 0
    run_worker(redis_conn)
    assert twilio_fake.calls == [] and len(twilio_fake.created) == 2
    with database.session() as session:
        ends = dict(
            session.execute(select(Invitation.participant_id, Invitation.fallback_end)).all()
        )
    assert ends == {stopped: fallback.STOPPED, blocked_call: fallback.NO_POINT_LEFT}
    assert _beat(at_hours=4)["fallbacks_sent"] == 0


def test_no_fallback_unless_the_campaign_asks_for_it(client, database, redis_conn, twilio_fake):
    _panel(database, 1)
    campaign_id = _campaign(client, fallback_after_hours=None)
    run_worker(redis_conn)
    _undeliver_first_text(client, twilio_fake, "30005")
    assert _beat(at_hours=200)["fallbacks_sent"] == 0
    assert _status(client, campaign_id)["fallback"]["after_hours"] is None


def test_the_first_invitation_ends_with_its_reminder_and_the_survey_begins_anew(
    client, database, redis_conn, twilio_fake
):
    (pid,) = _panel(database, 1)
    _campaign(client, fallback_after_hours=0, reminder_after_hours=1)
    run_worker(redis_conn)
    _undeliver_first_text(client, twilio_fake, "30005")
    with database.session() as session:
        first = session.scalars(select(Invitation)).one().conversation_id
        # A reminder already written for the first conversation (its job not run yet).
        reminder = Message(
            participant_id=pid,
            conversation_id=first,
            direction="out",
            channel="sms",
            kind="reminder",
            address=_number(0),
            body="A gentle reminder",
            status="pending",
        )
        session.add(reminder)
        session.flush()
        reminder_id = reminder.id
    assert _beat(at_hours=0)["fallbacks_sent"] == 1  # 0 hours: as soon as it failed
    with database.session() as session:
        assert session.get(Message, reminder_id).status == "cancelled"
        assert session.get(Conversation, first).status == engine.EXPIRED
        invitation = session.scalars(select(Invitation)).one()
        call = session.get(Message, invitation.message_id)
        assert (call.channel, call.kind, call.address) == ("voice", "invitation", _number(0))
        again = session.get(Conversation, invitation.conversation_id)
        assert again.status == engine.ACTIVE and again.channel == "voice"
        assert again.state["question_id"] == "title"  # the same survey, from the start


def test_an_unanswered_call_falls_back_only_once_every_call_again_is_spent(
    client, database, redis_conn, twilio_fake
):
    (pid,) = _panel(database, 1, channel="voice")  # their calls first, then texts
    campaign_id = _campaign(client, channel="voice", fallback_after_hours=1)
    run_worker(redis_conn)
    tries = len(runtime.settings().voice_retry) + 1
    for attempt in range(tries):
        call = twilio_fake.calls[-1]
        _call_status(client, call, "no-answer")
        if attempt < tries - 1:
            # A call again is due later: nobody is moved on meanwhile, however late.
            assert _beat(at_hours=30)["fallbacks_sent"] == 0
            with database.session() as session:
                again = session.scalars(
                    select(Message).where(Message.status == "pending", Message.channel == "voice")
                ).one()
                again.send_after = None  # its time has come
                again_id = again.id
            send.send_batch(runtime.database(), redis_conn, runtime.settings(), [again_id])
    assert len(twilio_fake.calls) == tries
    assert _beat(at_hours=30)["fallbacks_sent"] == 1
    run_worker(redis_conn)
    (text,) = twilio_fake.created
    assert text["to"] == _number(0) and "Which title" in text["body"]
    assert _status(client, campaign_id)["fallback"]["moved_on"] == 1
    assert pid


def test_fallback_after_hours_is_checked(client):
    for value in (-1, 169, "soon", True):
        response = client.post(
            "/admin/api/campaigns",
            json={"survey": SURVEY, "audience": {"all": True}, "fallback_after_hours": value},
            headers=ADMIN,
        )
        assert response.status_code == 400, value
        assert response.json["error"].startswith("fallback_after_hours must be"), response.json


def test_a_fallback_waits_for_quiet_hours_as_every_invitation_does(
    client, database, redis_conn, twilio_fake, app_settings
):
    _panel(database, 1)
    _campaign(client, fallback_after_hours=0)
    run_worker(redis_conn)
    _undeliver_first_text(client, twilio_fake, "30005")
    quiet = app_settings.with_overrides(quiet_hours=parse_quiet_hours("00:00-23:59"))
    runtime.configure(quiet)
    assert _beat(at_hours=0)["fallbacks_sent"] == 1
    run_worker(redis_conn)
    assert twilio_fake.calls == []  # held, not placed
    with database.session() as session:
        call = session.scalars(select(Message).where(Message.channel == "voice")).one()
        assert call.status == "pending" and call.send_after is not None


def test_each_contact_point_is_tried_once_then_the_fallback_ends_with_the_reason(
    client, database, redis_conn, twilio_fake
):
    with database.session() as session:
        pid = people.person(
            session, name="Ann", phone=_number(1), telegram_chat_id=None, channel="sms"
        ).id
        people.person(session, name="Bob", phone=_number(2))  # reached by text: left alone
    _campaign(client, fallback_after_hours=1)
    run_worker(redis_conn)
    ann = next(m for m in twilio_fake.created if m["to"] == _number(1))
    _text_status(client, ann["sid"], ann["to"], "undelivered", "30003")
    assert _beat(at_hours=1.5)["fallbacks_sent"] == 1
    run_worker(redis_conn)
    (call,) = twilio_fake.calls
    # The call fails for good (not a passing failure: nothing calls again).
    callback = urlsplit(call["status_callback"])
    response = post_twilio(
        client,
        PUBLIC,
        callback.path + (f"?{callback.query}" if callback.query else ""),
        call_status_params(call["sid"], "failed", To=call["to"], ErrorCode="13224"),
    )
    assert response.status_code == 204
    # An hour from the call, not from the text: nothing yet at 2 hours from the text.
    assert _beat(at_hours=2)["fallbacks_sent"] == 0
    assert _beat(at_hours=3)["fallbacks_sent"] == 0
    with database.session() as session:
        invitation = session.scalars(
            select(Invitation).where(Invitation.participant_id == pid)
        ).one()
        assert invitation.fallback_end == fallback.NO_POINT_LEFT
        assert (invitation.fallback_from, invitation.channel) == ("sms", "voice")
    assert len(twilio_fake.created) == 2 and len(twilio_fake.calls) == 1
