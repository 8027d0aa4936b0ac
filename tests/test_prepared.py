"""Prepared statements: what they store and read back is what the ORM stores and reads."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import bindparam, create_engine, func, insert, inspect, literal_column, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from bot.storage.db import connection_of
from bot.storage.models import ConsentEvent, Conversation, Participant, SurveyVersion
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
    assert _stored_one_after_another(database, given) == [WHEN, later, WHEN, later, WHEN]


def _stored_one_after_another(database, times):
    """People created in one unit with these times, one after another; their times as read
    back by the ORM."""
    with database.session() as session:
        ids = [
            a_person(session.connection(), f"+44770090{n:04d}", created_at=when)
            for n, when in enumerate(times)
        ]
    with database.session() as session:
        return [session.get(Participant, person_id).created_at for person_id in ids]


def test_three_times_taking_turns_are_each_stored_as_given(database):
    # It remembers two times: a third pushes the older out, and each is stored as itself.
    times = [WHEN, WHEN + timedelta(hours=1), WHEN + timedelta(hours=2)]
    given = [times[0], times[1], times[2], times[0], times[2], times[1], times[1], times[0]]
    assert _stored_one_after_another(database, given) == given


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
    _a_bug_after_orm_work(database, lambda session: session.flush())
    with database.session() as session:
        assert (
            session.scalar(select(SurveyVersion.title).where(SurveyVersion.survey_id == "t"))
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


def test_a_unit_commits_an_object_only_added_and_its_session_never_commits_it_part_way(database):
    # `session.add` alone, and nothing after it, is written too.
    with database.session() as session:
        session.add(SurveyVersion(survey_id="s", content_hash="h", title="S", source="id: s"))
    # The session joins the unit's transaction: its own commit leaves the unit's to the unit,
    # so an error after it still rolls everything back, statements on the connection too.
    _a_bug_after_orm_work(database, lambda session: session.commit())
    with database.session() as session:
        titles = session.scalars(select(SurveyVersion.title).where(SurveyVersion.id > 0)).all()
        assert titles == ["S"]


def _a_bug_after_orm_work(database, then) -> None:
    """A unit writes a person on its connection and a survey version through the ORM, does
    `then` to its session, and fails: the person is not kept either."""
    with pytest.raises(RuntimeError), database.session() as session:
        a_person(connection_of(session), "+447700900999")
        session.add(SurveyVersion(survey_id="t", content_hash="t", title="T", source="id: t"))
        then(session)
        raise RuntimeError("a bug")
    with database.session() as session:
        assert PERSON.first(connection_of(session), {"external_id": "+447700900999"}) is None


def test_a_units_connection_asked_for_a_transaction_commits_and_rolls_back_with_the_unit(
    database,
):
    # SQLAlchemy's connection begins its own transaction object when asked (`execute`,
    # a savepoint): bookkeeping over the unit's, committed or rolled back with it.
    count = select(func.count()).select_from(PEOPLE)
    with database.session() as session:
        a_person(connection_of(session), "+447700900001")
        assert connection_of(session).execute(count).scalar() == 1
        a_person(connection_of(session), "+447700900002")
    with pytest.raises(RuntimeError), database.session() as session:
        connection_of(session).execute(insert(PEOPLE), [_person_row("+447700900003")])
        raise RuntimeError("a bug")
    with database.session() as session:
        assert connection_of(session).execute(count).scalar() == 2


def test_a_units_session_is_used_again_clean(database):
    # The unit's ORM session is kept for the next unit: nothing of one unit reaches the next.
    with database.session() as session:
        person_id = a_person(connection_of(session))
        person = session.get(Participant, person_id)
        session.info["mine"] = True
    assert inspect(person).detached
    with database.session() as session:
        assert "mine" not in session.info and not session.identity_map
        assert not session.in_transaction()
        assert session.get(Participant, person_id) is not person


def test_after_commit_dispatch_runs_once_after_the_commit_and_never_after_a_rollback(database):
    from bot.storage.db import queue_after_commit

    seen = []

    def dispatch(what, rows):
        # Committed already: another connection sees the row.
        with database.engine.connect() as other:
            stored = other.execute(select(func.count()).select_from(PEOPLE)).scalar()
        seen.append((what, list(rows), stored))

    database.after_commit = dispatch
    with database.session() as session:
        a_person(connection_of(session))
        queue_after_commit(session, [(1, None)])
    with pytest.raises(RuntimeError), database.session() as session:
        queue_after_commit(session, [(2, None)])
        raise RuntimeError("a bug")
    with database.session() as session:
        pass
    assert seen == [("outbox", [(1, None)], 1)]


def _person_row(external_id):
    return {
        "external_id": external_id,
        "tags": [],
        "opted_out": False,
        "created_at": WHEN,
        "updated_at": WHEN,
    }


def test_on_postgresql_a_dead_connection_is_replaced_by_the_begin_that_checks_it(database):
    # The pool's check that a connection lives is the transaction's BEGIN (one round trip, not
    # two): a connection the server dropped is replaced before the unit runs anything.
    if database.engine.dialect.name != "postgresql":
        pytest.skip("only a database server drops connections")
    from psycopg import pq
    from sqlalchemy.pool import NullPool

    with database.session() as session:
        driver = connection_of(session).connection.driver_connection
        assert driver.info.transaction_status == pq.TransactionStatus.INTRANS
        before = driver.info.backend_pid
    with create_engine(database.url, poolclass=NullPool).connect() as admin:
        admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(before)}, 5000)")  # gone
    with database.session() as session:
        after = connection_of(session).connection.driver_connection.info.backend_pid
        assert after != before
        assert a_person(connection_of(session)) is not None


def test_a_commit_that_fails_raises_sqlalchemys_error_and_leaves_nothing_written(database):
    # The unit commits on the driver: a failed COMMIT is still SQLAlchemy's error, the unit's
    # writes are gone and its connection serves the next unit.
    if database.engine.dialect.name != "sqlite":
        pytest.skip("SQLite defers a foreign key to the commit when asked")
    consent = Prepared(insert(ConsentEvent.__table__))
    with pytest.raises(IntegrityError), database.session() as session:
        connection = connection_of(session)
        connection.connection.driver_connection.execute("PRAGMA defer_foreign_keys=ON")
        a_person(connection, "+447700900001")
        row = {"participant_id": 999999, "kind": "opt_out", "how": "sms", "at": WHEN}
        consent.run(connection, {**row, "detail": None})  # no such person: fails at COMMIT
    with database.session() as session:
        assert PERSON.first(connection_of(session), {"external_id": "+447700900001"}) is None
        assert a_person(connection_of(session), "+447700900002") is not None


def test_a_failed_commit_after_sqlalchemy_work_ends_the_drivers_transaction_in_the_turn(
    database,
):
    # SQLAlchemy's transaction was asked for (`session.execute`), then COMMIT failed: its
    # rollback is bookkeeping only, so the driver's own must end the transaction (and with it
    # SQLite's write lock) before the writers' turn goes to the next writer.
    if database.engine.dialect.name != "sqlite":
        pytest.skip("SQLite defers a foreign key to the commit when asked")
    from contextlib import contextmanager

    from sqlalchemy import text

    held_past_turn = []
    turn = database._writers.turn
    driver = []

    @contextmanager
    def watched_turn():
        try:
            with turn():
                yield
        finally:
            held_past_turn.append(driver[0].in_transaction)

    database._writers.turn = watched_turn
    consent = Prepared(insert(ConsentEvent.__table__))
    with pytest.raises(IntegrityError), database.session() as session:
        connection = connection_of(session)
        driver.append(connection.connection.driver_connection)
        driver[0].execute("PRAGMA defer_foreign_keys=ON")
        session.execute(text("SELECT 1"))  # SQLAlchemy's transaction now joins the unit's
        row = {"participant_id": 999999, "kind": "opt_out", "how": "sms", "at": WHEN}
        consent.run(connection, {**row, "detail": None})  # no such person: fails at COMMIT
    assert held_past_turn == [False]


def test_sqlite_busy_at_the_units_begin_is_transient(database):
    # Another process's writer holds the database past the busy timeout: BEGIN IMMEDIATE,
    # sent on the driver, fails as SQLAlchemy's error that `is_transient` knows.
    if database.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's one writer")
    import sqlite3

    from bot.storage.db import is_transient

    with database.engine.connect() as connection:  # the pool's one connection, waiting less
        connection.connection.driver_connection.execute("PRAGMA busy_timeout=50")
    other = sqlite3.connect(database.url.split(":///", 1)[1], isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(DBAPIError) as raised, database.session():
            pass
        assert is_transient(raised.value)
    finally:
        other.close()
    with database.engine.connect() as connection:
        connection.connection.driver_connection.execute("PRAGMA busy_timeout=15000")
    with database.session() as session:
        assert a_person(connection_of(session)) is not None


def test_the_pools_check_keeps_a_live_connection_and_replaces_a_dropped_one(database):
    # PostgreSQL's check is libpq's own BEGIN (`db._ping_psycopg`), not SQLAlchemy's query.
    if database.engine.dialect.name != "postgresql":
        pytest.skip("only a database server drops connections")
    from sqlalchemy import event, text
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


LITERAL_PERCENT = Prepared(
    select(PEOPLE.c.id, literal_column("'%(external_id)s and 5%'").label("words")).where(
        PEOPLE.c.external_id == bindparam("external_id")
    )
)


def test_a_literal_percent_sign_is_sent_as_written(database):
    # On psycopg the statement's %(name)s become %s; a literal "%(name)s" or "%" stays.
    if database.engine.dialect.paramstyle != "pyformat":
        pytest.skip("only psycopg's statements are rewritten here")
    with database.session() as session:
        person_id = a_person(session.connection(), external_id="+447700900123")
        found = LITERAL_PERCENT.first(session.connection(), {"external_id": "+447700900123"})
        assert found is not None and found.id == person_id
        assert found.words == "%(external_id)s and 5%"


def test_an_isolation_level_set_on_a_reused_connection_works(database):
    # PostgreSQL's pool check begins the transaction at checkout; a caller that then asks for
    # autocommit or read-only must get it on a reused connection as on a new one.
    if database.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's pool check")
    from sqlalchemy import text

    engine = database.engine
    for _ in range(3):  # new, then reused
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
    for _ in range(3):
        with engine.connect() as connection:
            connection.execution_options(postgresql_readonly=True)
            assert connection.execute(text("SHOW transaction_read_only")).scalar() == "on"
