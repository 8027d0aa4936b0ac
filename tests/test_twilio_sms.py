import threading
import xml.etree.ElementTree as ET

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from werkzeug.serving import make_server

from bot.commands import runtime
from bot.config import load_settings
from bot.scripts.gsm import sms_size
from bot.storage.models import Answer, Conversation, Message, Participant
from tests import people
from tests.conftest import PUBLIC, app_env, run_worker
from tests.fakes import post_twilio, sign, sms_params
from tests.readings import BEFORE, STORED, WORDINGS, YES_OR_NO, conversations_with_readings

PATH = "/webhooks/twilio/sms"


def texts(response) -> list[str]:
    assert response.status_code == 200
    assert response.mimetype == "application/xml"
    return [m.text for m in ET.fromstring(response.data).findall("Message")]


def text(client, body, sid=None, sender="+447700900123"):
    return post_twilio(client, PUBLIC, PATH, sms_params(body, sid=sid, sender=sender))


def count(database, model):
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_keyword_starts_the_survey_for_a_new_number(client, database):
    (reply,) = texts(text(client, "Title", sender="07700 900123"))
    assert reply.startswith("Hello there. Could you help us choose a title")
    assert "Which title do you like best?" in reply
    with database.session() as session:
        person = session.scalars(select(Participant)).one()
        assert (people.phone(person), person.joined_via) == ("+447700900123", "keyword TITLE")
        rows = session.scalars(select(Message).order_by(Message.id)).all()
        assert [(m.direction, m.kind, m.status) for m in rows] == [
            ("in", "inbound", "processed"),
            ("out", "reply", "replied"),
        ]
        assert rows[1].in_reply_to_id == rows[0].id and rows[1].body == reply


def test_a_whole_survey_by_text(client, database):
    text(client, "TITLE")
    assert "What made you choose it?" in texts(text(client, "2"))[0]
    assert "How useful" in texts(text(client, "skip"))[0]
    texts(text(client, "5"))
    (last,) = texts(text(client, "Yes please"))
    assert last == "Thank you. We will tell you what we decide."
    with database.session() as session:
        answers = session.scalars(select(Answer).order_by(Answer.id)).all()
        assert [(a.question_id, a.value, a.skipped) for a in answers] == [
            ("title", "your-health", False),
            ("why", None, True),
            ("useful", "5", False),
            ("recontact", "yes", False),
        ]
        assert session.scalars(select(Participant)).one().recontact is True


def test_unknown_text_gets_who_we_are_and_what_to_reply(client):
    (reply,) = texts(text(client, "Hello, who is this?"))
    assert "This is Age Better" in reply and "STOP" in reply


def test_stop_is_confirmed_once(client, database):
    text(client, "TITLE")
    (confirm,) = texts(text(client, "Stop"))
    assert "You will not hear from Age Better again" in confirm
    assert texts(text(client, "STOP ")) == []
    with database.session() as session:
        person = session.scalars(select(Participant)).one()
        assert person.opted_out
        assert [e.kind for e in person.consent_events] == ["opt_out"]
    assert "Welcome back" in texts(text(client, "start"))[0]


def test_forged_unsigned_and_tampered_requests_get_403_and_store_nothing(client, database):
    params = sms_params("TITLE")
    assert client.post(PATH, data=params).status_code == 403
    assert (
        post_twilio(client, PUBLIC, PATH, params, signature="bm90IGEgc2lnbmF0dXJl").status_code
        == 403
    )
    assert post_twilio(client, PUBLIC, PATH, params, token="someone-elses-token").status_code == 403
    signed = sign(PUBLIC + PATH, params)
    tampered = dict(params, Body="STOP")
    assert (
        client.post(PATH, data=tampered, headers={"X-Twilio-Signature": signed}).status_code == 403
    )
    # Signed for another URL (the signature covers the query too).
    assert (
        client.post(PATH + "?x=1", data=params, headers={"X-Twilio-Signature": signed}).status_code
        == 403
    )
    assert count(database, Message) == 0 and count(database, Participant) == 0


def test_signature_uses_the_public_url_not_the_request_host(client):
    params = sms_params("hello")
    wrong = sign("http://localhost" + PATH, params)
    assert client.post(PATH, data=params, headers={"X-Twilio-Signature": wrong}).status_code == 403


def test_a_redelivered_message_changes_nothing_twice(client, database):
    text(client, "TITLE", sid="SM-first")
    first = texts(text(client, "1", sid="SM-answer"))
    again = texts(text(client, "1", sid="SM-answer"))
    assert first and again == []
    assert count(database, Answer) == 1


def test_same_message_sid_ten_times_at_once_gives_one_answer_and_one_reply(app, client, database):
    text(client, "TITLE")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    params = sms_params("2", sid="SM-concurrent")
    headers = {"X-Twilio-Signature": sign(PUBLIC + PATH, params)}
    url = f"http://127.0.0.1:{server.server_port}{PATH}"
    barrier = threading.Barrier(10)
    replies: list[list[str]] = []

    def deliver():
        barrier.wait()
        response = requests.post(url, data=params, headers=headers, timeout=30)
        replies.append(
            [m.text for m in ET.fromstring(response.content).findall("Message")]
            if response.status_code == 200
            else [f"HTTP {response.status_code}"]
        )

    workers = [threading.Thread(target=deliver) for _ in range(10)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    server.shutdown()
    assert len(replies) == 10
    answered = [r for r in replies if r]
    assert len(answered) == 1 and "What made you choose it?" in answered[0][0], replies
    assert count(database, Answer) == 1
    with database.session() as session:
        assert (
            session.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.provider_id == "SM-concurrent")
            )
            == 1
        )


def test_a_failure_while_handling_keeps_the_message_and_a_retry_answers_it(
    client, database, redis_conn, twilio_fake, monkeypatch
):
    from bot.commands import jobs
    from bot.conversations import inbox

    working = inbox._decide

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(inbox, "_decide", broken)
    assert texts(text(client, "TITLE", sid="SM-broken")) == []  # the retry will answer
    with database.session() as session:
        kept = session.scalars(select(Message)).one()
        assert (kept.body, kept.status, kept.provider_id) == ("TITLE", "retrying", "SM-broken")
        # Kept as theirs, so subject access shows it and erasure removes it.
        assert kept.participant_id == session.scalars(select(Participant.id)).one()
    # A redelivery while it waits changes nothing.
    assert texts(text(client, "TITLE", sid="SM-broken")) == []
    monkeypatch.setattr(inbox, "_decide", working)
    assert jobs.retry_inbound(kept.id) == {"processed": 1, "failed": 0, "waiting": 0}
    run_worker(redis_conn)
    (sent,) = twilio_fake.sends()
    assert "Which title do you like best?" in sent["Body"]
    with database.session() as session:
        assert session.get(Message, kept.id).status == "processed"
        assert session.scalars(select(Conversation)).one().status == "active"


def test_missing_fields_are_a_clear_400(client):
    params = {"Body": "hi", "AccountSid": "AC1"}
    response = post_twilio(client, PUBLIC, PATH, params)
    assert response.status_code == 400 and b"MessageSid and From are required" in response.data


def test_a_nul_character_is_dropped_and_the_text_kept(client, database):
    response = post_twilio(
        client, PUBLIC, "/webhooks/twilio/sms", sms_params("TI\x00TLE", sid="SMnul")
    )
    assert response.status_code == 200
    (reply,) = [m.text for m in ET.fromstring(response.data).findall("Message")]
    assert "Which title do you like best?" in reply
    with database.session() as session:
        kept = session.scalars(select(Message).where(Message.provider_id == "SMnul")).one()
        assert kept.body == "TITLE" and kept.status == "processed"


def test_replies_a_person_would_be_puzzled_by(client, database):
    """By text, end to end: the engine's answers reach the person through the webhook."""
    text(client, "TITLE")
    (confirm,) = texts(text(client, "Please stop texting me"))
    assert confirm == "Do you want us to stop all messages? Reply STOP to confirm."
    (who,) = texts(text(client, "Hello, who is this?"))
    assert who.startswith("This is Age Better.") and "catch that" not in who
    assert "Which title do you like best?" in who
    assert count(database, Answer) == 0
    with database.session() as session:
        assert session.scalars(select(Participant)).one().opted_out is False
    for reply in ("1", "Because it is clear", "5", "yes"):
        texts(text(client, reply))
    assert texts(text(client, "Thanks 👍")) == ["You're welcome. Thank you for your help."]
    assert count(database, Answer) == 4


def test_yes_to_do_you_want_us_to_stop_opts_out_and_records_no_consent(client, database):
    from bot.storage.models import ConsentEvent

    text(client, "TITLE")
    for reply in ("1", "Because it is clear", "5"):
        texts(text(client, reply))
    # The last question asks for consent to recontact; a yes there must not be taken for one.
    (confirm,) = texts(text(client, "don't text me again"))
    assert confirm == "Do you want us to stop all messages? Reply STOP to confirm."
    (stopped,) = texts(text(client, "Yes please"))
    assert stopped.startswith("You will not hear from Age Better again.")
    with database.session() as session:
        assert session.scalars(select(Participant)).one().opted_out is True
        kinds = session.scalars(select(ConsentEvent.kind)).all()
    assert kinds == ["opt_out"]
    assert count(database, Answer) == 3


def test_someone_who_opted_out_is_answered_in_their_language(client, database):
    with database.session() as session:
        people.person(session, phone="+447700900123", name="Gwen", opted_out=True, language="cy")
    (reply,) = texts(text(client, "Helo"))
    assert reply.startswith("Gofynnoch i ni beidio cysylltu gyda chi.")  # GSM-7: no circumflex


def test_an_answer_a_week_late_is_told_the_survey_closed_and_how_to_start_again(client, database):
    from datetime import timedelta

    from sqlalchemy import update

    from bot.storage.models import Conversation, utcnow

    text(client, "TITLE")
    with database.session() as session:
        session.execute(update(Conversation).values(last_activity_at=utcnow() - timedelta(days=8)))
    (late,) = texts(text(client, "1 sorry for the delay"))
    assert late.startswith("Sorry, this survey closed after a week with no reply")
    assert late.endswith("Text TITLE to start it again.")
    assert count(database, Answer) == 0


def test_someone_with_no_survey_is_not_told_about_questions_they_do_not_have(client):
    (reply,) = texts(text(client, "hello", sender="+447700900999"))
    assert "no questions for you just now" in reply
    assert "REPEAT" not in reply and "SKIP" not in reply and "STOP" in reply


def test_a_keyword_with_please_around_it_starts_the_survey(client):
    (reply,) = texts(text(client, "Title please", sender="+447700900777"))
    assert "Which title do you like best?" in reply


def test_a_yes_long_after_do_you_want_us_to_stop_answers_the_question(client, database):
    from datetime import timedelta

    from sqlalchemy import update

    from bot.storage.models import utcnow

    text(client, "TITLE")
    for reply in ("1", "Because it is clear", "5"):
        texts(text(client, reply))
    texts(text(client, "don't text me again"))
    # Unanswered for two hours (a reminder has asked the question again since).
    with database.session() as session:
        session.execute(update(Conversation).values(last_activity_at=utcnow() - timedelta(hours=2)))
    texts(text(client, "Yes"))
    with database.session() as session:
        assert session.scalars(select(Participant)).one().opted_out is False
    assert count(database, Answer) == 4


def test_start_with_no_survey_waiting_offers_no_question(client):
    (reply,) = texts(text(client, "START", sender="+447700900888"))
    assert "no questions for you just now" in reply and "REPEAT" not in reply


def _stopped_everywhere(database) -> None:
    with database.session() as session:
        person = session.scalars(select(Participant)).one()
        assert person.opted_out
        assert [e.kind for e in person.consent_events] == ["opt_out"]
        assert session.scalars(select(Conversation)).one().status == "stopped"
        assert session.scalar(select(func.count()).select_from(Answer)) == 0


@pytest.mark.parametrize(
    "word", ["REVOKE", "revoke", "OPTOUT", "Opt out", "STOPALL", "Stop all", "END", "QUIT"]
)
def test_every_word_twilio_takes_as_an_opt_out_stops_us_too(client, database, word):
    # Twilio has stopped the number already: asking again, or storing the word as an
    # answer, would leave calls and Telegram going on and the next text failing (21610).
    text(client, "TITLE")
    (reply,) = texts(text(client, word))
    assert "You will not hear from Age Better again" in reply
    _stopped_everywhere(database)


def _with_opt_out_type(client, body, kind):
    return post_twilio(client, PUBLIC, PATH, {**sms_params(body), "OptOutType": kind})


def test_twilio_opt_out_type_stop_stops_whatever_the_words(client, database):
    # A Messaging Service may be set up with its own words ("DIWEDD"); Twilio says so.
    text(client, "TITLE")
    (reply,) = texts(_with_opt_out_type(client, "Diwedd", "STOP"))
    assert "You will not hear from Age Better again" in reply
    _stopped_everywhere(database)


def test_twilio_opt_out_type_help_is_help_whatever_the_words(client, database):
    text(client, "TITLE")
    # HELP in full and the question are more than two segments together: one text, HELP in
    # fewer words (who we are, how to stop, how to reach a person), then the question.
    (reply,) = texts(_with_opt_out_type(client, "Gwybodaeth", "HELP"))
    assert reply.startswith("This is Age Better. Reply STOP to stop all messages.")
    assert "To speak to a person" in reply and "\n\nWhich title do you like best?" in reply
    assert sms_size(reply).segments <= 2
    assert count(database, Answer) == 0


def test_twilio_opt_out_type_start_starts_again_only_someone_who_stopped(client, database):
    text(client, "TITLE")
    for answer in ("2", "skip", "5"):
        text(client, answer)
    # Twilio counts YES among its opt-in words: from someone who never stopped it is an answer.
    (last,) = texts(_with_opt_out_type(client, "YES", "START"))
    assert last == "Thank you. We will tell you what we decide."
    text(client, "REVOKE")
    (back,) = texts(_with_opt_out_type(client, "Yes", "START"))
    assert "Welcome back" in back
    with database.session() as session:
        person = session.scalars(select(Participant)).one()
        assert not person.opted_out
        assert [e.kind for e in person.consent_events if e.kind.startswith("opt")] == [
            "opt_out",
            "opt_in",
        ]
        recontact = session.scalars(select(Answer).where(Answer.question_id == "recontact"))
        assert recontact.one().value == "yes"


# --- issue 20: replies read as meant --------------------------------------------------------


@pytest.fixture
def meant(database, redis_conn, redis_url, twilio_fake, tmp_path):
    from webhooks import create_app

    folder = conversations_with_readings(tmp_path / "conversations")
    env = app_env(database.url, redis_url, twilio_fake.url, tmp_path, CONVERSATIONS_DIR=str(folder))
    settings = load_settings(env)
    runtime.configure(settings)
    yield create_app({"SETTINGS": settings, "TESTING": True}).test_client()
    runtime.configure(settings)


def _answers_to(database, question):
    with database.session() as session:
        rows = session.scalars(select(Answer).where(Answer.question_id == question)).all()
        return [(a.value, a.raw_text, a.unparsed) for a in rows]


@pytest.mark.parametrize(("question", "typed", "said"), WORDINGS)
def test_a_reply_that_could_mean_two_things_is_asked_about_never_stored(
    meant, database, question, typed, said
):
    text(meant, "MEANT")
    for answer in BEFORE[question]:
        texts(text(meant, answer))
    (reply,) = texts(text(meant, typed))
    assert said in reply
    assert all(value is None for value, _, _ in _answers_to(database, question))


def test_did_you_mean_no_yes_stores_no_and_keeps_what_they_wrote(meant, database):
    text(meant, "MEANT")
    assert texts(text(meant, "NA")) == ["Did you mean No?\nReply YES or NO"]
    (next_one,) = texts(text(meant, "yes"))
    assert "What did you like best at breakfast?" in next_one
    assert _answers_to(database, "grammar") == [("no", "NA", False)]


def test_did_you_mean_no_no_asks_the_question_again(meant, database):
    text(meant, "MEANT")
    text(meant, "n/a")
    (again,) = texts(text(meant, "no"))
    assert again.startswith(YES_OR_NO) and "Was the grammar good?" in again
    assert _answers_to(database, "grammar") == []
    texts(text(meant, "Yes"))
    assert _answers_to(database, "grammar") == [("yes", "Yes", False)]


def test_five_stars_on_a_scale_whose_one_is_best_is_the_best_once_confirmed(meant, database):
    text(meant, "MEANT")
    for answer in BEFORE["food"]:
        text(meant, answer)
    text(meant, "5 stars")
    texts(text(meant, "yes"))
    assert _answers_to(database, "food") == [("1", "5 stars", False)]


@pytest.mark.parametrize(("question", "typed", "value"), STORED)
def test_twelve_and_a_half_is_twelve_and_a_half(meant, database, question, typed, value):
    text(meant, "MEANT")
    for answer in BEFORE[question]:
        text(meant, answer)
    texts(text(meant, typed))
    assert _answers_to(database, question) == [(value, typed, False)]


def test_a_reply_too_long_is_kept_for_staff_until_a_shorter_one_replaces_it(meant, database):
    text(meant, "MEANT")
    for answer in BEFORE["comments"]:
        text(meant, answer)
    (reply,) = texts(text(meant, "x" * 359))
    assert "359" not in reply and "characters" not in reply
    assert _answers_to(database, "comments") == [(None, "x" * 359, True)]
    (last,) = texts(text(meant, "Lovely staff"))
    assert last == "Thank you."
    assert _answers_to(database, "comments") == [("Lovely staff", "Lovely staff", False)]


# Any text a reply can hold: every character but lone surrogates (which UTF-8 cannot carry).
_REPLY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.lists(_REPLY_TEXT | st.sampled_from(["", "a & b", "<Message>", "x > y", "&amp;"])))
def test_the_twiml_written_is_twilios_own_for_any_replies(replies):
    # The webhook writes its TwiML directly; it must be what twilio's library would write.
    from twilio.twiml.messaging_response import MessagingResponse

    from webhooks.twilio_messaging import twiml

    expected = MessagingResponse()
    for reply in replies:
        expected.message(reply)
    response = twiml(replies)
    assert response.get_data(as_text=True) == str(expected)
    assert response.mimetype == "application/xml"


# --- issue 20: a reply and its question within two segments -----------------------------------


def test_with_the_longest_org_name_help_and_welcome_back_cost_two_segments_with_the_question(
    database, redis_conn, redis_url, twilio_fake, tmp_path
):
    from sqlalchemy import update

    from webhooks import create_app

    org = "Age Better Cardiff and the Vale Older People's Involvement Team"[:60]
    env = app_env(
        database.url,
        redis_url,
        twilio_fake.url,
        tmp_path,
        ORG_NAME=org,
        CONTACT_PHONE="029 2000 0000",
    )
    settings = load_settings(env)
    runtime.configure(settings)
    client = create_app({"SETTINGS": settings, "TESTING": True}).test_client()
    text(client, "TITLE")
    (helped,) = texts(text(client, "HELP"))
    # Too long for the way to a person as well: who we are and how to stop (the contract's
    # HELP), then the question.
    assert helped.startswith(
        f"This is {org}. Reply STOP to stop all messages.\n\nWhich title do you like best?"
    )
    assert sms_size(helped).segments <= 2
    # Marked as stopped elsewhere (the console, an import) while the survey waited: START
    # welcomes them back and asks the question again, in the same text, in full where that
    # fits in two segments.
    with database.session() as session:
        session.execute(update(Participant).values(opted_out=True))
    (back,) = texts(text(client, "START"))
    assert back.startswith(f"Welcome back. {org} may contact you again.")
    assert "\n\nWhich title do you like best?" in back
    assert sms_size(back).segments <= 2
    runtime.configure(settings)
