"""Prepared statements: what they store and read back is what the ORM stores and reads."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from bot.storage.models import Conversation, Participant, SurveyVersion
from bot.storage.prepared import Prepared

WHEN = datetime(2026, 11, 26, 9, 30, 15, 123456, tzinfo=UTC)
PEOPLE = Participant.__table__
CONVERSATIONS = Conversation.__table__

INSERT_PERSON = Prepared(insert(PEOPLE).returning(PEOPLE.c.id))
PERSON = Prepared(
    select(PEOPLE.c.id, PEOPLE.c.opted_out, PEOPLE.c.tags, PEOPLE.c.created_at)
    .where(PEOPLE.c.external_id == bindparam("external_id"))
    .with_for_update()
)
UPDATE_CONVERSATION = Prepared(
    CONVERSATIONS.update().where(CONVERSATIONS.c.id == bindparam("conversation_id"))
)


def a_person(connection, external_id="+447700900123", **values):
    row = {"external_id": external_id, "tags": ["panel"], "opted_out": False, "created_at": WHEN}
    row["updated_at"] = WHEN
    return INSERT_PERSON.first(connection, {**row, **values}).id


def test_values_read_back_as_the_orm_reads_them(database):
    with database.session() as session:
        person_id = a_person(session.connection(), opted_out=True)
    with database.session() as session:
        row = PERSON.first(session.connection(), {"external_id": "+447700900123"})
        orm = session.get(Participant, person_id)
        assert row.id == person_id
        assert row.opted_out is True and orm.opted_out is True  # a bool, not SQLite's 1
        assert row.tags == orm.tags == ["panel"]  # JSON, as a list
        assert row.created_at == orm.created_at == WHEN  # an aware UTC time, to the microsecond
        assert row.created_at.tzinfo is not None
        assert PERSON.first(session.connection(), {"external_id": "+447700900999"}) is None


def test_an_update_sets_the_columns_its_values_name_and_says_how_many_rows(database):
    with database.session() as session:
        person_id = a_person(session.connection())
        version = SurveyVersion(survey_id="s", content_hash="h", title="S", source="id: s")
        conv = Conversation(
            participant_id=person_id,
            survey_version=version,
            channel="sms",
            status="active",
            state={"question_id": "q1"},
            started_at=WHEN,
            last_activity_at=WHEN,
        )
        session.add(conv)
        session.flush()
        conv_id = conv.id
    later = WHEN + timedelta(minutes=5)
    with database.session() as session:
        changed = UPDATE_CONVERSATION.run(
            session.connection(),
            {"conversation_id": conv_id, "state": {"question_id": "q2"}, "last_activity_at": later},
        )
        assert changed == 1
        # A different set of columns is a different statement, compiled on first use.
        UPDATE_CONVERSATION.run(session.connection(), {"conversation_id": conv_id, "status": "x"})
    with database.session() as session:
        stored = session.get(Conversation, conv_id)
        assert (stored.state, stored.last_activity_at, stored.status, stored.channel) == (
            {"question_id": "q2"},
            later,
            "x",
            "sms",
        )
        assert (
            UPDATE_CONVERSATION.run(session.connection(), {"conversation_id": 0, "status": "y"})
            == 0
        )


def test_many_rows_at_once(database):
    insert_people = Prepared(insert(PEOPLE))
    rows = [
        {
            "external_id": f"+4477009001{n:02d}",
            "tags": [],
            "opted_out": False,
            "created_at": WHEN,
            "updated_at": WHEN,
        }
        for n in range(3)
    ]
    with database.session() as session:
        insert_people.run(session.connection(), rows)
    with database.session() as session:
        assert len(session.query(Participant).all()) == 3


def test_a_value_not_given_fails_loudly_instead_of_storing_null(database):
    with database.session() as session, pytest.raises(KeyError, match="external_id"):
        PERSON.first(session.connection(), {})
    with database.session() as session, pytest.raises(KeyError, match="created_at"):
        # The column's Python-side default is not run here: leaving it out is a mistake.
        Prepared(insert(PEOPLE)).run(session.connection(), {"external_id": "+447700900123"})


def test_a_driver_error_is_sqlalchemys_with_its_parameters_hidden(database):
    with database.session() as session:
        a_person(session.connection())
    with pytest.raises(IntegrityError) as raised, database.session() as session:
        a_person(session.connection())  # the same number again: unique
    assert isinstance(raised.value, DBAPIError)
    # No parameters section, as with `hide_parameters` (PostgreSQL's own detail can still
    # quote a unique value: that is why the writer logs an error's type, never its text).
    assert "[parameters:" not in str(raised.value)
    assert "'+447700900123'" not in str(raised.value)


def test_stored_exactly_as_the_orm_stores_it(database):
    # Read back through the driver, not through the types: SQLite compares stored times as
    # text, so a time written in another format would sort wrongly while reading back fine.
    with database.session() as session:
        a_person(session.connection(), "+447700900001", opted_out=True)
        session.add(
            Participant(
                external_id="+447700900002",
                tags=["panel"],
                opted_out=True,
                created_at=WHEN,
                updated_at=WHEN,
            )
        )
    with database.session() as session:
        raw = session.connection().exec_driver_sql(
            "SELECT external_id, tags, opted_out, created_at FROM participants ORDER BY external_id"
        )
        mine, orms = [tuple(row[1:]) for row in raw]
        assert mine == orms


def test_values_a_statement_carries_itself_are_sent(database):
    with database.session() as session:
        for n in range(3):
            a_person(session.connection(), f"+44770090000{n}", opted_out=n == 1)
    first_opted_out = Prepared(
        select(PEOPLE.c.external_id)
        .where(PEOPLE.c.opted_out == True, PEOPLE.c.external_id != "+447700900000")  # noqa: E712
        .order_by(PEOPLE.c.external_id)
        .limit(1)
    )
    with database.session() as session:
        assert [r.external_id for r in first_opted_out.rows(session.connection(), {})] == [
            "+447700900001"
        ]


def test_a_statement_sqlalchemy_rewrites_per_execution_is_refused(database):
    in_a_list = Prepared(select(PEOPLE.c.id).where(PEOPLE.c.external_id.in_(["+447700900001"])))
    with database.session() as session, pytest.raises(ValueError, match="rewrite"):
        in_a_list.rows(session.connection(), {})


def test_times_bound_one_after_another_are_each_stored_as_given(database):
    # A time's bind processor is shared by every statement and remembers the last time it
    # formatted (a message binds its one `now` a dozen times): others in between, and the same
    # instant in another time zone, are each stored as themselves.
    later = WHEN + timedelta(hours=1)
    elsewhere = WHEN.astimezone(timezone(timedelta(hours=5)))
    given = [WHEN, later, WHEN, later, elsewhere]
    with database.session() as session:
        ids = [
            a_person(session.connection(), f"+4477009001{n:02d}", created_at=when)
            for n, when in enumerate(given)
        ]
    with database.session() as session:
        stored = [session.get(Participant, person_id).created_at for person_id in ids]
    assert stored == [WHEN, later, WHEN, later, WHEN]


def test_three_times_taking_turns_are_each_stored_as_given(database):
    # It remembers two times: a third pushes the older out, and each is stored as itself.
    times = [WHEN, WHEN + timedelta(hours=1), WHEN + timedelta(hours=2)]
    given = [times[0], times[1], times[2], times[0], times[2], times[1], times[1], times[0]]
    with database.session() as session:
        ids = [
            a_person(session.connection(), f"+4477009002{n:02d}", created_at=when)
            for n, when in enumerate(given)
        ]
    with database.session() as session:
        stored = [session.get(Participant, person_id).created_at for person_id in ids]
    assert stored == given


def test_a_unit_of_work_asks_its_connection_once_and_a_plain_session_every_time(database):
    from sqlalchemy.orm import Session

    from bot.storage.db import connection_of

    with database.session() as session:
        first = connection_of(session)
        assert connection_of(session) is first is session.connection()
    # A session outside `Database.session()` may commit part-way and go on with another
    # connection: nothing is kept for it.
    with Session(database.engine) as session:
        before = connection_of(session)
        session.commit()
        after = connection_of(session)
        assert after is session.connection() and after is not before


def test_a_unit_of_work_begins_the_orm_only_for_orm_work_and_commits_both(database):
    # The transaction is the connection's: statements on it leave the ORM session out (its
    # own begin and commit cost the one writer more than a message's statements), and ORM
    # work in the same unit joins that transaction and is committed with it.
    from bot.storage.db import connection_of

    with database.session() as session:
        person_id = a_person(connection_of(session))
        assert not session.in_transaction()
        session.add(SurveyVersion(survey_id="s", content_hash="h", title="S", source="id: s"))
        assert session.get(Participant, person_id) is not None
        assert session.in_transaction()
    with database.session() as session:
        assert session.get(Participant, person_id) is not None
        assert session.scalar(select(SurveyVersion.title)) == "S"
    with pytest.raises(RuntimeError), database.session() as session:
        a_person(connection_of(session), "+447700900999")
        session.add(SurveyVersion(survey_id="t", content_hash="t", title="T", source="id: t"))
        session.flush()
        raise RuntimeError("a bug")
    with database.session() as session:
        assert PERSON.first(connection_of(session), {"external_id": "+447700900999"}) is None
        assert (
            session.scalar(
                select(SurveyVersion.title)
                .where(SurveyVersion.id > 0)
                .where(SurveyVersion.survey_id == "t")
            )
            is None
        )


SAME_NAME_TWICE = Prepared(
    select(PEOPLE.c.id).where(
        PEOPLE.c.external_id == bindparam("external_id"),
        (PEOPLE.c.name == bindparam("external_id")) | PEOPLE.c.name.is_(None),
    )
)


def test_a_bind_used_twice_is_sent_twice_in_its_places(database):
    # On psycopg the statement is sent with positional placeholders, one per use of a name.
    with database.session() as session:
        person_id = a_person(session.connection(), external_id="+447700900123")
        found = SAME_NAME_TWICE.first(session.connection(), {"external_id": "+447700900123"})
        assert found is not None and found.id == person_id


def test_after_a_failed_statement_the_next_runs_on_a_fresh_cursor(database):
    with database.session() as session:
        connection = session.connection()
        a_person(connection, external_id="+447700900123")
        savepoint = connection.begin_nested()
        with pytest.raises(IntegrityError):
            a_person(connection, external_id="+447700900123")  # the same external id
        savepoint.rollback()
        assert PERSON.first(connection, {"external_id": "+447700900123"}) is not None
        assert a_person(connection, external_id="+447700900124") is not None


def test_the_pools_check_keeps_a_live_connection_and_replaces_a_dropped_one(database):
    # PostgreSQL's check is libpq's own empty query (`db._ping_psycopg`), not SQLAlchemy's.
    if database.engine.dialect.name != "postgresql":
        pytest.skip("only a database server drops connections")
    from sqlalchemy import create_engine, event, text
    from sqlalchemy.pool import NullPool

    from bot.storage.db import _ping_psycopg

    assert database.engine.dialect.do_ping is _ping_psycopg
    opened = []
    event.listen(database.engine, "connect", lambda *_: opened.append(1))
    database.engine.dispose()
    with database.engine.connect() as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar()
    with database.engine.connect() as connection:  # checked, kept
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar() == pid
    assert len(opened) == 1
    with create_engine(database.url, poolclass=NullPool).connect() as admin:
        # Waits for the process to end (its own timeout, in ms), so the check meets it gone.
        admin.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
    with database.engine.connect() as connection:  # checked, found dropped, replaced
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar() != pid
    assert len(opened) == 2
