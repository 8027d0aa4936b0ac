"""CONTACT_PHONE: a number where a participant can reach a person, said in HELP, after a STOP
and at the end of a call (CONTRACT.md); with none, HELP says how else to reach staff."""

from __future__ import annotations

import pytest

from bot.commands import runtime
from bot.config import load_settings
from bot.scripts.gsm import sms_size
from tests.conftest import PUBLIC, app_env
from tests.fakes import post_twilio, sms_params
from tests.test_twilio_sms import texts
from tests.test_twilio_voice import Phone, begin_inbound

CONTACT = "0300 123 4567"
SMS = "/webhooks/twilio/sms"


@pytest.fixture
def contact_app(database, redis_conn, redis_url, twilio_fake, tmp_path):
    from webhooks import create_app

    settings = load_settings(
        app_env(
            database.url,
            redis_url,
            twilio_fake.url,
            tmp_path,
            CONTACT_PHONE=CONTACT,
            INBOUND_CALL_SURVEY="guide-title",
        )
    )
    runtime.configure(settings)
    yield create_app({"SETTINGS": settings, "TESTING": True}).test_client()
    runtime.configure(settings)


def _text(client, body: str, sender: str = "+447700900123") -> list[str]:
    return texts(post_twilio(client, PUBLIC, SMS, sms_params(body, sender=sender)))


def test_help_and_stop_by_text_say_where_to_reach_a_person(contact_app):
    (idle,) = _text(contact_app, "HELP")
    assert f"To speak to a person, call {CONTACT}." in idle
    _text(contact_app, "TITLE")
    # HELP in full and the question are too long for two segments together: one text, HELP
    # in fewer words, still saying where to reach a person, and the question again.
    (helped,) = _text(contact_app, "HELP")
    assert f"To speak to a person, call {CONTACT}.\n\nWhich title do you like best?" in helped
    assert sms_size(helped).segments <= 2
    (stopped,) = _text(contact_app, "STOP")
    assert stopped.startswith("You will not hear from Age Better again.")
    assert stopped.endswith(f"To speak to a person, call {CONTACT}.")


def test_without_a_contact_phone_help_says_how_else_to_reach_staff(client):
    (idle,) = _text(client, "HELP")
    assert idle.endswith("To speak to a person, contact us in the usual way.")
    (stopped,) = _text(client, "STOP")
    assert "To speak to a person" not in stopped  # nothing promised that we cannot keep


def test_the_end_of_a_call_says_the_number_digit_by_digit(contact_app):
    begin_inbound(contact_app).press("2")
    call = Phone(contact_app).dial()
    call.press("9")
    call.press("1")
    assert call.ended and "We will not contact you again." in call.said
    assert "To speak to a person, call 0 3 0 0, 1 2 3, 4 5 6 7." in call.words()
