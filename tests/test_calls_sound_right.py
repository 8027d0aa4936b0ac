"""Issue 20, "calls that sound right": a keypad call driven as Twilio drives it (signed requests,
each turn's `action` or `<Redirect>` followed), for scripts written as staff write them."""

from __future__ import annotations

import re

import pytest
from babel.messages.pofile import read_po

from bot import i18n
from bot.channels.voice import render
from bot.commands import runtime
from bot.config import load_settings
from tests.conftest import ADMIN, app_env, run_worker
from tests.test_twilio_voice import Phone, answers

CHAT = """
id: chat
title: Our lunch club
questions:
  - id: club
    type: choice
    ask: "Which club do you go to? Reply STOP to opt out."
    options:
      - {value: mon, label: Monday club}
      - {value: thu, label: Thursday club}
      - {value: fri, label: Friday club}
  - id: tea
    type: yesno
    ask: "Was the tea worth 4.41? Reply YES or NO."
  - id: better
    type: text
    ask: What could we do better?
    optional: true
  - id: name
    type: text
    ask: Who helped you most?
outro: "Thank you, goodbye!"
"""

FIXED = """
id: fixed
title: Our opening hours
intro: "We open at 9 a.m. on Mondays, e.g. for tea at 4.41 a cup. Reply STOP to opt out."
questions:
  - id: early
    type: yesno
    ask: Is that early enough?
outro: Thank you.
"""

PANEL = {"participants": [{"name": "Ann Jones", "phone": "07700 900123", "tags": ["p"]}]}


def calling(database, redis_url, twilio_fake, tmp_path, **extra: str):
    folder = tmp_path / "conversations"
    folder.mkdir(exist_ok=True)
    (folder / "chat.yaml").write_text(CHAT, encoding="utf-8")
    (folder / "fixed.yaml").write_text(FIXED, encoding="utf-8")
    env = app_env(
        database.url,
        redis_url,
        twilio_fake.url,
        tmp_path,
        CONVERSATIONS_DIR=str(folder),
        INBOUND_CALL_SURVEY="chat",
        **extra,
    )
    current = load_settings(env)
    runtime.configure(current)
    from webhooks import create_app

    return create_app({"SETTINGS": current, "TESTING": True}).test_client()


@pytest.fixture
def web(database, redis_conn, redis_url, twilio_fake, tmp_path):
    yield calling(database, redis_url, twilio_fake, tmp_path)
    runtime.configure(runtime.settings())


def at_why(web) -> Phone:
    """A caller at the optional text question "What could we do better?"."""
    call = Phone(web).dial().press("1").press("2").press("1")
    assert "What could we do better?" in call.said
    return call


def first_call(web, redis_conn, twilio_fake, survey: str) -> Phone:
    """The campaign call to Ann for `survey`, answered by her."""
    assert web.post("/admin/api/participants", json=PANEL, headers=ADMIN).status_code == 200
    created = web.post(
        "/admin/api/campaigns",
        json={"survey": survey, "audience": {"tags": ["p"]}, "channel": "voice"},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.json
    launched = web.post(f"/admin/api/campaigns/{created.json['id']}/launch", headers=ADMIN)
    assert launched.status_code == 202
    run_worker(redis_conn)
    (placed,) = twilio_fake.calls
    call = Phone(web, direction="outbound-api", sid=placed["sid"], AnsweredBy="human")
    call.post(placed["url"])
    return call


# --- a question answered in words ---------------------------------------------------------


def test_a_text_question_waits_as_long_as_any_other_for_star_or_0_and_says_so(web):
    call = at_why(web)
    keys = call.gather()
    # The keys' wait before the tone: the same 10 seconds as every question, not 2.
    assert (keys.get("timeout"), keys.get("numDigits"), keys.get("input")) == ("10", "1", "dtmf")
    assert call.root.find("Record").get("timeout") == "10"
    said = call.words()
    assert said[-4:] == [
        "To skip this question, press 0.",
        "To hear this again, press star.",
        "Or wait 10 seconds for the tone, then say your answer.",
        "When you have finished, press hash.",
    ]
    call.press("*")
    assert "What could we do better?" in call.said
    call.press("0")
    assert "Who helped you most?" in call.said


def test_the_wait_follows_voice_wait_seconds(
    database, redis_conn, redis_url, twilio_fake, tmp_path
):
    slow = calling(database, redis_url, twilio_fake, tmp_path, VOICE_WAIT_SECONDS="20")
    call = at_why(slow)
    assert call.gather().get("timeout") == "20"
    assert "Or wait 20 seconds for the tone, then say your answer." in call.words()
    runtime.configure(runtime.settings())


def test_hash_alone_at_a_text_question_counts_as_silence_twice_then_moves_on(web, database):
    call = at_why(web)
    call.press("#")
    assert call.said.startswith("Sorry, we did not hear an answer. What could we do better?")
    assert "any words" not in call.said
    call.press("#")
    assert call.said.startswith("Sorry, we did not hear an answer.")
    call.press("#")  # the third: an optional question is skipped, as after silence
    assert "Who helped you most?" in call.said
    assert answers(database)[-1] == ("better", None, True)


def test_hash_alone_at_a_question_that_needs_an_answer_ends_kindly_after_two(web, database):
    call = at_why(web).press("0")
    for _ in range(2):
        call.press("#")
        assert call.said.startswith("Sorry, we did not hear an answer. Who helped you most?")
    call.press("#")
    assert call.ended and "We have kept your answers so far." in call.said
    assert [a[0] for a in answers(database)] == ["club", "tea", "better"]


def test_silence_and_hash_are_counted_together(web):
    call = at_why(web)
    call.wait()
    assert call.said.startswith("Sorry, we did not hear anything.")
    call.press("#")
    assert call.said.startswith("Sorry, we did not hear an answer.")
    call.wait()
    assert "Who helped you most?" in call.said


def test_hash_alone_at_a_choice_is_no_answer_and_is_counted(web, database):
    call = Phone(web).dial().press("1")
    call.press("#")
    assert call.said.startswith("Sorry, we did not hear an answer. Which club do you go to?")
    call.press("#")
    call.press("#")
    assert call.ended and answers(database) == []


# --- words for the ear ----------------------------------------------------------------------


def test_text_only_sentences_in_a_questions_own_words_are_not_read_out(web):
    call = Phone(web).dial().press("1")
    said = call.words()
    assert said[0] == "Which club do you go to?"
    assert "STOP" not in call.said and "Reply" not in call.said
    call.press("1")
    assert call.words()[0] == "Was the tea worth 4.41?"
    assert "YES or NO" not in call.said and "For Yes, press 1." in call.said


def test_a_question_made_only_of_an_instruction_is_still_heard():
    question = "Reply YES if you would like a call back."
    assert render.spoken(question) == ""
    assert render.spoken_question(question) == question


@pytest.mark.parametrize(
    ("written", "heard"),
    [
        ("It costs 4.41. Reply STOP to opt out.", "It costs 4.41."),
        ("Any food, e.g. soup? Text YES or NO.", "Any food, e.g. soup?"),
        ("We meet at 9 a.m. on Monday. Is that OK?", "We meet at 9 a.m. on Monday. Is that OK?"),
        ("We open at 9 a.m. Reply STOP to opt out.", "We open at 9 a.m."),
        ("Dr. Jones asks: how was it? Send 1, 2 or 3.", "Dr. Jones asks: how was it?"),
        ("Ask J. Smith, i.e. our driver.", "Ask J. Smith, i.e. our driver."),
        ("Tea, cake etc. are free!", "Tea, cake etc. are free!"),
        ("Would you like us to send you a leaflet?", "Would you like us to send you a leaflet?"),
        ("What could we do better? Send us your thoughts.", None),
        ("Please reply with a number.", ""),
        ('Reply "yes" to agree.', ""),
    ],
)
def test_sentences_are_split_only_where_they_end(written, heard):
    assert render.spoken(written) == (written if heard is None else heard)


def test_decimals_and_abbreviations_are_spoken_whole(web, redis_conn, twilio_fake):
    call = first_call(web, redis_conn, twilio_fake, "fixed")
    assert "We open at 9 a.m. on Mondays, e.g. for tea at 4.41 a cup." in call.words()
    assert not re.search(r"\b4\. 41|e\. g\.|a\. m\.", call.said)
    assert "STOP" not in call.said


def test_a_first_call_for_a_survey_with_no_intro_says_what_it_is_not_welcome_back(
    web, redis_conn, twilio_fake
):
    call = first_call(web, redis_conn, twilio_fake, "chat")
    assert call.said.startswith("Hello, this is a call from Age Better.")
    assert "We are asking people about this: Our lunch club." in call.words()
    assert "Welcome back" not in call.said and "left off" not in call.said
    call.press("1").press("1")
    # Part-way, the next call does welcome them back.
    again = Phone(web).dial()
    assert "Welcome back." in again.words() and "We will carry on where you left off." in again.said


# --- one goodbye, named keys, one voice -----------------------------------------------------


def test_an_outro_that_says_goodbye_is_not_followed_by_another(web):
    call = at_why(web).press("0")
    call.record(seconds=5)
    assert call.ended
    assert call.said == "Thank you, goodbye!"


def test_with_a_contact_phone_the_way_to_a_person_comes_before_the_goodbye(
    database, redis_conn, redis_url, twilio_fake, tmp_path
):
    web = calling(database, redis_url, twilio_fake, tmp_path, CONTACT_PHONE="0161 496 0000")
    call = at_why(web).press("0").record(seconds=5)
    assert call.words() == [
        "To speak to a person, call 0 1 6 1, 4 9 6, 0 0 0 0.",
        "Thank you, goodbye!",
    ]
    runtime.configure(runtime.settings())


def test_a_key_with_no_option_is_named(web, database):
    call = Phone(web).dial().press("1")
    call.press("7")
    said = "Sorry, there is no option 7. Press a number from 1 to 3. Which club do you go to?"
    assert call.said.startswith(said)
    assert answers(database) == []
    call.press("2").press("3")  # yes or no: 1 or 2
    assert call.said.startswith("Sorry, there is no option 3. Was the tea worth 4.41?")
    call.press("9")  # a second miss: their key is kept for staff, and we move on
    assert "Thank you, we have noted that." in call.said and "What could we do better?" in call.said


def test_the_call_speaks_as_we_never_i():
    with (i18n.LOCALE_DIR / "messages.pot").open("rb") as f:
        ids = [str(m.id) for m in read_po(f) if m.id]
    assert not [msgid for msgid in ids if re.search(r"\bI\b|\bI'|\bme\b|\bmy\b", msgid)]
    assert "We heard {label}." in ids and "Sorry, we did not hear anything." in ids


def test_welsh_call_sentences_speak_as_we():
    assert i18n.t("cy", render.SILENCE) == "Mae'n ddrwg gennym, chlywsom ni ddim byd."
    assert i18n.t("cy", "We heard {label}.", label="Ie") == "Clywsom Ie."
    assert i18n.t("cy", render.NO_SUCH_OPTION, key=7).endswith("does dim dewis 7.")
