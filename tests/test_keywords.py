import pytest

from bot.engine.keywords import Command, classify, start_payload


@pytest.mark.parametrize(
    "typed",
    [
        "STOP",
        "stop",
        " Stop. ",
        "StopAll",
        "UNSUBSCRIBE",
        "cancel",
        "End",
        "quit",
        "/stop",
        "stop please",
        "STOP!",
        # Twilio stops the number on these too (its default opt-out words).
        "REVOKE",
        "revoke",
        "OPTOUT",
        "Opt out",
        "Stop all",
        "/revoke",
    ],
)
def test_stop_words(typed):
    assert classify(typed) is Command.STOP


@pytest.mark.parametrize(
    ("typed", "command"),
    [
        ("START", Command.START),
        ("/start", Command.START),
        ("help", Command.HELP),
        ("/help", Command.HELP),
        ("Repeat", Command.REPEAT),
        ("/repeat", Command.REPEAT),
        ("skip", Command.SKIP),
        ("/skip", Command.SKIP),
        ("/start title", Command.START),
    ],
)
def test_other_words(typed, command):
    assert classify(typed) is command


@pytest.mark.parametrize(
    "typed", ["make the pain stop", "I can't stop worrying", "2", "yes", "", "don't stop"]
)
def test_ordinary_replies_are_not_commands(typed):
    assert classify(typed) is None


def test_start_payload():
    assert start_payload("/start title") == "TITLE"
    assert start_payload("start") is None


def test_agreeing_is_whole_words_only():
    from bot.engine.keywords import agreeing

    assert agreeing("Yes, I would be happy to") and agreeing("ok thanks")
    assert not agreeing("yesok") and not agreeing("beyond") and not agreeing("yes 2")
