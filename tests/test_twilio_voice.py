"""Keypad calls driven as Twilio drives them: signed requests with real call parameters, each
`<Gather>`'s `action` (or `<Redirect>` on silence) followed from the TwiML we returned, and
calls placed against the local fake REST API."""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from bot.channels.voice import render
from bot.commands import runtime
from bot.config import load_settings
from bot.storage.models import (
    Answer,
    ConsentEvent,
    ContactPoint,
    Conversation,
    Invitation,
    Message,
    Participant,
)
from tests import people
from tests.conftest import ADMIN, PUBLIC, app_env, run_worker
from tests.fakes import call_params, call_status_params, post_twilio, sign, sms_params
from tests.readings import BEFORE, STORED, WORDINGS, conversations_with_readings

NUMBER = "+447700900123"
VOICE = "/webhooks/twilio/voice"
TEXT_ANSWERS = [
    ("title", "your-health", False),
    ("why", None, True),
    ("useful", "5", False),
    ("recontact", "yes", False),
]


@pytest.fixture
def voice_settings(database, redis_conn, redis_url, twilio_fake, tmp_path):
    current = load_settings(
        app_env(
            database.url, redis_url, twilio_fake.url, tmp_path, INBOUND_CALL_SURVEY="guide-title"
        )
    )
    runtime.configure(current)
    yield current
    runtime.configure(current)


@pytest.fixture
def voice_library(voice_settings):
    return runtime.library()


@pytest.fixture
def phone_app(voice_settings):
    from webhooks import create_app

    return create_app({"SETTINGS": voice_settings, "TESTING": True})


@pytest.fixture
def web(phone_app):
    return phone_app.test_client()


class Phone:
    """One call, as Twilio makes it: it posts to the URL the last TwiML points at."""

    def __init__(self, client, number=NUMBER, direction="inbound", sid=None, **extra):
        self.client = client
        self.sid = sid or "CA" + uuid.uuid4().hex
        self.number = number
        self.direction = direction
        self.extra = extra
        self.root: ET.Element | None = None
        self.history: list[str] = []

    def post(self, url: str, **params: str) -> ET.Element:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        form = call_params(self.sid, self.number, self.direction, **{**self.extra, **params})
        response = post_twilio(self.client, PUBLIC, path, form)
        assert response.status_code == 200, response.data
        assert response.mimetype == "application/xml"
        self.root = ET.fromstring(response.data)
        self.history.append(" ".join(self.words()))
        return self.root

    def dial(self, query: str = "") -> Phone:
        self.post(PUBLIC + VOICE + query)
        return self

    # --- what was said, and where it goes next -------------------------------------------
    def words(self) -> list[str]:
        assert self.root is not None
        return ["".join(say.itertext()).strip() for say in self.root.iter("Say")]

    @property
    def said(self) -> str:
        return " ".join(self.words())

    @property
    def ended(self) -> bool:
        assert self.root is not None
        return self.root.find("Hangup") is not None

    def gather(self) -> ET.Element:
        assert self.root is not None
        found = self.root.find("Gather")
        assert found is not None, self.said
        return found

    def redirect(self) -> str:
        assert self.root is not None
        found = self.root.find("Redirect")
        assert found is not None, self.said
        return found.text or ""

    # --- what the caller does ---------------------------------------------------------
    def press(self, digits: str) -> Phone:
        self.post(self.gather().get("action"), Digits=digits)
        return self

    def speak(self, words: str, confidence: str = "0.92") -> Phone:
        self.post(self.gather().get("action"), SpeechResult=words, Confidence=confidence)
        return self

    def wait(self) -> Phone:
        """Silence: Twilio falls through the Gather to the Redirect."""
        self.post(self.redirect())
        return self

    def record(self, seconds: int = 7) -> Phone:
        assert self.root is not None
        record = self.root.find("Record")
        assert record is not None, self.said
        self.post(
            record.get("action"),
            RecordingUrl=f"https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE{uuid.uuid4().hex}",
            RecordingDuration=str(seconds),
            RecordingSid="RE" + uuid.uuid4().hex,
            Digits="#",
        )
        return self


def answers(database):
    with database.session() as session:
        rows = session.scalars(select(Answer).order_by(Answer.id)).all()
        return [(a.question_id, a.value, a.skipped) for a in rows]


def the_person(database) -> Participant:
    with database.session() as session:
        query = select(Participant).options(selectinload(Participant.contact_points))
        return session.scalars(query).one()


def begin_inbound(web) -> Phone:
    call = Phone(web).dial()
    assert "Thank you for calling" in call.said and "To begin, press 1." in call.said
    call.press("1")
    assert "Which title do you like best?" in call.said
    return call


# --- a whole survey -----------------------------------------------------------------------


def test_an_unknown_caller_is_offered_the_inbound_survey_and_completes_it_by_keys(web, database):
    call = Phone(web).dial()
    assert call.said.startswith("Hello, this is Age Better. Thank you for calling.")
    assert "Choose a title for our new guide" in call.said
    gather = call.gather()
    assert gather.get("timeout") == "10" and gather.get("language") == "en-GB"
    call.press("1")
    # The intro's "Reply STOP to opt out." is never spoken, in part or whole.
    assert "Reply" not in call.said and "STOP" not in call.said
    said = call.words()
    assert said.index("Which title do you like best?") < said.index(
        "For Living well with long-term health conditions, press 1."
    )
    gather = call.gather()
    assert (gather.get("numDigits"), gather.get("input")) == ("1", "dtmf speech")
    assert "Your health, your way" in gather.get("hints")
    call.press("2")
    assert (
        "What made you choose it?" in call.said and "To skip this question, press 0." in call.said
    )
    call.press("0")
    assert "How useful would this guide be to you?" in call.said
    call.press("5")
    call.press("1")
    assert call.said.startswith("Thank you. We will tell you what we decide.") and call.ended
    assert answers(database) == TEXT_ANSWERS
    person = the_person(database)
    assert (people.phone(person), person.recontact) == (NUMBER, True)


def test_a_whole_survey_by_speech_with_a_recorded_text_answer(web, database):
    call = begin_inbound(web)
    call.speak("the second one")
    assert "Or wait 10 seconds for the tone, then say your answer." in call.said
    call.record(seconds=9)
    assert "How useful" in call.said
    call.speak("five")
    call.speak("yes please")
    assert call.ended
    with database.session() as session:
        rows = session.scalars(select(Answer).order_by(Answer.id)).all()
        assert (rows[0].question_id, rows[0].value) == ("title", "your-health")
        why = rows[1]
        assert why.question_id == "why" and why.value.startswith(
            "Spoken answer, 9 seconds: https://"
        )
        assert why.raw_text == why.value and not why.unparsed
        assert [(a.question_id, a.value) for a in rows][2:] == [
            ("useful", "5"),
            ("recontact", "yes"),
        ]


def test_erasure_deletes_the_persons_recordings_at_twilio(web, database, redis_conn, twilio_fake):
    call = begin_inbound(web)
    call.press("1")
    call.record(seconds=4)
    with database.session() as session:
        why = session.scalars(select(Answer).where(Answer.question_id == "why")).one()
        recording = why.raw_text.rsplit("/", 1)[1]
    erased = web.delete(f"/admin/api/participants/{the_person(database).id}", headers=ADMIN)
    assert erased.status_code == 200 and erased.json["recordings"] == 1
    run_worker(redis_conn)
    deleted = [r["path"] for r in twilio_fake.requests if r["method"] == "DELETE"]
    assert len(deleted) == 1 and f"/Recordings/{recording}.json" in deleted[0]


def test_a_transcription_replaces_the_words_and_keeps_the_recording(web, database):
    call = begin_inbound(web)
    call.press("1")
    call.record(seconds=4)
    with database.session() as session:
        why = session.scalars(select(Answer).where(Answer.question_id == "why")).one()
        url = why.raw_text.split(": ", 1)[1]
    params = {
        "TranscriptionText": "It sounds hopeful",
        "TranscriptionStatus": "completed",
        "RecordingUrl": url,
        "CallSid": call.sid,
        "AccountSid": "AC",
    }
    path = f"{VOICE}/transcription?q=why"
    assert post_twilio(web, PUBLIC, path, params).status_code == 204
    with database.session() as session:
        why = session.scalars(select(Answer).where(Answer.question_id == "why")).one()
        assert (why.value, why.label) == ("It sounds hopeful", "It sounds hopeful")
        assert url in why.raw_text


def test_low_confidence_speech_is_confirmed_before_it_is_kept(web, database):
    call = begin_inbound(web)
    call.speak("managing", confidence="0.31")
    assert "We heard Managing your health day to day." in call.said
    assert "Press 1 if that is right." in call.said
    assert answers(database) == []
    call.press("2")
    assert "Which title do you like best?" in call.said and answers(database) == []
    call.speak("managing", confidence="0.2")
    assert "said=managing" in call.gather().get("action")  # the value, not the words
    call.press("1")
    assert "What made you choose it?" in call.said
    assert answers(database) == [("title", "managing", False)]


# --- repeat, skip, silence, wrong keys ---------------------------------------------------


def test_star_repeats_at_a_question_and_at_the_opening_without_storing(web, database):
    call = Phone(web).dial()
    call.press("*")
    assert "To begin, press 1." in call.said
    call.press("1")
    call.press("*")
    assert "Which title do you like best?" in call.said
    assert answers(database) == []
    call.press("3")
    assert answers(database) == [("title", "managing", False)]


def test_silence_is_asked_again_twice_then_kept_and_goodbye(web, database):
    call = begin_inbound(web)
    call.wait()
    assert call.said.startswith("Sorry, we did not hear anything.") and "Which title" in call.said
    call.wait()
    assert call.said.startswith("Sorry, we did not hear anything.")
    call.wait()
    assert call.ended and "We have kept your answers so far." in call.said
    with database.session() as session:
        conv = session.scalars(select(Conversation)).one()
        assert (conv.status, conv.state["question_id"]) == ("active", "title")


def test_silence_at_an_optional_question_moves_on(web, database):
    call = begin_inbound(web)
    call.press("1")
    for _ in range(3):
        call.wait()
    assert "How useful" in call.said
    assert answers(database) == [("title", "living-well", False), ("why", None, True)]


def test_a_wrong_key_says_what_is_expected_then_the_second_is_kept_and_we_move_on(web, database):
    call = begin_inbound(web)
    call.press("7")
    said = "Sorry, there is no option 7. Press a number from 1 to 3. Which title do you like best?"
    assert call.said.startswith(said)
    assert answers(database) == []
    call.press("8")
    assert "Thank you, we have noted that." in call.said and "How useful" not in call.said
    with database.session() as session:
        kept = session.scalars(select(Answer)).one()
        assert (kept.question_id, kept.raw_text, kept.unparsed) == ("title", "8", True)


# --- idempotency, dropped calls, channels --------------------------------------------------


def test_the_same_keys_delivered_twice_store_one_answer_and_say_the_same_next_prompt(web, database):
    call = begin_inbound(web)
    action = call.gather().get("action")
    first = ET.tostring(call.post(action, Digits="2"))
    again = ET.tostring(call.post(action, Digits="2"))
    assert first == again and b"What made you choose it?" in again
    assert answers(database) == [("title", "your-health", False)]
    with database.session() as session:
        ids = session.scalars(select(Message.provider_id).where(Message.direction == "in")).all()
        assert len(ids) == len(set(ids)) and f"{call.sid}:2" in ids


def test_a_dropped_call_keeps_its_answers_and_the_next_call_resumes(web, database):
    call = begin_inbound(web)
    call.press("2")
    # The line drops. They ring back:
    again = Phone(web).dial()
    assert "Welcome back." in again.said and "We will carry on where you left off." in again.said
    assert "press 9" in again.said
    again.press("1")
    assert "What made you choose it?" in again.said
    again.press("0").press("5").press("1")
    assert answers(database) == TEXT_ANSWERS


def test_silence_at_the_opening_simply_begins(web, database):
    begin_inbound(web).press("2")
    again = Phone(web).dial()
    again.wait()
    assert "What made you choose it?" in again.said


def test_switching_between_text_and_call_mid_survey(web, database):
    call = begin_inbound(web)
    call.press("2")
    reply = post_twilio(web, PUBLIC, "/webhooks/twilio/sms", sms_params("skip", sender=NUMBER))
    assert b"How useful" in reply.data
    # The call still waiting at "why" is not applied to "useful": the current one is asked.
    call.press("0")
    assert "How useful" in call.said
    assert answers(database) == [("title", "your-health", False), ("why", None, True)]
    Phone(web).dial().press("1").press("5")
    post_twilio(web, PUBLIC, "/webhooks/twilio/sms", sms_params("yes", sender=NUMBER))
    assert answers(database) == TEXT_ANSWERS


# --- stopping ------------------------------------------------------------------------------


def test_an_accidental_hash_never_stops(web, database):
    call = begin_inbound(web)
    call.press("#")
    assert "Which title do you like best?" in call.said and not call.ended
    assert the_person(database).opted_out is False


def test_stop_is_offered_once_confirmed_and_recorded_for_every_channel(web, database):
    begin_inbound(web).press("2")
    call = Phone(web).dial()
    assert call.said.count("press 9") == 1
    call.press("9")
    assert call.said == "Press 1 to stop all contact. Press 2 to carry on."
    call.press("1")
    assert call.ended and "We will not contact you again." in call.said
    person = the_person(database)
    assert person.opted_out
    with database.session() as session:
        events = session.scalars(select(ConsentEvent)).all()
        assert [(e.kind, e.how) for e in events] == [("opt_out", "voice")]
        assert session.scalars(select(Conversation)).one().status == "stopped"
    # Texts are stopped too, as after STOP by text.
    reply = post_twilio(web, PUBLIC, "/webhooks/twilio/sms", sms_params("2", sender=NUMBER))
    assert b"You asked us not to contact you" in reply.data
    # The next call asks nothing.
    assert "we have no questions for you" in Phone(web).dial().said


def test_stop_not_confirmed_carries_on(web, database):
    begin_inbound(web)
    call = Phone(web).dial()
    call.press("9")
    call.press("2")
    assert "We will carry on." in call.said and "Which title" in call.said
    call2 = Phone(web).dial().press("9")
    call2.wait()  # silence at the confirmation carries on, too
    assert "Which title" in call2.said
    assert the_person(database).opted_out is False


def test_a_stop_confirmation_delivered_twice_is_logged_once(web, database):
    begin_inbound(web)
    call = Phone(web).dial().press("9")
    action = call.gather().get("action")
    call.post(action, Digits="1")
    call.post(action, Digits="1")
    assert "We will not contact you again." in call.said
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(ConsentEvent)) == 1


def test_forged_or_tampered_call_requests_get_403_and_store_nothing(web, database):
    params = call_params("CAforged", NUMBER)
    assert web.post(VOICE, data=params).status_code == 403
    assert post_twilio(web, PUBLIC, VOICE, params, token="someone-elses").status_code == 403
    good = sign(PUBLIC + f"{VOICE}/answer?s=2&q=title", dict(params, Digits="1"))
    tampered = web.post(
        f"{VOICE}/answer?s=2&q=why",
        data=dict(params, Digits="1"),
        headers={"X-Twilio-Signature": good},
    )
    assert tampered.status_code == 403
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 0
        assert session.scalar(select(func.count()).select_from(Participant)) == 0


# --- calls we place ------------------------------------------------------------------------

PANEL = {
    "participants": [
        {"name": "Ann Jones", "phone": "07700 900123", "external_id": "A", "tags": ["p"]},
    ]
}


def launch_by_call(web, redis_conn) -> int:
    assert web.post("/admin/api/participants", json=PANEL, headers=ADMIN).status_code == 200
    created = web.post(
        "/admin/api/campaigns",
        json={"survey": "guide-title", "audience": {"tags": ["p"]}, "channel": "voice"},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.json
    campaign_id = created.json["id"]
    assert web.post(f"/admin/api/campaigns/{campaign_id}/launch", headers=ADMIN).status_code == 202
    run_worker(redis_conn)
    return campaign_id


def test_a_campaign_call_is_placed_once_and_the_answered_call_runs_the_survey(
    web, database, redis_conn, twilio_fake
):
    launch_by_call(web, redis_conn)
    (placed,) = twilio_fake.calls
    assert placed["to"] == NUMBER and placed["machine_detection"] == "DetectMessageEnd"
    assert placed["url"].startswith(PUBLIC + VOICE + "?m=")
    assert placed["status_callback"].startswith(PUBLIC + "/webhooks/twilio/status?m=")
    run_worker(redis_conn)  # at most once: nothing is placed again
    assert len(twilio_fake.calls) == 1
    call = Phone(web, direction="outbound-api", sid=placed["sid"], AnsweredBy="human")
    call.post(placed["url"])
    assert call.said.startswith("Hello, this is a call from Age Better. Hello Ann.")
    assert "STOP" not in call.said and "press 9" in call.said
    call.press("1").press("2").press("0").press("5").press("1")
    assert call.ended and answers(database) == TEXT_ANSWERS
    status = post_twilio(
        web,
        PUBLIC,
        urlsplit(placed["status_callback"]).path + "?" + urlsplit(placed["status_callback"]).query,
        call_status_params(placed["sid"], "completed"),
    )
    assert status.status_code == 204
    with database.session() as session:
        sent = session.scalars(select(Message).where(Message.kind == "invitation")).one()
        assert (sent.status, sent.provider_id) == ("delivered", placed["sid"])


def test_a_machine_hears_who_called_and_never_the_survey(web, database, redis_conn, twilio_fake):
    launch_by_call(web, redis_conn)
    (placed,) = twilio_fake.calls
    call = Phone(web, direction="outbound-api", sid=placed["sid"], AnsweredBy="machine_end_beep")
    call.post(placed["url"])
    assert call.ended and call.root.find("Gather") is None
    assert "This is" not in call.said and "Which title" not in call.said
    assert "call us back on 0 1 2 3 4 5 6 7 8 9 0" in call.said
    assert answers(database) == []


def status_of(web, placed, status):
    parts = urlsplit(placed["status_callback"])
    return post_twilio(
        web, PUBLIC, f"{parts.path}?{parts.query}", call_status_params(placed["sid"], status)
    )


def test_no_answer_is_called_again_on_the_schedule_then_counted_as_not_reached(
    web, database, redis_conn, twilio_fake, voice_settings
):
    campaign_id = launch_by_call(web, redis_conn)
    schedule = [timedelta(minutes=15), timedelta(hours=1), timedelta(days=1)]
    for attempt, delay in enumerate(schedule, start=1):
        placed = twilio_fake.calls[-1]
        assert status_of(web, placed, "ringing").status_code == 204
        assert status_of(web, placed, "no-answer").status_code == 204
        assert status_of(web, placed, "no-answer").status_code == 204  # delivered twice
        with database.session() as session:
            rows = session.scalars(
                select(Message).where(Message.kind == "invitation").order_by(Message.id)
            ).all()
            assert [m.status for m in rows] == ["cancelled"] * attempt + ["pending"]
            retry = rows[-1]
            waited = retry.send_after - rows[-2].updated_at
            assert abs(waited - delay) < timedelta(seconds=5)
            invitation = session.scalars(select(Invitation)).one()
            assert invitation.message_id == retry.id
            # Due now, as if the wait had passed:
            retry.send_after = None
        from bot.commands.jobs import send_messages

        send_messages([retry.id])
        assert len(twilio_fake.calls) == attempt + 1
    status_of(web, twilio_fake.calls[-1], "busy")
    with database.session() as session:
        last = session.scalars(select(Message).order_by(Message.id.desc())).first()
        assert last.status == "undelivered" and last.error_message.startswith(
            "not reached after 4 calls"
        )
    counts = web.get(f"/admin/api/campaigns/{campaign_id}", headers=ADMIN).json["counts"]
    assert counts["failed"] == 1


def test_a_call_again_is_cancelled_when_they_stop_meanwhile(web, database, redis_conn, twilio_fake):
    launch_by_call(web, redis_conn)
    status_of(web, twilio_fake.calls[-1], "no-answer")
    # They stop by text before the next call is due.
    post_twilio(web, PUBLIC, "/webhooks/twilio/sms", sms_params("STOP", sender=NUMBER))
    with database.session() as session:
        first, again = session.scalars(
            select(Message).where(Message.kind == "invitation").order_by(Message.id)
        ).all()
        assert first.error_message.startswith("no-answer: called again as message")
        assert (again.status, again.error_message) == ("cancelled", "opted out")
    from bot.commands.jobs import send_messages

    assert send_messages([again.id]) == {again.id: "already cancelled"}
    assert len(twilio_fake.calls) == 1


def test_feedback_by_call_is_read_slowly_and_star_hears_it_again(
    web, database, redis_conn, twilio_fake
):
    launch_by_call(web, redis_conn)
    placed = twilio_fake.calls[-1]
    call = Phone(web, direction="outbound-api", sid=placed["sid"], AnsweredBy="human")
    call.post(placed["url"])
    call.press("1").press("1").press("0").press("4").press("1")
    with database.session() as session:
        campaign_id = session.scalars(select(Invitation.campaign_id)).one()
    sent = web.post(
        f"/admin/api/campaigns/{campaign_id}/feedback",
        json={
            "message": "Hello {{ name }}. You chose {{ answers.title }}. Reply STOP at any time.",
            "outcomes": {},
        },
        headers=ADMIN,
    )
    assert sent.status_code == 202, sent.json
    run_worker(redis_conn)
    feedback_call = twilio_fake.calls[-1]
    assert feedback_call["sid"] != placed["sid"]
    listener = Phone(web, direction="outbound-api", sid=feedback_call["sid"], AnsweredBy="human")
    listener.post(feedback_call["url"])
    message = "Hello Ann. You chose Living well with long-term health conditions."
    assert message in listener.said and "STOP" not in listener.said
    assert "To hear this message again, press star." in listener.said
    assert listener.root.find(".//prosody").get("rate") == "80%"
    listener.press("*")
    assert message in listener.said
    listener.press("1")
    assert listener.ended and "Thank you for listening." in listener.said


# --- every survey, by keys and by speech, as by text ---------------------------------------

SURVEYS = sorted(
    p.stem
    for p in (Path(__file__).resolve().parent.parent / "conversations").glob("*.yaml")
    if not p.stem.endswith(".feedback")
)
WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 0: "zero", 10: "ten"}


def current_question(database, phone):
    with database.session() as session:
        person = people.at(session, "phone", phone)
        conv = session.scalars(
            select(Conversation).where(Conversation.participant_id == person.id)
        ).one()
        if conv.status != "active":
            return None
        from bot.conversations import survey_for

        return survey_for(session, conv.survey_version_id).question(conv.state["question_id"])


def answers_of(database, phone):
    with database.session() as session:
        rows = session.execute(
            select(Answer)
            .join(ContactPoint, ContactPoint.participant_id == Answer.participant_id)
            .where(ContactPoint.channel == "voice", ContactPoint.address == phone)
            .order_by(Answer.id)
        ).scalars()
        return [
            (
                a.question_id,
                None if a.value and a.value.startswith("Spoken") else a.label,
                a.skipped,
                a.unparsed,
            )
            for a in rows
        ]


def by_text(q):
    if q.type in ("choice", "yesno", "multi"):
        return "yes" if q.type == "yesno" else "1"
    if q.type == "date":
        return "03041948"  # as keys; typed, 3/4/1948 is the same day
    if q.type in ("scale", "number"):
        return str(int(q.min if q.min is not None else 1))
    return "Some words"


@pytest.mark.parametrize("survey_id", SURVEYS)
def test_every_survey_by_keys_outbound_and_by_speech_inbound_as_by_text(
    survey_id, web, database, redis_conn, twilio_fake, voice_library
):
    survey = voice_library.get(survey_id)
    texter, keys, speaker = "+447700900201", "+447700900202", "+447700900203"
    sms = "/webhooks/twilio/sms"
    post_twilio(web, PUBLIC, sms, sms_params(survey.keyword, sender=texter))
    while (q := current_question(database, texter)) is not None:
        post_twilio(web, PUBLIC, sms, sms_params(by_text(q), sender=texter))
    expected = [
        (qid, None if qid in {q.id for q in survey.questions if q.type == "text"} else label, s, u)
        for qid, label, s, u in answers_of(database, texter)
    ]
    assert expected and not any(u for *_, u in expected)

    # By keys, on a call we place for a campaign.
    panel = {"participants": [{"name": "Kay", "phone": keys, "tags": ["k"]}]}
    web.post("/admin/api/participants", json=panel, headers=ADMIN)
    campaign = web.post(
        "/admin/api/campaigns",
        json={"survey": survey_id, "audience": {"tags": ["k"]}, "channel": "voice"},
        headers=ADMIN,
    ).json["id"]
    web.post(f"/admin/api/campaigns/{campaign}/launch", headers=ADMIN)
    run_worker(redis_conn)
    placed = twilio_fake.calls[-1]
    call = Phone(web, keys, direction="outbound-api", sid=placed["sid"], AnsweredBy="human")
    call.post(placed["url"])
    call.press("1")
    while (q := current_question(database, keys)) is not None:
        if q.type == "text":
            call.record()
        else:
            pressed = by_text(q) if q.type != "yesno" else "1"
            call.press(pressed + ("#" if render.gather_for(q).finish_on_key == "#" else ""))
    assert call.ended
    assert answers_of(database, keys) == expected

    # By speech, calling in after the survey began by text.
    post_twilio(web, PUBLIC, sms, sms_params(survey.keyword, sender=speaker))
    call = Phone(web, speaker).dial()
    call.speak("begin")
    while (q := current_question(database, speaker)) is not None:
        if q.type == "text":
            call.record()
        elif q.type in ("choice", "multi"):
            call.speak(q.options[0].label)
        elif q.type == "date":
            call.speak("3rd April 1948")
        elif q.type == "yesno":
            call.speak("yes")
        else:
            call.speak(WORDS[int(q.min if q.min is not None else 1)])
    assert call.ended
    assert answers_of(database, speaker) == expected
    # Script words for texts are never spoken, whole or cut short ("Thank you. You can").
    heard = " ".join(call.history)
    assert "STOP" not in heard and "reply" not in heard.lower() and "You can." not in heard
    assert not re.search(r"You can\s*(Goodbye|$)", heard)


def test_a_call_whose_worker_died_mid_send_is_settled_not_placed_twice(
    web, database, redis_conn, twilio_fake
):
    from bot.commands import jobs
    from bot.conversations import outbox
    from bot.sending import send
    from bot.storage.models import utcnow

    web.post("/admin/api/participants", json=PANEL, headers=ADMIN)
    with database.session() as session:
        person = session.scalars(select(Participant)).one()
        message_id = outbox.add(session, person, "voice", "Hello.", "notice").id
    # Twilio places the call, but the worker dies before it records the answer.
    with database.session() as session:
        row = session.get(Message, message_id)
        row.status, row.claimed_at, row.attempts = "claimed", utcnow(), 1
    from bot.channels.voice.sender import call_sender

    placed = call_sender(runtime.settings()).send(
        send.Outgoing(message_id, NUMBER, "Hello.", "notice")
    )
    result = jobs.reconcile_outbox(now=utcnow() + send.CLAIM_TIMEOUT + timedelta(seconds=5))
    assert result["settled"] == 1 and len(twilio_fake.calls) == 1
    with database.session() as session:
        assert session.get(Message, message_id).provider_id == placed.sid


def test_a_call_again_waits_for_quiet_hours_to_end(
    web, database, redis_conn, twilio_fake, voice_settings
):
    from bot.config import parse_quiet_hours
    from bot.sending import send

    launch_by_call(web, redis_conn)
    status_of(web, twilio_fake.calls[-1], "no-answer")
    with database.session() as session:
        again = session.scalars(select(Message).where(Message.status == "pending")).one()
        again.send_after = None
    quiet = voice_settings.with_overrides(quiet_hours=parse_quiet_hours("00:00-23:59"))
    (outcome,) = send.send_batch(database, redis_conn, quiet, [again.id]).values()
    assert outcome.startswith("held until") and len(twilio_fake.calls) == 1


def test_a_reminder_call_resumes_where_they_stopped(web, database, redis_conn, twilio_fake):
    from bot.cycle import reminders

    campaign_id = launch_by_call(web, redis_conn)
    placed = twilio_fake.calls[-1]
    call = Phone(web, direction="outbound-api", sid=placed["sid"], AnsweredBy="human")
    call.post(placed["url"])
    call.press("1").press("2")  # then they hang up
    # Through the runtime's database, whose unit of work enqueues the send after commit.
    assert reminders.send_reminders(runtime.database(), runtime.settings(), campaign_id) == 1
    run_worker(redis_conn)
    reminder = twilio_fake.calls[-1]
    assert reminder["sid"] != placed["sid"]
    again = Phone(web, direction="outbound-api", sid=reminder["sid"], AnsweredBy="human")
    again.post(reminder["url"])
    assert "Welcome back." in again.said
    again.press("1")
    assert "What made you choose it?" in again.said


def test_saying_stop_at_a_question_is_confirmed_first(web, database):
    call = begin_inbound(web)
    call.speak("stop")
    assert call.said == "Press 1 to stop all contact. Press 2 to carry on."
    assert the_person(database).opted_out is False
    call.press("2")
    assert "Which title do you like best?" in call.said and answers(database) == []


@pytest.mark.parametrize("withheld", ["anonymous", "+266696687", "Restricted"])
def test_a_withheld_number_is_told_kindly_and_nothing_is_stored(web, database, withheld):
    call = Phone(web, number=withheld).dial()
    assert call.ended and "Your number is withheld" in call.said
    call.post(PUBLIC + VOICE + "/open?s=1&begin=1", Digits="1")
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Participant)) == 0
        assert session.scalar(select(func.count()).select_from(Message)) == 0


def test_a_call_in_welsh_for_a_welsh_speaker(web, database, redis_conn, twilio_fake):
    # Issue 13: the call's own words come from the catalogue too, not only the script's.
    panel = {
        "participants": [
            {"name": "Gwen", "phone": "+447700900209", "tags": ["w"], "language": "cy"}
        ]
    }
    web.post("/admin/api/participants", json=panel, headers=ADMIN)
    campaign = web.post(
        "/admin/api/campaigns",
        json={"survey": "hear-back", "audience": {"tags": ["w"]}, "channel": "voice"},
        headers=ADMIN,
    ).json["id"]
    web.post(f"/admin/api/campaigns/{campaign}/launch", headers=ADMIN)
    run_worker(redis_conn)
    placed = twilio_fake.calls[-1]
    call = Phone(
        web, "+447700900209", direction="outbound-api", sid=placed["sid"], AnsweredBy="human"
    )
    call.post(placed["url"])
    assert "Helo, galwad gan" in call.said and "I ddechrau, pwyswch 1." in call.said
    assert {e.get("voice") for e in call.root.iter("Say")} == {"Polly.Gwyneth"}
    call.press("1")
    assert "A gawn ni anfon neges fer atoch" in call.said and "Am Ie, pwyswch 1." in call.said
    call.press("2")  # na
    assert "Diolch. Hwyl fawr." in call.said or "Hwyl fawr." in call.said
    assert call.ended
    with database.session() as session:
        (answer,) = session.scalars(select(Answer)).all()
        assert (answer.value, answer.label, answer.language) == ("no", "No", "cy")


def test_a_key_press_handled_late_never_rings_the_person_back(
    web, database, redis_conn, twilio_fake, monkeypatch
):
    """Handling a press failed and a job applied it later: the answer is kept, but nobody is
    called back to hear the next question (perhaps at night); the next call resumes there."""
    from bot.commands import jobs
    from bot.conversations import inbox

    call = begin_inbound(web)
    working = inbox._decide
    monkeypatch.setattr(inbox, "_decide", lambda *a, **k: (_ for _ in ()).throw(RuntimeError()))
    call.press("2")
    monkeypatch.setattr(inbox, "_decide", working)
    with database.session() as session:
        waiting = session.scalars(select(Message.id).where(Message.status == "retrying")).all()
    assert len(waiting) == 1
    assert jobs.retry_inbound(waiting[0])["processed"] == 1
    run_worker(redis_conn)
    assert twilio_fake.calls == []
    with database.session() as session:
        assert session.scalars(select(Answer.value)).all() == ["your-health"]
        assert (
            session.scalar(
                select(func.count(Message.id)).where(
                    Message.kind == "reply", Message.status == "pending"
                )
            )
            == 0
        )


# --- ringing us (QA round, 2026-11-26) ------------------------------------------------------


def test_a_caller_offered_the_inbound_survey_can_stop_calls_with_9(web, database):
    call = Phone(web).dial()
    assert call.said.count("press 9") == 1
    call.press("9")
    assert call.said == "Press 1 to stop all contact. Press 2 to carry on."
    call.press("1")
    assert call.ended and the_person(database).opted_out
    assert answers(database) == []


def test_someone_who_stopped_can_start_again_by_ringing_us(web, database):
    begin_inbound(web).press("2")
    stopping = Phone(web).dial()
    stopping.press("9").press("1")
    assert the_person(database).opted_out
    call = Phone(web).dial()
    assert "we have no questions for you" in call.said
    assert "If you would like to hear from us again, press 1." in call.said
    call.press("1")
    assert the_person(database).opted_out is False
    with database.session() as session:
        kinds = [e.kind for e in session.scalars(select(ConsentEvent).order_by(ConsentEvent.id))]
    assert kinds == ["opt_out", "opt_in"]
    # Hanging up or pressing anything else changes nothing.
    Phone(web).dial().press("9").press("1")
    again = Phone(web).dial()
    again.press("5")
    assert again.ended and the_person(database).opted_out


def test_silence_on_a_call_they_made_does_not_promise_a_call_back(web, database):
    call = begin_inbound(web)
    call.wait().wait().wait()
    assert call.ended and "We have kept your answers so far." in call.said
    assert "try again" not in call.said and "call us again at any time" in call.said


def test_after_starting_again_by_phone_the_same_call_goes_on(web, database):
    begin_inbound(web).press("2")
    Phone(web).dial().press("9").press("1")
    call = Phone(web).dial()
    call.press("1")  # hear from us again
    assert the_person(database).opted_out is False
    call.press("9").press("1")  # and, in the same call, stop after all
    assert call.ended and the_person(database).opted_out is True
    again = Phone(web).dial()
    again.press("1")
    again.press("1")  # start again, then begin the survey in the same call
    assert "Which title do you like best?" in again.said


def test_a_caller_who_chooses_not_to_stop_hears_the_menu_again(web, database):
    call = Phone(web).dial()
    call.press("9")
    call.press("2")
    assert not call.ended and "To begin, press 1." in call.said
    call.press("1")
    assert "Which title do you like best?" in call.said


def test_hearing_the_menu_again_after_starting_again_keeps_the_call_going(web, database):
    begin_inbound(web).press("2")
    Phone(web).dial().press("9").press("1")
    call = Phone(web).dial()
    call.press("1")  # hear from us again
    call.press("*")  # the menu again
    call.press("1")
    assert "Which title do you like best?" in call.said


# --- issue 20 ------------------------------------------------------------------------------

RATE = """
id: rate
title: Rate us
questions:
  - id: likely
    type: scale
    ask: How likely are you to recommend us?
    min: 0
    max: 10
    labels: {0: Not at all likely, 10: Extremely likely}
  - id: food
    type: scale
    ask: How was the food?
    min: 1
    max: 5
    labels: {1: Very good, 5: Very poor}
outro: Thank you.
"""


@pytest.fixture
def rate_call(database, redis_conn, redis_url, twilio_fake, tmp_path):
    from webhooks import create_app

    folder = tmp_path / "conversations"
    folder.mkdir()
    (folder / "rate.yaml").write_text(RATE, encoding="utf-8")
    env = app_env(
        database.url,
        redis_url,
        twilio_fake.url,
        tmp_path,
        INBOUND_CALL_SURVEY="rate",
        CONVERSATIONS_DIR=str(folder),
    )
    current = load_settings(env)
    runtime.configure(current)
    yield Phone(create_app({"SETTINGS": current, "TESTING": True}).test_client())
    runtime.configure(current)


def test_a_nought_to_ten_scale_goes_by_call_keyed_then_hash(rate_call, database):
    call = rate_call.dial().press("1")
    assert "Key in a number from 0 to 10, then press hash." in call.words()
    gather = call.gather()
    assert (gather.get("numDigits"), gather.get("finishOnKey")) == (None, "#")
    call.press("10")
    assert "How was the food?" in call.said
    assert answers(database) == [("likely", "10", False)]


def test_five_stars_said_on_a_scale_whose_one_is_best_is_asked_about_by_keys(rate_call, database):
    call = rate_call.dial().press("1").press("7")
    call.speak("five stars")
    assert call.said.startswith("Did you mean 1 (Very good)?")
    assert "For Yes, press 1." in call.said and answers(database) == [("likely", "7", False)]
    call.press("1")
    assert call.said.startswith("Thank you.")
    assert answers(database) == [("likely", "7", False), ("food", "1", False)]


# --- issue 20: replies read as meant, by speech -------------------------------------------


@pytest.fixture
def meant(database, redis_conn, redis_url, twilio_fake, tmp_path):
    from webhooks import create_app

    folder = conversations_with_readings(tmp_path / "conversations")
    env = app_env(
        database.url,
        redis_url,
        twilio_fake.url,
        tmp_path,
        INBOUND_CALL_SURVEY="readings",
        CONVERSATIONS_DIR=str(folder),
    )
    current = load_settings(env)
    runtime.configure(current)
    yield Phone(create_app({"SETTINGS": current, "TESTING": True}).test_client())
    runtime.configure(current)


def _said_at(call: Phone, question: str) -> Phone:
    call.dial().press("1")
    for answer in BEFORE[question]:
        call.speak(answer)
    return call


# A call says its retry without a text's "Please reply with ...": the range is said as keys.
SPOKEN = {"Please reply with a number from 1 to 3.": "Press a number from 1 to 3."}
# The text question is answered on a call by a recording after the tone, not by speech
# recognised into words, so no spoken reply is ever 359 characters long: left out.
SPOKEN_WORDINGS = [(q, said, words) for q, said, words in WORDINGS if q != "comments"]


@pytest.mark.parametrize(("question", "spoken", "said"), SPOKEN_WORDINGS)
def test_a_reply_that_could_mean_two_things_said_on_a_call_is_asked_about_never_stored(
    meant, database, question, spoken, said
):
    call = _said_at(meant, question)
    call.speak(spoken)
    assert SPOKEN.get(said, said) in call.said
    assert "catch" not in call.said
    assert all(value is None for q, value, _ in answers(database) if q == question)


@pytest.mark.parametrize(("question", "spoken", "value"), STORED)
def test_a_number_with_a_fraction_said_on_a_call_is_stored_as_meant(
    meant, database, question, spoken, value
):
    _said_at(meant, question).speak(spoken)
    assert (question, value, False) in answers(database)
