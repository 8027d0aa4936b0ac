"""Telegram end to end: real-shaped updates into the webhook, replies through the outbox and a
real rq worker, out to a local fake Bot API server that records every call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import select

from bot import channels
from bot.channels.telegram import render
from bot.commands import runtime
from bot.config import Settings, load_settings
from bot.scripts.survey import discover, load_file
from bot.storage.db import Database
from bot.storage.models import Answer, ConsentEvent, Message, Participant
from tests import people
from tests.conftest import ADMIN, CONVERSATIONS, app_env, run_worker
from tests.fakes import (
    BLOCKED,
    BOT_TOKEN,
    CHAT_NOT_FOUND,
    WEBHOOK_SECRET,
    BotApiAnswer,
    FakeTelegram,
    FakeTwilio,
    callback_update,
    channel_post_update,
    edited_message_update,
    flood,
    message_update,
    my_chat_member_update,
    post_telegram,
    sticker_update,
)
from tests.readings import BEFORE, STORED, WORDINGS, conversations_with_readings

CHAT = 700_100_200
TELEGRAM = channels.get("telegram")


def telegram_env(fake: FakeTelegram, **extra: str) -> dict[str, str]:
    return {
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "TELEGRAM_API_BASE_URL": fake.url,
        **extra,
    }


@pytest.fixture
def telegram_fake() -> Iterator[FakeTelegram]:
    fake = FakeTelegram().start()
    yield fake
    fake.stop()


@pytest.fixture
def tg_settings(
    database: Database,
    redis_conn: Redis,
    redis_url: str,
    twilio_fake: FakeTwilio,
    telegram_fake: FakeTelegram,
    tmp_path: Path,
) -> Iterator[Settings]:
    env = app_env(database.url, redis_url, twilio_fake.url, tmp_path, **telegram_env(telegram_fake))
    current = load_settings(env)
    runtime.configure(current)
    yield current
    runtime.configure(current)


@pytest.fixture
def tg(tg_settings: Settings):
    from webhooks import create_app

    return create_app({"SETTINGS": tg_settings, "TESTING": True}).test_client()


class Chat:
    """One person's Telegram chat: what they send, and what the bot sent them."""

    def __init__(self, client: Any, fake: FakeTelegram, redis: Redis, chat_id: int = CHAT):
        self.client, self.fake, self.redis, self.chat_id = client, fake, redis, chat_id
        self.seen = 0

    def send(self, text: str, **kwargs: Any):
        response = post_telegram(self.client, message_update(self.chat_id, text, **kwargs))
        assert response.status_code == 200
        return response

    def deliver(self) -> list[dict[str, Any]]:
        """Run the worker; the messages sent to this chat since last time."""
        run_worker(self.redis)
        mine = [
            (i, m)
            for i, m in enumerate(self.fake.calls)
            if m["method"] == "sendMessage" and int(m["params"]["chat_id"]) == self.chat_id
        ]
        new = [m for i, m in mine if i >= self.seen]
        self.seen = len(self.fake.calls)
        return [m["params"] for m in new]

    def message_id_of(self, sent: dict[str, Any]) -> int:
        # The fake numbers its messages in order; find the one with these words and buttons.
        index = [c["params"] for c in self.fake.calls if c["method"] == "sendMessage"].index(sent)
        return 1001 + index

    def press(self, sent: dict[str, Any], label: str, **kwargs: Any):
        rows = sent["reply_markup"]["inline_keyboard"]
        (data,) = [b["callback_data"] for row in rows for b in row if b["text"] == label]
        update = callback_update(self.chat_id, sent, data, self.message_id_of(sent), **kwargs)
        response = post_telegram(self.client, update)
        assert response.status_code == 200
        return response


@pytest.fixture
def chat(tg, telegram_fake: FakeTelegram, redis_conn: Redis) -> Chat:
    return Chat(tg, telegram_fake, redis_conn)


def answers(database: Database, chat_id: int = CHAT) -> dict[str, tuple[Any, ...]]:
    with database.session() as session:
        person = people.at(session, "telegram_chat_id", chat_id)
        rows = session.scalars(select(Answer).where(Answer.participant_id == person.id)).all()
        return {a.question_id: (a.value, a.label, a.skipped, a.unparsed) for a in rows}


def buttons(sent: dict[str, Any]) -> list[list[str]]:
    return [[b["text"] for b in row] for row in sent["reply_markup"]["inline_keyboard"]]


# --- the secret ---------------------------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", WEBHOOK_SECRET + "x"])
def test_a_forged_or_missing_secret_is_refused_and_nothing_is_stored(tg, database, secret):
    response = post_telegram(tg, message_update(CHAT, "/start TITLE"), secret=secret)
    assert response.status_code == 403
    with database.session() as session:
        assert session.scalars(select(Message)).all() == []
        assert session.scalars(select(Participant)).all() == []


def test_an_update_over_the_size_limit_is_refused_before_it_is_parsed(tg, database):
    update = message_update(CHAT, "x" * 70_000)
    assert post_telegram(tg, update).status_code == 413
    with database.session() as session:
        assert session.scalars(select(Message)).all() == []


def test_with_no_secret_configured_every_update_is_refused(client, database):
    # The ordinary app settings have no Telegram at all.
    response = post_telegram(client, message_update(CHAT, "/start"))
    assert response.status_code == 403


# --- updates we do not handle -------------------------------------------------------------


@pytest.mark.parametrize(
    "update",
    [
        edited_message_update(CHAT, "yes"),
        message_update(-100_555, "/start TITLE", chat_type="group"),
        message_update(-100_556, "/stop", chat_type="supergroup"),
        channel_post_update(-100_557, "hello"),
    ],
    ids=["edited", "group", "supergroup", "channel-post"],
)
def test_updates_we_do_not_handle_are_answered_200_and_forgotten(tg, database, update):
    response = post_telegram(tg, update)
    assert response.status_code == 200
    with database.session() as session:
        assert session.scalars(select(Message)).all() == []


def test_a_sticker_mid_survey_is_answered_not_ignored_and_not_a_miss(chat, tg, database):
    chat.send("/start title")
    chat.deliver()
    assert post_telegram(tg, sticker_update(CHAT)).status_code == 200
    (again,) = chat.deliver()
    assert again["text"].startswith("We could not find any words in your message.")
    assert "Which title do you like best?" in again["text"]
    with database.session() as session:
        assert session.scalars(select(Answer)).all() == []


# --- a whole survey ---------------------------------------------------------------------


def test_a_stranger_gets_a_short_welcome_saying_who_we_are_and_how_to_stop(chat, database):
    chat.send("/start")
    (welcome,) = chat.deliver()
    assert "Age Better" in welcome["text"] and "/stop" in welcome["text"]
    assert "reply_markup" not in welcome


def test_a_whole_survey_by_buttons(chat, database, telegram_fake):
    chat.send("/start title")
    (first,) = chat.deliver()
    assert first["text"].startswith("Hello there.") and "Send /stop to opt out." in first["text"]
    assert buttons(first) == [
        ["Living well with long-term health conditions"],
        ["Your health, your way"],
        ["Managing your health day to day"],
    ]
    response = chat.press(first, "Living well with long-term health conditions")
    # The press is acknowledged in the webhook's own answer, at once.
    assert response.json["method"] == "answerCallbackQuery" and "text" not in response.json
    (why,) = chat.deliver()
    assert buttons(why) == [["Skip this question"]]
    # The answered message's buttons were taken away.
    assert telegram_fake.of("editMessageReplyMarkup")[-1]["message_id"] == chat.message_id_of(first)
    chat.press(why, "Skip this question")
    (useful,) = chat.deliver()
    assert buttons(useful) == [["1", "2", "3", "4", "5"]]
    chat.press(useful, "4")
    (recontact,) = chat.deliver()
    assert buttons(recontact) == [["Yes", "No"]]
    chat.press(recontact, "Yes")
    (outro,) = chat.deliver()
    assert outro["text"] == "Thank you. We will tell you what we decide."
    assert answers(database) == {
        "title": ("living-well", "Living well with long-term health conditions", False, False),
        "why": (None, None, True, False),
        "useful": ("4", "4", False, False),
        "recontact": ("yes", "Yes", False, False),
    }
    with database.session() as session:
        person = people.at(session, "telegram_chat_id", CHAT)
        assert person.recontact is True
        # Stored as the person would have typed it: staff read the label they tapped.
        bodies = session.scalars(
            select(Message.body).where(Message.direction == "in").order_by(Message.id)
        ).all()
        assert bodies == [
            "/start title",
            "Living well with long-term health conditions",
            "/skip",
            "4",
            "Yes",
        ]


def test_the_same_survey_by_typing_gives_answers_identical_in_form(chat, database):
    chat.send("/start TITLE")
    chat.deliver()
    for typed in ["1", "/skip", "4", "yes"]:
        chat.send(typed)
        chat.deliver()
    assert answers(database) == {
        "title": ("living-well", "Living well with long-term health conditions", False, False),
        "why": (None, None, True, False),
        "useful": ("4", "4", False, False),
        "recontact": ("yes", "Yes", False, False),
    }


@pytest.mark.parametrize("survey_id", sorted(s for s in discover(CONVERSATIONS)))
def test_every_survey_can_be_finished_by_buttons_alone(tg, telegram_fake, redis_conn, survey_id):
    survey = load_file(discover(CONVERSATIONS)[survey_id])
    person = Chat(tg, telegram_fake, redis_conn, chat_id=CHAT + 1)
    if survey.keyword is None:
        pytest.skip("no keyword to begin it by")
    person.send(f"/start {survey.keyword.lower()}")
    (sent,) = person.deliver()
    for _ in range(len(survey.questions) + 1):
        if "reply_markup" not in sent:
            break
        # The last button: "No" ends branches early, "Skip" leaves text out, the top of a scale.
        label = sent["reply_markup"]["inline_keyboard"][-1][-1]["text"]
        person.press(sent, label)
        (sent,) = person.deliver()
    # The outro, or an ending's own closing words where the route ends early (a screen-out).
    endings = [render.for_telegram(q.ask) for q in survey.questions if q.type == "end"]
    assert survey.outro is None or sent["text"] in [render.for_telegram(survey.outro), *endings]
    with runtime.database().session() as session:
        from bot.storage.models import Conversation

        (conv,) = session.scalars(select(Conversation)).all()
        assert conv.status == "completed"


def test_a_zero_to_ten_scale_wraps_and_no_row_has_more_than_eight():
    from bot import engine
    from bot.scripts.survey import load_text

    survey = load_text(
        "id: nps\ntitle: t\nquestions:\n"
        "  - {id: likely, type: scale, ask: How likely would you be to recommend us, min: 0, max: 10}\n"
    )
    ask = engine.ask(survey, survey.questions[0], {})
    keyboard = render.keyboard(ask)
    assert keyboard is not None
    rows = [[b.text for b in row] for row in keyboard.inline_keyboard]
    assert rows == [["0", "1", "2", "3", "4", "5"], ["6", "7", "8", "9", "10"]]
    assert keyboard.inline_keyboard[0][0].callback_data == "likely:0"


def test_a_stale_button_pressed_later_answers_nothing(chat, database, telegram_fake):
    chat.send("/start TITLE")
    (first,) = chat.deliver()
    chat.send("2")  # typed: the buttons on the first question are still there
    (why,) = chat.deliver()
    assert "What made you choose it?" in why["text"]
    response = chat.press(first, "Living well with long-term health conditions")
    assert response.json["text"].startswith("That question has been answered already")
    (again,) = chat.deliver()
    assert again["text"] == why["text"]  # the question in front of them, asked again
    assert answers(database) == {"title": ("your-health", "Your health, your way", False, False)}


def test_a_taken_press_takes_the_buttons_off_that_message(chat, database, telegram_fake):
    """After a press is taken, the worker asks Telegram to take that message's buttons off
    (the sender's `after_press`), so an answered question cannot be pressed again."""
    chat.send("/start TITLE")
    (first,) = chat.deliver()
    chat.press(first, "Your health, your way")
    chat.deliver()
    (edited,) = telegram_fake.of("editMessageReplyMarkup")
    assert int(edited["chat_id"]) == CHAT
    assert int(edited["message_id"]) == chat.message_id_of(first)
    assert not edited.get("reply_markup")


def test_a_repeated_update_id_changes_nothing_twice(chat, database, telegram_fake):
    chat.send("/start TITLE")
    (first,) = chat.deliver()
    data = first["reply_markup"]["inline_keyboard"][1][0]["callback_data"]
    update = callback_update(CHAT, first, data, chat.message_id_of(first))
    for _ in range(3):
        assert post_telegram(chat.client, update).status_code == 200
    assert len(chat.deliver()) == 1
    assert answers(database) == {"title": ("your-health", "Your health, your way", False, False)}
    with database.session() as session:
        assert len(session.scalars(select(Message).where(Message.direction == "in")).all()) == 2


def test_commands_do_what_the_words_do(chat, database):
    chat.send("/start TITLE")
    (first,) = chat.deliver()
    chat.send("/help@InvolveTestBot")
    (helped,) = chat.deliver()
    assert "/repeat" in helped["text"] and "Which title" in helped["text"]
    chat.send("/repeat")
    (repeated,) = chat.deliver()
    assert repeated["text"] == first["text"].split("\n\n", 1)[1]
    chat.send("/stop")
    (stopped,) = chat.deliver()
    assert "Send /start if you change your mind" in stopped["text"]
    chat.send("hello?")
    (still,) = chat.deliver()
    assert "Send /start" in still["text"]
    chat.send("/start")
    (back,) = chat.deliver()
    assert "Welcome back" in back["text"] and "/stop" in back["text"]


def test_script_words_read_as_commands():
    assert render.for_telegram("Reply STOP to opt out.") == "Send /stop to opt out."
    assert render.for_telegram("You can stop by replying STOP.") == "You can stop by sending /stop."
    assert render.for_telegram("Text HELP for help") == "Send /help for help"
    assert render.for_telegram("stop the bus") == "stop the bus"


# --- sending ------------------------------------------------------------------------------


def _queue(database: Database, chat_id: int, body: str, kind: str = "feedback") -> int:
    from bot.conversations import outbox

    # The app's own database object: its unit of work queues the send job after the commit.
    with runtime.database().session() as session:
        person = people.person(session, telegram_chat_id=chat_id, name="Ann", channel="telegram")
        return outbox.add(session, person, TELEGRAM.name, body, kind).id


def _row(database: Database, message_id: int) -> Message:
    with database.session() as session:
        return session.get(Message, message_id)


def test_a_blocked_bot_stops_that_chat_not_the_person(
    tg_settings, database, redis_conn, telegram_fake
):
    telegram_fake.script.append(BLOCKED)
    message_id = _queue(database, CHAT, "You said, we did.")
    run_worker(redis_conn)
    row = _row(database, message_id)
    assert row.status == "failed" and row.error_code == "403"
    assert "blocked by the user" in row.error_message
    with database.session() as session:
        person = session.get(Participant, row.participant_id)
        assert not person.opted_out  # blocking one app is not a STOP (tests/test_blocked.py)
        (point,) = person.contact_points
        assert point.opted_out_reason == "bot blocked (Telegram 403)"
        (event,) = session.scalars(select(ConsentEvent)).all()
        assert (event.kind, event.how, event.detail) == (
            "point_stopped",
            "telegram",
            "bot blocked (Telegram 403)",
        )


def _point(database: Database, chat_id: int = CHAT) -> tuple[Any, Any, list[Any]]:
    from bot.storage.models import ContactPoint

    with database.session() as session:
        point = session.scalars(
            select(ContactPoint).where(
                ContactPoint.channel == "telegram", ContactPoint.address == str(chat_id)
            )
        ).one()
        person = session.get(Participant, point.participant_id)
        events = session.scalars(
            select(ConsentEvent)
            .where(ConsentEvent.participant_id == person.id)
            .order_by(ConsentEvent.id)  # as they happened (a table's own order is no order)
        ).all()
        session.expunge_all()
        return point, person, events


def test_blocking_the_bot_stops_the_chat_at_once_and_unblocking_lets_it_in(
    chat, tg, database, telegram_fake
):
    """Issue 20: Telegram says when a person blocks the bot (`my_chat_member`, "kicked"); we
    act on it at once, as the 403 of our next send would have, without that wasted send: that
    chat is stopped, the person is not (their texts and calls: tests/test_blocked.py)."""
    chat.send("/start TITLE")
    chat.deliver()
    blocked = my_chat_member_update(CHAT, "kicked", was="member")
    for _ in range(2):  # Telegram retries; the second changes nothing
        assert post_telegram(tg, blocked).status_code == 200
    point, person, events = _point(database)
    assert point.opted_out_at is not None and "blocked" in point.opted_out_reason
    assert not person.opted_out
    assert [(e.kind, e.how) for e in events] == [("point_stopped", "telegram")]
    assert "blocked" in events[0].detail and str(CHAT) not in events[0].detail
    assert chat.deliver() == []  # nothing said: they cannot read it
    # Unblocked: the chat can be used again at once; they never said STOP.
    assert post_telegram(tg, my_chat_member_update(CHAT, "member", was="kicked")).status_code == 200
    point, person, events = _point(database)
    assert point.opted_out_at is None and not person.opted_out
    assert [(e.kind, e.how) for e in events] == [
        ("point_stopped", "telegram"),
        ("point_let_in", "telegram"),
    ]
    chat.send("2")  # their survey goes on where they were
    (next_question,) = chat.deliver()
    assert "What made you choose it?" in next_question["text"]


def test_a_block_is_refused_without_the_secret_and_ignored_for_strangers_and_groups(
    chat, tg, database
):
    chat.send("/start")
    chat.deliver()
    kicked = my_chat_member_update(CHAT, "kicked", was="member")
    assert post_telegram(tg, kicked, secret="wrong-secret-0123456789").status_code == 403
    assert _point(database)[0].opted_out_at is None
    stranger = my_chat_member_update(700_999_999, "kicked", was="member")
    assert post_telegram(tg, stranger).status_code == 200
    group = my_chat_member_update(CHAT, "kicked", was="member")
    group["my_chat_member"]["chat"] = {"id": -100_777, "type": "group", "title": "Panel"}
    assert post_telegram(tg, group).status_code == 200
    point, person, events = _point(database)
    assert point.opted_out_at is None and not person.opted_out and events == []


def test_a_rate_limit_waits_the_retry_after_telegram_names(
    tg_settings, database, redis_conn, telegram_fake
):
    telegram_fake.script.append(flood(600))
    message_id = _queue(database, CHAT, "Hello")
    run_worker(redis_conn)
    row = _row(database, message_id)
    assert row.status == "pending" and row.error_code == "429"
    assert (row.send_after - row.updated_at).total_seconds() >= 599
    assert len(telegram_fake.sent()) == 1


def test_chat_not_found_fails_for_good_with_the_reason(
    tg_settings, database, redis_conn, telegram_fake
):
    telegram_fake.script.append(CHAT_NOT_FOUND)
    message_id = _queue(database, CHAT, "Hello")
    run_worker(redis_conn)
    row = _row(database, message_id)
    assert (row.status, row.error_code) == ("failed", "400")
    assert "chat not found" in row.error_message.lower()
    with database.session() as session:
        assert not session.get(Participant, row.participant_id).opted_out


def test_the_sender_honours_the_api_base_url_and_sends_the_stored_keyboard(
    tg_settings, database, redis_conn, telegram_fake
):
    keyboard = render.TelegramMessage(
        "Pick one",
        render.InlineKeyboardMarkup([[render.InlineKeyboardButton("A", callback_data="q:1")]]),
    )
    body = render.to_body(keyboard)
    assert body.startswith("Pick one\n\n")  # the words first, as staff read them
    message_id = _queue(database, CHAT, body, kind="reply")
    run_worker(redis_conn)
    (call,) = [c for c in telegram_fake.calls if c["method"] == "sendMessage"]
    assert call["token"] == BOT_TOKEN
    assert call["params"]["text"] == "Pick one"
    assert call["params"]["reply_markup"] == {
        "inline_keyboard": [[{"text": "A", "callback_data": "q:1"}]]
    }
    row = _row(database, message_id)
    assert row.status == "sent" and row.provider_id == f"{CHAT}:1001"


def test_telegram_is_off_until_token_and_secret_are_set(telegram_fake):
    assert TELEGRAM.off_reason(load_settings({})) == (
        "set TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET"
    )
    key = {"SUPPRESSION_KEY": "s" * 40, "ORG_NAME": "Age Better"}
    assert TELEGRAM.off_reason(load_settings({"TELEGRAM_BOT_TOKEN": BOT_TOKEN, **key})) is not None
    assert TELEGRAM.off_reason(load_settings({**telegram_env(telegram_fake), **key})) is None


def test_feedback_reaches_people_on_telegram(chat, tg, database, telegram_fake):
    chat.send("/start TITLE")
    chat.deliver()
    for typed in ["2", "/skip", "5", "yes"]:
        chat.send(typed)
        chat.deliver()
    with database.session() as session:
        person = people.at(session, "telegram_chat_id", CHAT)
        person.external_id = "T1"
    # Feedback goes to the people of a campaign: put this conversation in one.
    created = tg.post(
        "/admin/api/campaigns",
        json={"survey": "guide-title", "audience": {"participants": ["T1"]}},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.json
    from bot.storage.models import Conversation

    with database.session() as session:
        for conv in session.scalars(select(Conversation)):
            conv.campaign_id = created.json["id"]
    response = tg.post(
        f"/admin/api/campaigns/{created.json['id']}/feedback",
        json={"message": "Hello {{ name }}. You chose {{ answers.title }}. Reply STOP to stop."},
        headers=ADMIN,
    )
    assert response.status_code == 202, response.json
    (sent,) = chat.deliver()
    # Written for every channel, read here as the command it is.
    assert sent["text"] == "Hello there. You chose Your health, your way. Send /stop to stop."


# --- campaigns --------------------------------------------------------------------------


def test_a_campaign_invites_people_in_telegram_with_buttons(chat, tg, database):
    imported = tg.post(
        "/admin/api/participants",
        json={"participants": [{"name": "Ann Jones", "telegram_chat_id": CHAT, "tags": ["tg"]}]},
        headers=ADMIN,
    )
    assert imported.json["created"] == 1, imported.json
    created = tg.post(
        "/admin/api/campaigns",
        json={"survey": "hear-back", "audience": {"tags": ["tg"]}, "channel": "telegram"},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.json
    assert (
        tg.post(f"/admin/api/campaigns/{created.json['id']}/launch", headers=ADMIN).status_code
        == 202
    )
    run_worker(chat.redis)  # the fan-out
    (invitation,) = chat.deliver()
    assert invitation["text"].startswith("Hello Ann.") and "reply_markup" in invitation
    chat.press(invitation, invitation["reply_markup"]["inline_keyboard"][0][0]["text"])
    assert len(chat.deliver()) == 1
    status = tg.get(f"/admin/api/campaigns/{created.json['id']}", headers=ADMIN).json
    assert status["counts"]["invited"] == 1 and status["counts"]["started"] == 1


# --- joining by deep link -----------------------------------------------------------------


def _person(database: Database, **fields: Any) -> int:
    with runtime.database().session() as session:
        return people.person(session, **{"tags": ["panel"], **fields}).id


def _link(tg, key: Any, **body: Any) -> str:
    response = tg.post(
        f"/admin/api/participants/{key}/telegram-link", json=body or None, headers=ADMIN
    )
    assert response.status_code == 201, response.json
    link = response.json["link"]
    assert link.startswith("https://t.me/InvolveTestBot?start=")  # asked of Telegram: getMe
    return link.rsplit("=", 1)[1]


def test_joining_by_deep_link_links_the_chat_to_the_person(chat, tg, database, telegram_fake):
    person_id = _person(database, name="Margaret Jones", phone="+447700900555", external_id="M1")
    code = _link(tg, "M1")
    assert telegram_fake.of("getMe")
    chat.send("/start")  # a stranger first: a record for the chat alone
    chat.deliver()
    chat.send(f"/start {code}")
    (welcome,) = chat.deliver()
    assert "/stop" in welcome["text"]
    with database.session() as session:
        person = session.get(Participant, person_id)
        assert people.chat_id(person) == CHAT and person.channel == "telegram"
        # The chat is their first contact point now (they chose it); the number stays theirs.
        assert [(p.channel, p.position) for p in person.contact_points] == [
            ("telegram", 0),
            ("sms", 1),
            ("voice", 2),
        ]
        assert person.contact_points[0].verified_at is not None
        # The code is a credential until used: it is not kept in the message log.
        bodies = session.scalars(select(Message.body)).all()
        assert not any(code in (body or "") for body in bodies)
        from bot.storage.models import TelegramLink

        (stored,) = session.scalars(select(TelegramLink)).all()
        assert stored.used_at is not None and code not in stored.code_hash
    # Tapping the same link again from the same chat is harmless.
    chat.send(f"/start {code}")
    (again,) = chat.deliver()
    assert "already been used" not in again["text"]


def test_a_used_code_does_not_link_another_chat(chat, tg, database, telegram_fake, redis_conn):
    person_id = _person(database, name="Ann", external_id="A1")
    code = _link(tg, person_id)
    chat.send(f"/start {code}")
    chat.deliver()
    other = Chat(chat.client, telegram_fake, redis_conn, chat_id=CHAT + 50)
    other.send(f"/start {code}")
    sent = other.deliver()
    assert any("already been used" in m["text"] for m in sent)
    with database.session() as session:
        assert people.chat_id(session.get(Participant, person_id)) == CHAT


def test_an_expired_code_does_not_link(chat, tg, database):
    from datetime import timedelta

    from bot.storage.models import TelegramLink, utcnow

    person_id = _person(database, name="Ann", external_id="A2")
    code = _link(tg, "A2", days=1)
    with database.session() as session:
        for link in session.scalars(select(TelegramLink)):
            link.expires_at = utcnow() - timedelta(minutes=1)
    chat.send(f"/start {code}")
    sent = chat.deliver()
    assert any("expired" in m["text"] for m in sent)
    with database.session() as session:
        assert people.chat_id(session.get(Participant, person_id)) is None


def test_a_repeated_deep_link_update_changes_nothing_twice(chat, tg, database):
    person_id = _person(database, name="Ann", external_id="A3")
    code = _link(tg, "A3")
    update = message_update(CHAT, f"/start {code}")
    for _ in range(2):
        assert post_telegram(chat.client, update).status_code == 200
    assert len(chat.deliver()) == 1
    with database.session() as session:
        assert people.chat_id(session.get(Participant, person_id)) == CHAT


def test_an_unknown_code_or_keyword_start_is_a_welcome(chat, database):
    chat.send("/start " + "x" * 22)
    (welcome,) = chat.deliver()
    assert "/stop" in welcome["text"]


def test_links_are_refused_for_unknown_people_and_bad_days(tg, database):
    assert tg.post("/admin/api/participants/nobody/telegram-link", headers=ADMIN).status_code == 404
    _person(database, external_id="B1")
    response = tg.post("/admin/api/participants/B1/telegram-link", json={"days": 0}, headers=ADMIN)
    assert response.status_code == 400


def test_links_without_telegram_say_what_to_set(client, database):
    _person(database, external_id="C1")
    response = client.post("/admin/api/participants/C1/telegram-link", headers=ADMIN)
    assert response.status_code == 409 and "TELEGRAM_BOT_USERNAME" in response.json["error"]


def test_cli_links_for_one_person_and_a_csv_for_a_mail_out(tg_settings, database, tmp_path):
    import csv

    from click.testing import CliRunner

    from bot.commands.cli import main

    _person(database, name="Ann", external_id="P1", tags=["readers"])
    _person(database, name="=cmd|' /C calc'!A0", external_id="P2")
    _person(database, name="In Telegram", telegram_chat_id=CHAT + 9)
    one = CliRunner().invoke(main, ["participants", "telegram-links", "--participant", "P1"])
    assert one.exit_code == 0, one.output
    assert "https://t.me/InvolveTestBot?start=" in one.output and "single use" in one.output
    out = tmp_path / "links.csv"
    many = CliRunner().invoke(main, ["participants", "telegram-links", str(out), "--days", "14"])
    assert many.exit_code == 0, many.output
    assert "wrote 2 single-use links" in many.output
    rows = list(csv.DictReader(out.open()))
    assert [r["external_id"] for r in rows] == ["P1", "P2"]
    assert rows[1]["name"].startswith("'=")  # a spreadsheet will not run it
    assert len({r["link"] for r in rows}) == 2
    neither = CliRunner().invoke(main, ["participants", "telegram-links"])
    assert neither.exit_code == 2


# --- involve webhooks set -----------------------------------------------------------------


def test_webhooks_set_points_telegram_and_twilio_at_the_public_url(
    tg_settings, telegram_fake, twilio_fake
):
    from click.testing import CliRunner

    from bot.commands.cli import main

    result = CliRunner().invoke(main, ["webhooks", "set"])
    assert result.exit_code == 0, result.output
    (call,) = telegram_fake.of("setWebhook")
    assert call["url"] == "https://involve.example.org/webhooks/telegram"
    assert call["secret_token"] == WEBHOOK_SECRET
    assert call["allowed_updates"] == ["message", "callback_query", "my_chat_member"]
    texts, calls = [r for r in twilio_fake.requests if "/IncomingPhoneNumbers/" in r["path"]]
    assert texts["form"]["SmsUrl"] == "https://involve.example.org/webhooks/twilio/sms"
    assert calls["form"]["VoiceUrl"] == "https://involve.example.org/webhooks/twilio/voice"
    assert "telegram: setWebhook https://involve.example.org/webhooks/telegram" in result.output
    assert (
        "sms: +441234567890 posts texts to https://involve.example.org/webhooks/twilio/sms"
        in result.output
    )
    assert (
        "voice: +441234567890 posts calls to https://involve.example.org/webhooks/twilio/voice"
        in result.output
    )


def test_webhooks_set_says_when_telegram_refuses(tg_settings, telegram_fake):
    from click.testing import CliRunner

    from bot.commands.cli import main

    telegram_fake.scripted_methods = ("setWebhook",)
    telegram_fake.script.append(
        BotApiAnswer(400, "Bad Request: bad webhook: HTTPS url must be provided")
    )
    result = CliRunner().invoke(main, ["webhooks", "set"])
    assert result.exit_code == 1
    assert "telegram: could not set: Telegram 400" in result.output


def test_erasing_a_person_removes_their_unused_links(chat, tg, database):
    from bot.storage.models import TelegramLink

    _person(database, name="Ann", external_id="E1")
    code = _link(tg, "E1")
    assert tg.delete("/admin/api/participants/E1", headers=ADMIN).status_code == 200
    with database.session() as session:
        assert session.scalars(select(TelegramLink)).all() == []
    chat.send(f"/start {code}")
    chat.deliver()
    with database.session() as session:
        assert people.at(session, "telegram_chat_id", CHAT).external_id is None


def test_a_button_that_is_not_ours_is_acknowledged_and_nothing_is_stored(tg, database):
    update = callback_update(CHAT, {"text": "old"}, "not-ours", 55)
    response = post_telegram(tg, update)
    assert response.status_code == 200
    assert response.json == {
        "method": "answerCallbackQuery",
        "callback_query_id": update["callback_query"]["id"],
    }
    with database.session() as session:
        assert session.scalars(select(Message)).all() == []


def test_all_that_apply_by_buttons_ticks_each_tap_and_stores_on_done(chat, database):
    chat.send("/start lunch")
    (sent,) = chat.deliver()
    chat.press(sent, "Yes")
    (sent,) = chat.deliver()
    assert "Tap each answer that applies, then Done." in sent["text"]
    chat.press(sent, "1. Monday")
    (sent,) = chat.deliver()
    chat.press(sent, "3. Friday")
    (sent,) = chat.deliver()
    texts = [b["text"] for row in sent["reply_markup"]["inline_keyboard"] for b in row]
    assert texts[:3] == [f"{render.TICK}1. Monday", "2. Wednesday", f"{render.TICK}3. Friday"]
    chat.press(sent, f"{render.TICK}1. Monday")  # tapped again: off
    (sent,) = chat.deliver()
    chat.press(sent, "Done")
    (sent,) = chat.deliver()
    assert "When did you last come?" in sent["text"]
    assert answers(database)["days"] == ("fri", "Friday", False, False)


# --- issue 20: replies read as meant --------------------------------------------------------


@pytest.fixture
def meant(database, redis_conn, redis_url, twilio_fake, telegram_fake, tmp_path):
    from webhooks import create_app

    folder = conversations_with_readings(tmp_path / "conversations")
    env = app_env(
        database.url,
        redis_url,
        twilio_fake.url,
        tmp_path,
        CONVERSATIONS_DIR=str(folder),
        **telegram_env(telegram_fake),
    )
    current = load_settings(env)
    runtime.configure(current)
    client = create_app({"SETTINGS": current, "TESTING": True}).test_client()
    yield Chat(client, telegram_fake, redis_conn)
    runtime.configure(current)


def _start_at(chat: Chat, question: str) -> None:
    chat.send("/start meant")
    chat.deliver()
    for answer in BEFORE[question]:
        chat.send(answer)
        chat.deliver()


@pytest.mark.parametrize(("question", "typed", "said"), WORDINGS)
def test_a_reply_that_could_mean_two_things_is_asked_about_never_stored(
    meant, database, question, typed, said
):
    _start_at(meant, question)
    meant.send(typed)
    (reply,) = meant.deliver()
    assert said in reply["text"]
    stored = answers(database).get(question)
    assert stored is None or stored[0] is None


@pytest.mark.parametrize(("question", "typed", "value"), STORED)
def test_a_number_with_a_fraction_is_stored_as_meant(meant, database, question, typed, value):
    _start_at(meant, question)
    meant.send(typed)
    meant.deliver()
    assert answers(database)[question][0] == value


def test_did_you_mean_no_has_yes_and_no_buttons_and_yes_stores_no(meant, database):
    _start_at(meant, "grammar")
    meant.send("N/A")
    (confirm,) = meant.deliver()
    assert confirm["text"].startswith("Did you mean No?") and buttons(confirm) == [["Yes", "No"]]
    meant.press(confirm, "Yes")
    (next_one,) = meant.deliver()
    assert "What did you like best at breakfast?" in next_one["text"]
    assert answers(database)["grammar"] == ("no", "No", False, False)


def test_did_you_mean_not_applicable_no_asks_the_question_again(meant, database):
    _start_at(meant, "breakfast")
    meant.send("na")
    (confirm,) = meant.deliver()
    meant.press(confirm, "No")
    (again,) = meant.deliver()
    assert "What did you like best at breakfast?" in again["text"]
    assert "breakfast" not in answers(database)
