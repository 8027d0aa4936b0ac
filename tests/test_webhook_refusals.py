"""A webhook refused for its signature or secret says why in the log, once a minute at most,
naming the URL it was checked against and the setting to fix, and never a number or words."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import PUBLIC
from tests.fakes import post_twilio, sms_params
from tests.test_telegram import telegram_fake, tg, tg_settings  # noqa: F401 (fixtures)

PATH = "/webhooks/twilio/sms"
SENDER = "+447700900123"
WORDS = "my private answer"


@pytest.fixture(autouse=True)
def fresh_minute():
    from webhooks import signatures, telegram

    for limiter in (signatures.refusal_logged, telegram.refusal_logged):
        limiter.last = None
    yield


def _refusals(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "refused a" in r.getMessage()]


def test_a_signature_for_another_url_is_403_and_logged_once_a_minute(client, caplog):
    from webhooks import signatures

    caplog.set_level(logging.WARNING)
    params = sms_params(WORDS, sender=SENDER)
    # Twilio was given http://, or another host: it signs what it was given.
    wrong_base = "http://involve.example.org"
    assert post_twilio(client, wrong_base, PATH, params).status_code == 403
    (line,) = _refusals(caplog)
    assert f"{PUBLIC}{PATH}" in line and f"PUBLIC_BASE_URL={PUBLIC}" in line
    assert SENDER not in line and "7700" not in line and WORDS not in line
    for _ in range(3):
        assert post_twilio(client, wrong_base, PATH, params).status_code == 403
    assert len(_refusals(caplog)) == 1
    signatures.refusal_logged.last -= 61  # a minute later
    assert post_twilio(client, wrong_base, PATH, params).status_code == 403
    assert len(_refusals(caplog)) == 2


def test_a_request_with_no_signature_at_all_is_not_logged(client, caplog):
    caplog.set_level(logging.WARNING)
    assert client.post(PATH, data=sms_params(WORDS)).status_code == 403
    assert _refusals(caplog) == []


def test_a_telegram_update_with_another_secret_is_logged_without_its_words(tg, caplog):  # noqa: F811
    from tests.fakes import message_update, post_telegram

    caplog.set_level(logging.WARNING)
    update = message_update(4242, WORDS)
    assert post_telegram(tg, update, secret="an-old-secret-0123456789").status_code == 403
    (line,) = _refusals(caplog)
    assert "TELEGRAM_WEBHOOK_SECRET" in line and f"{PUBLIC}/webhooks/telegram" in line
    assert WORDS not in line and "4242" not in line


@pytest.mark.parametrize(
    "configured",
    ["https://involve.example.org", "https://involve.example.org:443", "http://10.0.0.5:8080"],
)
def test_a_signature_is_taken_exactly_where_twilios_validator_takes_it(configured):
    # The webhooks check one form of the URL first and stop when it matches; what they take
    # and refuse must stay twilio's own `validate`, over the URL with its port and without.
    from urllib.parse import urlparse

    from twilio.request_validator import RequestValidator, add_port, remove_port

    from webhooks.signatures import signature_matches

    token, path = "a-token", "/webhooks/twilio/sms?x=1"
    params = sms_params("Yes & no", sender="+447700900123")
    validator = RequestValidator(token)
    parsed = urlparse(configured + path)
    signed = [validator.compute_signature(f(parsed), params) for f in (add_port, remove_port)]
    others = [
        RequestValidator("another").compute_signature(configured + path, params),
        "x" * 28,
        "é" * 28,  # not ASCII: compared all the same, never an error
    ]
    for signature in [*signed, *others, ""]:
        expected = validator.validate(configured + path, params, signature)
        assert signature_matches(token, configured + path, params, signature) is expected
    assert all(signature_matches(token, configured + path, params, s) for s in signed)
