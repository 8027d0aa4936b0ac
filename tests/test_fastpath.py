"""The fast path for a known person's reply must store exactly what the general path stores."""

from datetime import UTC, datetime

from sqlalchemy import select

from bot import conversations, fastpath
from bot.channels import sms
from bot.engine import Reply
from bot.keywords import Command
from bot.models import Answer, Conversation, Message, Participant
from bot.survey import load_file
from tests.conftest import CONVERSATIONS

SURVEY = load_file(CONVERSATIONS / "guide-title.yaml")
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def begin(database, phone):
    with database.session() as session:
        person = Participant(phone=phone, name="Ann", tags=[])
        session.add(person)
        session.flush()
        conversations.start_conversation(session, person, SURVEY, "sms", NOW, "Age Better")
        return person.id


def general(database, pid, text, inbound):
    with database.session() as session:
        person = session.get(Participant, pid)
        outcome = conversations.handle_inbound(
            session, person, "sms", inbound, NOW, "Age Better", raw=text
        )
        return sms.render(outcome.prompts)


def fast(database, phone, sid, text, inbound):
    result = fastpath.handle_reply(
        database, "sms", phone, sid, text, inbound, NOW, "Age Better", sms.render
    )
    return None if result is None else list(result[1])


def snapshot(database, pid):
    with database.session() as session:
        conv = session.scalars(select(Conversation).where(Conversation.participant_id == pid)).one()
        answers = [
            (
                a.question_id,
                a.value,
                a.label,
                a.raw_text,
                a.unparsed,
                a.skipped,
                a.channel,
                a.answered_at,
            )
            for a in session.scalars(
                select(Answer).where(Answer.participant_id == pid).order_by(Answer.id)
            )
        ]
        return conv.state, conv.status, conv.last_activity_at, conv.completed_at, answers


def test_fast_and_general_paths_store_the_same(database):
    a, b = begin(database, "+447700900001"), begin(database, "+447700900002")
    replies = [
        ("purple", Reply("purple")),
        ("2", Reply("2")),
        ("repeat", Command.REPEAT),
        ("skip", Command.SKIP),
        ("4", Reply("4")),
    ]
    for n, (text, inbound) in enumerate(replies):
        assert fast(database, "+447700900001", f"SM{n}", text, inbound) == general(
            database, b, text, inbound
        )
    assert snapshot(database, a) == snapshot(database, b)
    with database.session() as session:
        inbound = session.scalars(
            select(Message).where(Message.direction == "in").order_by(Message.id)
        ).all()
        assert [m.body for m in inbound] == [t for t, _ in replies]
        assert all(m.status == "processed" and m.created_at == NOW for m in inbound)


def test_consent_changes_and_strangers_go_the_general_way(database):
    pid = begin(database, "+447700900003")
    for n, text in enumerate(["1", "skip", "5"]):
        assert fast(database, "+447700900003", f"SMx{n}", text, Reply(text)) is not None
    assert fast(database, "+447700900003", "SMyes", "yes", Reply("yes")) is None  # sets recontact
    assert fast(database, "+447700900009", "SMnew", "hi", Reply("hi")) is None  # unknown number
    assert fast(database, "+447700900003", "SMstop", "stop", Command.STOP) is None
    with database.session() as session:
        assert session.get(Participant, pid).recontact is None
        assert (
            session.scalars(
                select(Message).where(Message.provider_id.in_(["SMyes", "SMnew", "SMstop"]))
            ).all()
            == []
        )


def test_a_redelivery_is_seen_before_and_changes_nothing(database):
    pid = begin(database, "+447700900004")
    fast(database, "+447700900004", "SMdup", "1", Reply("1"))
    before = snapshot(database, pid)
    try:
        fast(database, "+447700900004", "SMdup", "1", Reply("1"))
        raise AssertionError("a redelivery must raise SeenBefore")
    except fastpath.SeenBefore:
        pass
    assert snapshot(database, pid) == before
