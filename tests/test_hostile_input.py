"""Hostile and odd input at the edges: limits before work, and no server errors from it.

Every request here is one a stranger (or a careless spreadsheet) can send. The rule: a 4xx
that says what is wrong, nothing stored without a valid signature, and never a 500.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

from sqlalchemy import func, select

from bot.models import Message, Participant
from tests.conftest import ADMIN, PUBLIC
from tests.fakes import post_twilio, sms_params

SMS = "/webhooks/twilio/sms"
STATUS = "/webhooks/twilio/status"


def count(database, model) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


# --- item 4: limits before work on the webhooks ----------------------------------------


def test_a_big_body_is_refused_before_it_is_parsed_or_hashed(client, database):
    # 10 MB with any signature at all used to be parsed and hashed (seconds of CPU) first.
    body = b"Body=" + b"x" * (10 * 1024 * 1024)
    started = time.perf_counter()
    response = client.post(
        SMS,
        data=body,
        headers={
            "X-Twilio-Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    assert response.status_code == 413
    assert time.perf_counter() - started < 0.5
    assert count(database, Message) == 0


def test_a_body_just_over_the_limit_is_413_even_when_signed(client, database):
    params = sms_params("x" * (64 * 1024))
    response = post_twilio(client, PUBLIC, SMS, params)
    assert response.status_code == 413
    assert count(database, Message) == 0


def test_a_status_callback_over_the_limit_is_413(client):
    response = client.post(
        STATUS,
        data={"MessageSid": "SM1", "Junk": "y" * (70 * 1024)},
        headers={"X-Twilio-Signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="},
    )
    assert response.status_code == 413


def test_a_signature_that_cannot_be_one_is_403_and_stores_nothing(client, database):
    # HMAC-SHA1 in base64 is 28 characters; anything else is refused before the form is read.
    params = sms_params("TITLE")
    for bad in ("x", "not a signature at all" * 50, "=" * 28, "\u00e9" * 28):
        response = client.post(SMS, data=params, headers={"X-Twilio-Signature": bad})
        assert response.status_code == 403
    assert count(database, Message) == 0


# --- item 9: signed texts with over-long identifiers (PostgreSQL used to answer 500) -----


def _texts(response) -> list[str]:
    return [m.text for m in ET.fromstring(response.data).findall("Message")]


def test_a_signed_text_with_an_over_long_message_sid_is_kept_not_500(client, database):
    sid = "SM" + "a" * 200
    response = post_twilio(client, PUBLIC, SMS, sms_params("TITLE", sid=sid))
    assert response.status_code == 200 and response.mimetype == "application/xml"
    with database.session() as session:
        kept = session.scalars(select(Message).where(Message.direction == "in")).one()
        assert kept.body == "TITLE" and len(kept.provider_id or "") <= 34
    # Twilio retries: the same over-long sid is the same delivery and stores nothing twice.
    again = post_twilio(client, PUBLIC, SMS, sms_params("TITLE", sid=sid))
    assert again.status_code == 200
    assert count(database, Message) - _replies(database) == 1


def _replies(database) -> int:
    with database.session() as session:
        return (
            session.scalar(
                select(func.count()).select_from(Message).where(Message.direction == "out")
            )
            or 0
        )


def test_a_signed_text_from_an_over_long_sender_is_kept_not_500(client, database):
    sender = "+44" + "7" * 300
    response = post_twilio(client, PUBLIC, SMS, sms_params("my answer", sender=sender))
    assert response.status_code == 200 and response.mimetype == "application/xml"
    assert _texts(response) == []  # nobody to answer: it is not an address we can reach
    with database.session() as session:
        kept = session.scalars(select(Message)).one()
        assert kept.body == "my answer" and kept.status == "error"
        assert "too long" in (kept.error_message or "")
    assert count(database, Participant) == 0


# --- item 7: admin tokens -----------------------------------------------------------------


def test_wrong_admin_tokens_are_slowed_down_with_retry_after(app):
    app.config["ADMIN_FAILED_AUTH_LIMIT"] = 5
    client = app.test_client()
    wrong = {"Authorization": "Bearer " + "w" * 40}
    codes = [client.get("/admin/api/surveys", headers=wrong).status_code for _ in range(8)]
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
    refused = client.get("/admin/api/surveys", headers=wrong)
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    # The limit is on guessing: even the right token waits until the window passes, so a
    # guesser cannot learn that a guess was right while blocked.
    assert client.get("/admin/api/surveys", headers=ADMIN).status_code == 429


def test_a_successful_client_is_not_blocked_by_another_clients_guessing(app):
    app.config["ADMIN_FAILED_AUTH_LIMIT"] = 2
    client = app.test_client()
    wrong = {"Authorization": "Bearer nope"}
    for _ in range(4):
        client.get("/admin/api/surveys", headers=wrong, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert client.get("/admin/api/surveys", headers=ADMIN).status_code == 200


def test_the_request_rate_limit_says_when_to_retry(app):
    app.config["ADMIN_RATE_LIMIT"] = 1
    client = app.test_client()
    client.get("/admin/api/surveys", headers=ADMIN)
    refused = client.get("/admin/api/surveys", headers=ADMIN)
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 60
