"""`Database.together`: units of work handed in at once by one process's threads, committed
together where writers take turns (SQLite), each kept or rolled back on its own."""

import threading
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from bot.storage.db import connection_of
from bot.storage.models import ConsentEvent, Participant
from tests.test_prepared import WHEN, a_person


class Overlapping:
    """A first unit that waits, inside its transaction, until the others are handed in."""

    def __init__(self, database, works):
        self.database = database
        self.works = works
        self.outcomes: dict[int, object] = {}
        self.connections: dict[int, int] = {}
        self.writing, self.go = threading.Event(), threading.Event()

    def unit(self, n, work):
        def run(session):
            connection = connection_of(session)
            self.connections[n] = id(connection.connection.driver_connection)
            if n == 0:
                self.writing.set()
                assert self.go.wait(10)
            return work(session)

        return run

    def hand_in(self, n, work):
        try:
            self.outcomes[n] = self.database.together(self.unit(n, work))
        except Exception as exc:
            self.outcomes[n] = exc

    def run(self):
        threads = [
            threading.Thread(target=self.hand_in, args=(n, work))
            for n, work in enumerate(self.works)
        ]
        threads[0].start()
        assert self.writing.wait(10)
        for waiting, thread in enumerate(threads[1:], start=1):
            thread.start()  # one at a time, so they wait behind the first in this order
            deadline = time.monotonic() + 10
            while len(self.database._members) < waiting:
                assert time.monotonic() < deadline, "never handed in"
                time.sleep(0.005)
        self.go.set()
        for thread in threads:
            thread.join(10)
        return self.outcomes


@pytest.fixture
def turns(database):
    if not database.writers_take_turns:
        pytest.skip("PostgreSQL's writers do not take turns: each unit commits alone")
    return database


def person(session, number):
    return a_person(connection_of(session), number)


def people(database) -> list[str]:
    with database.session() as session:
        return sorted(session.scalars(select(Participant.external_id)).all())


def test_units_handed_in_while_one_is_written_are_committed_with_it(turns):
    numbers = [f"+4477009000{n:02d}" for n in range(4)]
    together = Overlapping(turns, [lambda s, number=n: person(s, number) for n in numbers])
    outcomes = together.run()
    assert all(isinstance(outcomes[n], int) for n in range(4)), outcomes
    assert len(set(together.connections.values())) == 1, "one connection, one transaction"
    assert people(turns) == numbers


def test_a_unit_that_fails_is_rolled_back_alone_and_its_error_is_its_own(turns):
    def fails(session):
        person(session, "+447700900099")
        raise LookupError("this one's own error")

    works = [lambda s: person(s, "+447700900001"), fails, lambda s: person(s, "+447700900002")]
    outcomes = Overlapping(turns, works).run()
    assert isinstance(outcomes[1], LookupError)
    assert isinstance(outcomes[0], int) and isinstance(outcomes[2], int)
    assert people(turns) == ["+447700900001", "+447700900002"]


def test_when_the_commit_fails_every_unit_of_it_fails_and_nothing_stands(turns):
    from sqlalchemy import insert

    from bot.storage.prepared import Prepared

    consent = Prepared(insert(ConsentEvent.__table__))

    def breaks_the_commit(session):
        connection = connection_of(session)
        connection.connection.driver_connection.execute("PRAGMA defer_foreign_keys=ON")
        row = {"participant_id": 999999, "kind": "opt_out", "how": "sms", "at": WHEN}
        consent.run(connection, {**row, "detail": None})  # no such person: fails at COMMIT

    works = [lambda s: person(s, "+447700900001"), breaks_the_commit]
    outcomes = Overlapping(turns, works).run()
    assert all(isinstance(outcomes[n], IntegrityError) for n in range(2)), outcomes
    assert people(turns) == []
    with turns.session() as session:
        assert session.scalar(select(func.count(ConsentEvent.id))) == 0
    # The next unit begins afresh.
    assert isinstance(turns.together(lambda s: a_person(connection_of(s), "+447700900003")), int)
    assert people(turns) == ["+447700900003"]


def test_orm_work_in_a_group_is_committed_with_the_units_before_it(turns):
    def with_the_orm(session):
        session.add(Participant(external_id="+447700900002", tags=[]))
        session.flush()
        return "orm"

    works = [lambda s: person(s, "+447700900001"), with_the_orm, with_the_orm]
    together = Overlapping(turns, works)
    outcomes = together.run()
    assert isinstance(outcomes[0], int) and outcomes[1] == "orm"
    # The ORM's unit ended its group (committed through SQLAlchemy's transaction): the last
    # one, the same again, is written in the next group, led by its own thread, and finds the
    # number taken.
    first, orm, last = (together.connections[n] for n in range(3))
    assert first == orm != last
    assert isinstance(outcomes[2], IntegrityError)
    assert people(turns) == ["+447700900001", "+447700900002"]


def test_a_failed_orm_flush_undoes_the_group_and_the_others_are_told_to_try_again(turns):
    # SQLAlchemy rolls the whole transaction back when a flush fails, savepoints and all:
    # the unit before it did nothing wrong, so it gets an error worth an immediate retry
    # (`receive()` tries again at once), not the other unit's.
    from bot.storage.db import GroupRolledBack, is_transient

    def taken_number(session):
        session.add(Participant(external_id="+447700900001", tags=[]))
        session.flush()

    works = [lambda s: person(s, "+447700900001"), taken_number]
    outcomes = Overlapping(turns, works).run()
    assert isinstance(outcomes[0], GroupRolledBack) and is_transient(outcomes[0])
    assert isinstance(outcomes[1], IntegrityError) and not is_transient(outcomes[1])
    assert people(turns) == []
    assert isinstance(turns.together(lambda s: person(s, "+447700900001")), int)  # again: fine


class Interrupt(BaseException):
    """As KeyboardInterrupt or a worker's SystemExit, without stopping pytest."""


def test_an_interrupt_is_the_writing_threads_own_and_the_others_try_again(turns):
    # Ctrl-C or a worker's SystemExit lands on whichever thread is writing the group, while
    # it runs someone else's unit: it is that thread's caller who is stopped. The unit it
    # was running did nothing wrong and, like the rest of the group, is told to try again.
    from bot.storage.db import GroupRolledBack, is_transient

    def interrupted(session):
        person(session, "+447700900099")
        raise Interrupt

    works = [lambda s: person(s, "+447700900001"), interrupted, lambda s: person(s, "+4477009002")]
    together = Overlapping(turns, works)
    together.hand_in = lambda n, work, hand_in=together.hand_in: _catching(
        hand_in, n, work, together
    )
    outcomes = together.run()
    assert isinstance(outcomes[0], Interrupt)  # the writing thread's own caller
    assert isinstance(outcomes[1], GroupRolledBack) and is_transient(outcomes[1])
    assert isinstance(outcomes[2], int)  # in the next group
    assert people(turns) == ["+4477009002"]
    assert not turns._members and not turns._leading


def _catching(hand_in, n, work, together):
    try:
        hand_in(n, work)
    except Interrupt as exc:
        together.outcomes[n] = exc


def test_a_caller_interrupted_while_its_unit_waits_leaves_the_line(turns):
    # Ctrl-C (here a signal's handler raising) while a unit waits behind another: it leaves
    # the line, and the lead passes on, so later units are not left waiting for ever.
    import signal

    writing, go = threading.Event(), threading.Event()

    def held(session):
        session.add(Participant(external_id="+447700900001", tags=[]))
        session.flush()  # ORM work: its group takes nobody behind it
        writing.set()
        assert go.wait(10)

    first = threading.Thread(target=turns.together, args=(held,))
    first.start()
    assert writing.wait(10)

    def interrupt():
        deadline = time.monotonic() + 10
        while not turns._members and time.monotonic() < deadline:
            time.sleep(0.005)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
        time.sleep(0.05)
        go.set()

    def raise_interrupt(_signum, _frame):
        raise Interrupt

    previous = signal.signal(signal.SIGUSR1, raise_interrupt)
    try:
        threading.Thread(target=interrupt).start()
        with pytest.raises(Interrupt):
            turns.together(lambda s: person(s, "+447700900002"))
    finally:
        signal.signal(signal.SIGUSR1, previous)
        go.set()
    first.join(10)
    assert not turns._members and not turns._leading
    later = threading.Thread(target=turns.together, args=(lambda s: person(s, "+447700900003"),))
    later.start()
    later.join(10)
    assert not later.is_alive(), "a later unit waited for a lead nobody held"
    assert "+447700900003" in people(turns)


def test_a_unit_interrupted_as_it_takes_the_lead_passes_it_on(turns, monkeypatch):
    # Handed the lead, the unit's thread is stopped before it takes itself out of the line:
    # the lead goes to the next one behind it, which is written, and later units still are.
    real_lead = turns._lead
    stopped = []

    def lead(connection, own):
        if own.work.__name__ == "second" and not stopped:
            stopped.append(own)
            raise Interrupt
        return real_lead(connection, own)

    monkeypatch.setattr(turns, "_lead", lead)

    def second(session):
        return person(session, "+447700900002")

    def with_the_orm(session):
        session.add(Participant(external_id="+447700900001", tags=[]))
        session.flush()  # ORM work ends its group: the next unit is handed the lead

    works = [with_the_orm, second, lambda s: person(s, "+447700900003")]
    together = Overlapping(turns, works)
    together.unit = lambda n, work, unit=together.unit: second if n == 1 else unit(n, work)
    together.hand_in = lambda n, work, hand_in=together.hand_in: _catching(
        hand_in, n, work, together
    )
    outcomes = together.run()
    assert stopped and isinstance(outcomes[1], Interrupt)
    assert isinstance(outcomes[2], int), outcomes
    assert not turns._members and not turns._leading
    assert isinstance(turns.together(lambda s: person(s, "+447700900004")), int)
    assert people(turns) == ["+447700900001", "+447700900003", "+447700900004"]


def test_on_postgresql_each_unit_is_its_own(database):
    if database.writers_take_turns:
        pytest.skip("SQLite's writers take turns")
    assert isinstance(database.together(lambda s: person(s, "+447700900123")), int)
    assert people(database) == ["+447700900123"]
