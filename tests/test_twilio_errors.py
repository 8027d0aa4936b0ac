"""Twilio's error codes in the error tree, whatever channel on Twilio sent the message."""

import pytest
from twilio.base.exceptions import TwilioRestException

from bot.providers.errors import (
    OutsideWindow,
    PermanentError,
    RecipientBlocked,
    RecipientOptedOut,
    RecipientUnreachable,
    TemporaryError,
)
from bot.providers.twilio import classify, classify_code


@pytest.mark.parametrize(
    ("code", "kind", "reason"),
    [
        ("63016", OutsideWindow, None),
        (
            "63003",
            RecipientUnreachable,
            "inactive or invalid address on that channel (Twilio 63003)",
        ),
        ("63024", RecipientUnreachable, "cannot take messages on that channel (Twilio 63024)"),
        ("63014", RecipientBlocked, "blocked us on that channel (Twilio 63014)"),
        ("21610", RecipientOptedOut, "unsubscribed at the carrier (Twilio 21610)"),
        ("63018", TemporaryError, None),
        ("63038", TemporaryError, None),
    ],
)
def test_chat_channel_codes_in_a_status_callback(code, kind, reason):
    error = classify_code(code, "said")
    assert type(error) is kind and error.code == code
    if reason is not None:
        assert error.reason == reason


def test_the_same_codes_from_the_rest_api():
    refused = TwilioRestException(400, "https://api.twilio.com/x", "Outside window", code=63016)
    assert isinstance(classify(refused), OutsideWindow)
    gone = TwilioRestException(400, "https://api.twilio.com/x", "Invalid recipient", code=63024)
    assert isinstance(classify(gone), RecipientUnreachable)
    other = TwilioRestException(400, "https://api.twilio.com/x", "Something", code=63021)
    assert type(classify(other)) is PermanentError
