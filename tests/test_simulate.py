from click.testing import CliRunner
from sqlalchemy import select

from bot.commands.cli import main
from bot.storage.models import Answer, Conversation


def test_simulate_sms_completes_and_stores_answers(settings, database, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database.url)
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "conversations/guide-title.yaml",
            "--channel",
            "sms",
            "--name",
            "Ada Lovelace",
        ],
        input="1\nShort and kind\nfour\nyes\n",
    )
    assert result.exit_code == 0, result.output
    assert "[text] Hello Ada." in result.output
    assert "Reply 1 for" in result.output or "1 - Living well" in result.output
    assert "Thank you. We will tell you what we decide." in result.output
    with database.session() as session:
        conv = session.scalars(select(Conversation)).one()
        assert conv.status == "completed" and conv.channel == "sms"
        assert [a.value for a in session.scalars(select(Answer).order_by(Answer.id))] == [
            "living-well",
            "Short and kind",
            "4",
            "yes",
        ]


def test_simulate_voice_uses_keys(settings, database):
    result = CliRunner().invoke(
        main, ["simulate", "guide-title", "--channel", "voice"], input="1\n2\n0\n*\n3\n1\n"
    )
    assert result.exit_code == 0, result.output
    # The call's own turns: the opening offers stopping once, on a key that answers nothing.
    assert "[spoken] If you would rather we did not call you again, press 9." in result.output
    assert (
        "For Living well with long-term health conditions, press 1." in result.output
        and "[the call ends]" in result.output
    )
    with database.session() as session:
        answers = session.scalars(select(Answer).order_by(Answer.id)).all()
        assert [(a.question_id, a.value, a.skipped) for a in answers] == [
            ("title", "your-health", False),
            ("why", None, True),
            ("useful", "3", False),
            ("recontact", "yes", False),
        ]


def test_simulate_telegram_shows_buttons(settings, database):
    result = CliRunner().invoke(
        main, ["simulate", "guide-title", "--channel", "telegram"], input="3\n"
    )
    assert result.exit_code == 0, result.output
    # Laid out as in the chat: a row a line, each button with what typing does the same.
    assert "           [1] Living well with long-term health conditions\n" in result.output
    assert "           [Skip this question]\n" in result.output
    assert "[input ended; the conversation stays open]" in result.output


def test_simulate_unknown_survey_is_a_clear_error(settings):
    result = CliRunner().invoke(main, ["simulate", "no-such-survey"])
    assert result.exit_code == 1 and "no survey 'no-such-survey'" in result.output


def test_simulate_voice_plays_the_call_with_words_and_silence(settings, database):
    typed = "\n".join(["", "the second one", "It is short", "", "four", "yes please"]) + "\n"
    result = CliRunner().invoke(
        main, ["simulate", "guide-title", "--channel", "voice"], input=typed
    )
    assert result.exit_code == 0, result.output
    assert "[spoken] Sorry, we did not hear anything." in result.output
    assert "[beep: recording; type what you would say]" in result.output
    with database.session() as session:
        answers = session.scalars(select(Answer).order_by(Answer.id)).all()
        assert [(a.question_id, a.value) for a in answers] == [
            ("title", "your-health"),
            ("why", "It is short"),
            ("useful", "4"),
            ("recontact", "yes"),
        ]
