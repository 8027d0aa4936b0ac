from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from bot import conversations
from bot.config import load_settings
from bot.conversations import inbox
from bot.engine import Reply
from bot.engine.keywords import Command
from bot.scripts.survey import load_file
from bot.storage.models import Answer, ConsentEvent, Conversation, Participant, SurveyVersion
from tests import people
from tests.conftest import CONVERSATIONS

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SURVEY = load_file(CONVERSATIONS / "guide-title.yaml")
KEYWORDS = {SURVEY.keyword: SURVEY}
ORG = "Age Better"
SETTINGS = load_settings({"DATABASE_URL": "sqlite://", "ORG_NAME": ORG})


def person(session, phone="+447700900123", name="Margaret"):
    return people.person(session, phone=phone, name=name)


def send(database, pid, text, inbound=None, at=NOW, channel="sms"):
    """What the person sent, through the one writer, as a known person (no provider id)."""
    received = inbox.Received(
        channel=channel,
        text=text,
        inbound=inbound
        or (
            Command(text.lower())
            if text.upper() in ("STOP", "START", "HELP", "REPEAT", "SKIP")
            else Reply(text)
        ),
        participant_id=pid,
    )
    return inbox.receive(database, SETTINGS, received, at, KEYWORDS)


def test_keyword_starts_a_survey_and_answers_are_stored(database):
    with database.session() as session:
        pid = person(session).id
    first = send(database, pid, "title")
    assert [type(p).__name__ for p in first.prompts] == ["Say", "Ask"]
    for text in ["2", "Short and clear", "5", "yes"]:
        send(database, pid, text)
    with database.session() as session:
        rows = session.scalars(select(Answer).order_by(Answer.id)).all()
        assert [(a.question_id, a.value, a.label, a.channel) for a in rows] == [
            ("title", "your-health", "Your health, your way", "sms"),
            ("why", "Short and clear", "Short and clear", "sms"),
            ("useful", "5", "Very useful", "sms"),
            ("recontact", "yes", "Yes", "sms"),
        ]
        conv = session.scalars(select(Conversation)).one()
        assert conv.status == "completed" and conv.completed_at == NOW
        who = session.get(Participant, pid)
        assert who.recontact is True and who.joined_via == "keyword TITLE"
        assert [e.kind for e in who.consent_events] == ["recontact_yes"]
        version = session.get(SurveyVersion, conv.survey_version_id)
        assert version.source == SURVEY.source and version.content_hash == SURVEY.content_hash


def test_unknown_text_without_a_conversation_gets_who_we_are(database):
    with database.session() as session:
        pid = person(session).id
    outcome = send(database, pid, "hello")
    assert outcome.conversation_id is None
    assert outcome.prompts[0].kind == "help" and ORG in outcome.prompts[0].text


def test_stop_is_confirmed_once_logged_and_start_lifts_it(database):
    with database.session() as session:
        pid = person(session).id
    send(database, pid, "title")
    assert send(database, pid, "STOP").prompts[0].kind == "stopped"
    assert send(database, pid, "STOP").prompts == ()
    blocked = send(database, pid, "2")
    assert "START" in blocked.prompts[0].text
    started = send(database, pid, "START")
    assert started.prompts[0].kind == "started"
    with database.session() as session:
        who = session.get(Participant, pid)
        assert not who.opted_out
        assert [(e.kind, e.how) for e in who.consent_events] == [
            ("opt_out", "sms"),
            ("opt_in", "sms"),
        ]
        assert session.scalars(select(Conversation)).one().status == "stopped"
        assert session.scalar(select(func.count(Answer.id))) == 0


def test_idle_conversation_expires_after_seven_days(database):
    with database.session() as session:
        pid = person(session).id
    send(database, pid, "title")
    later = send(database, pid, "2", at=NOW + timedelta(days=8))
    assert later.conversation_id is None
    with database.session() as session:
        assert session.scalars(select(Conversation)).one().status == "expired"
        assert session.scalar(select(func.count(Answer.id))) == 0


def test_one_active_conversation_per_person_is_enforced_by_the_database(database):
    with database.session() as session:
        who = person(session)
        conversations.start_conversation(session, who, SURVEY, "sms", NOW, ORG)
    with pytest.raises(IntegrityError), database.session() as session:
        who = session.get(Participant, who.id)
        conversations.start_conversation(session, who, SURVEY, "sms", NOW, ORG)


def test_a_conversation_follows_the_person_across_channels(database):
    with database.session() as session:
        pid = person(session).id
    send(database, pid, "title")
    send(database, pid, "1", channel="telegram")
    with database.session() as session:
        (answer,) = session.scalars(select(Answer)).all()
        assert (answer.question_id, answer.channel) == ("title", "telegram")


def test_same_script_is_stored_once(database):
    with database.session() as session:
        a = conversations.survey_version(session, SURVEY)
        b = conversations.survey_version(session, SURVEY)
        assert a.id == b.id
        assert session.scalar(select(func.count(SurveyVersion.id))) == 1


def test_unparsed_answer_is_kept_after_two_misses(database):
    with database.session() as session:
        pid = person(session).id
    send(database, pid, "title")
    send(database, pid, "the green one")
    send(database, pid, "the one with the picture")
    with database.session() as session:
        (answer,) = session.scalars(select(Answer)).all()
        # The words are kept for staff, flagged; no value or label is stored as an answer.
        assert (answer.value, answer.label, answer.unparsed, answer.raw_text) == (
            None,
            None,
            True,
            "the one with the picture",
        )


def test_consent_log_is_append_only_history(database):
    with database.session() as session:
        who = person(session)
        for kind in ["opt_out", "opt_in", "recontact_no"]:
            conversations.record_consent(session, who, kind, "api", now=NOW)
    with database.session() as session:
        kinds = session.scalars(select(ConsentEvent.kind).order_by(ConsentEvent.id)).all()
        assert kinds == ["opt_out", "opt_in", "recontact_no"]


def test_as_id_accepts_only_plain_positive_numbers():
    from bot.storage.models import as_id

    # " 7 " and "07" are not 7 (issue 21 item 4): where "7" is someone's external id they
    # would otherwise name a different person than the one typed.
    assert [as_id(v) for v in ["12", " 7 ", 5, "²", "-3", "0", "9" * 30, "1.5", "abc", "07"]] == [
        12,
        None,
        5,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    ]


def test_the_same_recontact_answer_twice_is_logged_twice_and_changes_nothing_else(database):
    # Each answer is consent history; the person's row moves only when something changes.
    with database.session() as session:
        who = person(session)
        conversations.record_consent(session, who, "recontact_yes", "sms", now=NOW)
        pid = who.id
    with database.session() as session:
        first = session.get(Participant, pid).updated_at
    with database.session() as session:
        row = conversations.lock_person_row(session, pid)
        assert row.recontact is True
        conversations.record_consent(session, row, "recontact_yes", "sms", now=NOW)
    with database.session() as session:
        assert session.get(Participant, pid).updated_at == first
        kinds = session.scalars(select(ConsentEvent.kind).order_by(ConsentEvent.id)).all()
        assert kinds == ["recontact_yes", "recontact_yes"]


@pytest.mark.parametrize("dialect_name", ["sqlite", "postgresql"])
def test_the_active_conversation_is_read_with_the_partial_index_literal(dialect_name):
    # Read on every message. With the status as a bound value SQLite planned the statement
    # again on every run (a value a partial index depends on invalidates the plan whenever it
    # is bound: a tenth of a text's database work), and a prepared statement on PostgreSQL
    # could not use `uq_conversations_one_active`. Only the person is a parameter.
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}[dialect_name]
    for statement in (
        conversations.ACTIVE_LOCKED_STATEMENT,
        inbox._ACTIVE_AND_WAITING.statement,
    ):
        compiled = statement.compile(dialect=dialect)
        assert "conversations.status = 'active'" in compiled.string
        bound = {name for name in compiled.binds if not name.startswith("param_")}
        assert "participant_id" in bound
        assert not [b for b in compiled.binds.values() if b.value == "active"]


def test_a_step_that_keeps_the_conversation_active_does_not_set_its_status(database):
    # SQLite rewrites the entries of every index on a column an UPDATE sets, even to the value
    # it holds; `status` is in two. The writer's statements run on the driver's cursor, so
    # they are watched there (SQLite's trace).
    if database.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's statement trace")
    with database.session() as session:
        pid = person(session).id
    send(database, pid, "title")
    statements: list[str] = []
    with database.session() as session:
        session.connection().connection.driver_connection.set_trace_callback(statements.append)
    send(database, pid, "2")
    send(database, pid, "Short and clear")
    send(database, pid, "5")
    send(database, pid, "yes")  # the last answer: the survey is completed
    with database.session() as session:
        session.connection().connection.driver_connection.set_trace_callback(None)
        conv = session.scalars(select(Conversation)).one()
        assert conv.status == "completed"
    updates = [s for s in statements if s.startswith("UPDATE conversations")]
    assert len(updates) == 4
    assert ["status=" in s for s in updates] == [False, False, False, True]
