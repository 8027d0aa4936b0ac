"""A person who blocks us on one app stops that contact point, not themselves (issues 19 and 20).

Blocking the Telegram bot (Telegram's `my_chat_member` "kicked", or a send's 403) or our
WhatsApp sender (Twilio 63014, from the send or a status callback) stops that contact point
only: what was waiting to go there is cancelled, the consent log says `point_stopped` (with the
channel, never the address), and the person's texts and calls go on. Unblocking lets the chat in
again. A campaign never picks a stopped contact point, and its fallback moves a blocked person on
at once. Against real databases, a real rq worker, and local fakes of Twilio and the Bot API.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot import channels
from bot.commands import runtime
from bot.config import Settings
from bot.conversations import outbox
from bot.cycle import reminders, upkeep
from bot.sending import send
from bot.storage.models import ConsentEvent, ContactPoint, Message, Participant, utcnow
from tests import people
from tests.conftest import ADMIN, PUBLIC, app_env, run_worker
from tests.fakes import (
    BLOCKED,
    BOT_TOKEN,
    WEBHOOK_SECRET,
    FakeTelegram,
    FakeTwilio,
    Scripted,
    message_update,
    my_chat_member_update,
    post_telegram,
    post_twilio,
    sms_params,
    status_params,
)

CHAT = 700_300_400
NUMBER = "+447700900321"
WHATSAPP = f"whatsapp:{NUMBER}"
TEMPLATE = "HX" + "3" * 32


@pytest.fixture
def telegram_fake() -> Iterator[FakeTelegram]:
    fake = FakeTelegram().start()
    yield fake
    fake.stop()


@pytest.fixture
def app_settings(
    database,
    redis_conn,
    redis_url: str,
    twilio_fake: FakeTwilio,
    telegram_fake: FakeTelegram,
    tmp_path: Path,
) -> Iterator[Settings]:
    """Every channel on: texts, calls, Telegram and WhatsApp."""
    env = app_env(
        database.url,
        redis_url,
        twilio_fake.url,
        tmp_path,
        TELEGRAM_BOT_TOKEN=BOT_TOKEN,
        TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET,
        TELEGRAM_API_BASE_URL=telegram_fake.url,
        TWILIO_WHATSAPP_FROM="whatsapp:+441234567899",
        WHATSAPP_FEEDBACK_TEMPLATE=TEMPLATE,
    )
    current = channels.load_settings(env)
    runtime.configure(current)
    yield current
    runtime.configure(current)


def _ann(first: str = "telegram", whatsapp: bool = True) -> int:
    """Ann: her chat, her number (texts and calls) and, unless not, her WhatsApp; `first` is
    her own channel, the first of her contact points."""
    with runtime.database().session() as session:
        fields: dict[str, Any] = {"telegram_chat_id": CHAT, "phone": NUMBER}
        if whatsapp:
            fields["whatsapp"] = NUMBER
        return people.person(session, name="Ann", channel=first, recontact=True, **fields).id


def _queue(person_id: int, channel: str, body: str, kind: str = "feedback", later: bool = False):
    """A message to Ann on `channel` through the outbox (its job runs with the next worker);
    `later`: due in a day, so it waits, pending."""
    with runtime.database().session() as session:
        person = session.get(Participant, person_id)
        send_after = utcnow() + timedelta(days=1) if later else None
        return outbox.add(session, person, channel, body, kind, send_after=send_after).id


def _point(database, channel: str) -> ContactPoint:
    with database.session() as session:
        point = session.scalars(select(ContactPoint).where(ContactPoint.channel == channel)).one()
        session.expunge(point)
        return point


def _consent(database) -> list[tuple[str, str, str | None]]:
    with database.session() as session:
        return [
            (e.kind, e.how, e.detail)
            for e in session.scalars(select(ConsentEvent).order_by(ConsentEvent.id))
        ]


def _status(database, message_id: int) -> str:
    with database.session() as session:
        return session.get(Message, message_id).status


def _kicked(client) -> None:
    assert (
        post_telegram(client, my_chat_member_update(CHAT, "kicked", was="member")).status_code
        == 200
    )


def _send_here(redis_conn, message_id: int) -> None:
    """The send job's work, in this process, so that its log lines are captured."""
    send.send_batch(runtime.database(), redis_conn, runtime.settings(), [message_id])


def _block_by_telegram_403(client, redis_conn, telegram_fake, person_id: int) -> None:
    telegram_fake.script.append(BLOCKED)
    _send_here(redis_conn, _queue(person_id, "telegram", "You said, we did."))


def _block_by_whatsapp_63014(client, redis_conn, twilio_fake, person_id: int) -> None:
    twilio_fake.script.append(
        Scripted(status=400, code=63014, message="Message failed: blocked by user action")
    )
    _send_here(redis_conn, _queue(person_id, "whatsapp", "You said, we did."))


def _block_by_whatsapp_callback(client, redis_conn, twilio_fake, person_id: int) -> None:
    message_id = _queue(person_id, "whatsapp", "You said, we did.")
    _send_here(redis_conn, message_id)
    with runtime.database().session() as session:
        sid = session.get(Message, message_id).provider_id
    params = status_params(sid, "failed", "63014", to=WHATSAPP)
    path = f"/webhooks/twilio/status?m={message_id}"
    assert post_twilio(client, PUBLIC, path, params).status_code == 204


# How each way of blocking us reads: the channel stopped, and the reason it keeps.
WAYS = {
    "telegram kicked": ("telegram", "bot blocked (Telegram my_chat_member)"),
    "telegram 403": ("telegram", "bot blocked (Telegram 403)"),
    "whatsapp 63014": ("whatsapp", "blocked us on that channel (Twilio 63014)"),
    "whatsapp 63014 callback": ("whatsapp", "blocked us on that channel (Twilio 63014)"),
}


def _block(way: str, client, redis_conn, twilio_fake, telegram_fake, person_id: int) -> None:
    if way == "telegram kicked":
        _kicked(client)
    elif way == "telegram 403":
        _block_by_telegram_403(client, redis_conn, telegram_fake, person_id)
    elif way == "whatsapp 63014":
        _block_by_whatsapp_63014(client, redis_conn, twilio_fake, person_id)
    else:
        _block_by_whatsapp_callback(client, redis_conn, twilio_fake, person_id)


@pytest.mark.parametrize("way", list(WAYS))
def test_a_block_stops_that_contact_point_and_their_texts_and_calls_go_on(
    way, client, database, redis_conn, twilio_fake, telegram_fake, caplog
):
    caplog.set_level("INFO")
    channel, reason = WAYS[way]
    person_id = _ann()
    # Waiting to go (due tomorrow): one to the app they are about to block, one by text.
    there = _queue(person_id, channel, "Tomorrow, there", later=True)
    by_text = _queue(person_id, "sms", "Tomorrow, by text", later=True)

    _block(way, client, redis_conn, twilio_fake, telegram_fake, person_id)

    stopped = _point(database, channel)
    assert stopped.opted_out_at is not None and stopped.opted_out_reason == reason
    for other in {"sms", "voice", "telegram", "whatsapp"} - {channel}:
        assert _point(database, other).usable, other
    with database.session() as session:
        assert not session.get(Participant, person_id).opted_out  # not a STOP
    assert _consent(database) == [("point_stopped", channel, reason)]
    # Only what was to go to that contact point is cancelled.
    assert (_status(database, there), _status(database, by_text)) == ("cancelled", "pending")

    # Their texts still go, and their calls still ring.
    texts_before, calls_before = len(twilio_fake.created), len(twilio_fake.calls)
    text = _queue(person_id, "sms", "A text for Ann")
    call = _queue(person_id, "voice", "A call for Ann", kind="notice")
    run_worker(redis_conn)
    assert [m["to"] for m in twilio_fake.created[texts_before:]] == [NUMBER]
    assert [c["to"] for c in twilio_fake.calls[calls_before:]] == [NUMBER]
    assert _status(database, text) != "cancelled" and _status(database, call) != "cancelled"

    # No address, chat id or words in any log line.
    for secret in (str(CHAT), NUMBER, NUMBER.removeprefix("+"), "A text for Ann", "Tomorrow"):
        assert secret not in caplog.text, secret
    assert f"stopped us on {channel}" in caplog.text


def test_blocking_twice_changes_nothing_twice(client, database):
    _ann()
    first = _consent(database)
    _kicked(client)
    stopped_at = _point(database, "telegram").opted_out_at
    _kicked(client)  # Telegram retries a delivery; a second block says nothing new
    assert _point(database, "telegram").opted_out_at == stopped_at
    assert _consent(database) == [*first, ("point_stopped", "telegram", WAYS["telegram kicked"][1])]


def test_unblocking_the_bot_lets_the_chat_in_again(client, database, redis_conn, telegram_fake):
    person_id = _ann()
    _kicked(client)
    unblocked = my_chat_member_update(CHAT, "member", was="kicked")
    assert post_telegram(client, unblocked).status_code == 200
    assert _point(database, "telegram").usable
    assert [(kind, how) for kind, how, _ in _consent(database)] == [
        ("point_stopped", "telegram"),
        ("point_let_in", "telegram"),
    ]
    # Usable again at once: no /start needed, since they never said STOP.
    message_id = _queue(person_id, "telegram", "You said, we did.")
    run_worker(redis_conn)
    sent = [c for c in telegram_fake.calls if c["method"] == "sendMessage"]
    assert [c["params"]["chat_id"] for c in sent] == [CHAT]
    assert _status(database, message_id) == "sent"


def test_a_campaign_never_picks_a_stopped_contact_point(
    client, database, redis_conn, twilio_fake, telegram_fake
):
    person_id = _ann()
    _kicked(client)
    # Each person's own channel: Ann's is Telegram, stopped, so her next contact point.
    body = {"survey": "guide-title", "audience": {"all": True}}
    created = client.post("/admin/api/campaigns", json=body, headers=ADMIN).json
    assert (
        client.post(f"/admin/api/campaigns/{created['id']}/launch", headers=ADMIN).status_code
        == 202
    )
    run_worker(redis_conn)
    run_worker(redis_conn)
    assert not [c for c in telegram_fake.calls if c["method"] == "sendMessage"]
    (invitation,) = twilio_fake.created
    assert invitation["to"] == NUMBER and "choose a title" in invitation["body"]
    status = client.get(f"/admin/api/campaigns/{created['id']}", headers=ADMIN).json
    assert status["counts"]["invited"] == 1 and status["counts"]["opted_out"] == 0
    assert person_id


def _beat(at_hours: float) -> dict[str, int]:
    return upkeep.keep_moving(
        runtime.database(),
        runtime.redis(),
        runtime.settings(),
        now=utcnow() + timedelta(hours=at_hours),
    )


@pytest.mark.parametrize("when", ["the invitation's send", "after it went"])
def test_a_fallback_moves_a_blocked_telegram_person_to_texts_at_once(
    when, client, database, redis_conn, twilio_fake, telegram_fake
):
    _ann(whatsapp=False)  # Telegram first, then texts, then calls
    if when == "the invitation's send":
        telegram_fake.script.append(BLOCKED)
    body = {"survey": "guide-title", "audience": {"all": True}, "fallback_after_hours": 24}
    campaign = client.post("/admin/api/campaigns", json=body, headers=ADMIN).json["id"]
    assert client.post(f"/admin/api/campaigns/{campaign}/launch", headers=ADMIN).status_code == 202
    run_worker(redis_conn)
    run_worker(redis_conn)
    assert [c["method"] for c in telegram_fake.calls if c["method"] == "sendMessage"] == [
        "sendMessage"
    ]
    if when == "after it went":
        _kicked(client)  # they read it, or not, and blocked the bot
    assert twilio_fake.created == []

    # Not 24 hours: at the next beat.
    assert _beat(at_hours=0)["fallbacks_sent"] == 1
    run_worker(redis_conn)
    (text,) = twilio_fake.created
    assert text["to"] == NUMBER and "choose a title" in text["body"]
    assert _beat(at_hours=30)["fallbacks_sent"] == 0  # once; never back to the chat
    post_twilio(
        client,
        PUBLIC,
        "/webhooks/twilio/status",
        status_params(text["sid"], "delivered", to=NUMBER),
    )
    status = client.get(f"/admin/api/campaigns/{campaign}", headers=ADMIN).json
    assert status["fallback"] == {"after_hours": 24.0, "moved_on": 1, "reached_by_fallback": 1}
    assert status["counts"]["opted_out"] == 0
    assert twilio_fake.calls == [] and len(twilio_fake.created) == 1


def test_someone_who_answered_in_telegram_then_blocked_it_carries_on_by_text(
    client, database, redis_conn, twilio_fake, telegram_fake
):
    _ann(whatsapp=False)
    body = {"survey": "guide-title", "audience": {"all": True}, "fallback_after_hours": 24}
    campaign = client.post("/admin/api/campaigns", json=body, headers=ADMIN).json["id"]
    client.post(f"/admin/api/campaigns/{campaign}/launch", headers=ADMIN)
    run_worker(redis_conn)
    run_worker(redis_conn)
    assert post_telegram(client, message_update(CHAT, "2")).status_code == 200
    _kicked(client)
    # Reached already: no fallback starts the survey again elsewhere.
    assert _beat(at_hours=0)["fallbacks_sent"] == 0
    assert twilio_fake.created == []
    # Their survey goes on where they are, by text.
    answer = post_twilio(
        client, PUBLIC, "/webhooks/twilio/sms", sms_params("It is clear", sender=NUMBER)
    )
    assert "How useful would this guide be to you?" in answer.get_data(as_text=True)


def test_subject_access_says_the_contact_point_is_stopped_on_that_channel(client, database):
    person_id = _ann()
    _kicked(client)
    found = client.get(f"/admin/api/participants/{person_id}", headers=ADMIN).json
    states = {p["channel"]: p["state"] for p in found["contact_points"]}
    assert states == {
        "telegram": "stopped on Telegram: bot blocked (Telegram my_chat_member)",
        "sms": "usable",
        "voice": "usable",
        "whatsapp": "usable",
    }
    assert found["opted_out"] is False
    assert [(e["kind"], e["how"]) for e in found["consent_log"]] == [("point_stopped", "telegram")]


def test_neither_a_reminder_nor_you_said_we_did_goes_to_a_stopped_chat(
    client, database, redis_conn, twilio_fake, telegram_fake
):
    _ann(whatsapp=False)
    bob_chat = 700_300_401
    with runtime.database().session() as session:
        people.person(session, name="Bob", channel="telegram", telegram_chat_id=bob_chat)
    body = {"survey": "guide-title", "audience": {"all": True}, "reminder_after_hours": 1}
    campaign = client.post("/admin/api/campaigns", json=body, headers=ADMIN).json["id"]
    client.post(f"/admin/api/campaigns/{campaign}/launch", headers=ADMIN)
    run_worker(redis_conn)
    for words in ("2", "/skip", "4", "yes"):  # Ann finishes and would like to hear back
        assert post_telegram(client, message_update(CHAT, words)).status_code == 200
    assert post_telegram(client, message_update(bob_chat, "2")).status_code == 200  # Bob starts
    _kicked(client)
    assert (
        post_telegram(client, my_chat_member_update(bob_chat, "kicked", was="member")).status_code
        == 200
    )
    run_worker(redis_conn)
    sent_before = len(telegram_fake.calls)

    # Bob's reminder would go to the chat he blocked: none is written.
    assert reminders.send_reminders(runtime.database(), runtime.settings(), campaign) == 0
    with database.session() as session:
        assert not session.scalars(select(Message).where(Message.kind == "reminder")).all()
    # Ann answered in Telegram, and Telegram is stopped: staff see why she is left out.
    preview = client.post(
        f"/admin/api/campaigns/{campaign}/feedback",
        json={"message": "Thank you, {{ name }}.", "dry_run": True},
        headers=ADMIN,
    ).json
    assert preview["recipients"] == []
    assert {
        "participant": str(_ann_id(database)),
        "reason": "stopped on Telegram: bot blocked (Telegram my_chat_member)",
    } in preview["skipped"]
    assert len(telegram_fake.calls) == sent_before and twilio_fake.created == []


def _ann_id(database) -> int:
    with database.session() as session:
        return session.scalars(select(Participant.id).where(Participant.name == "Ann")).one()
