"""Database connections, units of work and migrations, for SQLite and PostgreSQL alike.

A unit of work (`Database.session()`) owns what must happen after it commits: outbox rows
added inside it (`queue_after_commit`) are handed to the database's `after_commit` dispatcher
once, and only once, the rows exist for every other process to see. No caller pairs a write
with its own dispatch.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from bot.storage.prepared import driver_error

try:
    import fcntl
except ImportError:  # Windows: SQLite's own locking still keeps the data safe
    fcntl = None  # type: ignore[assignment]

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)

Queued = Sequence[tuple[int, datetime | None]]  # (row id, not before)
OUTBOX, INBOX = "outbox", "inbox"  # rows to send; inbound rows to handle again
_AFTER_COMMIT_KEY = "involve.after_commit"


def queue_after_commit(session: Session, rows: Queued, what: str = OUTBOX) -> None:
    """Dispatch these rows when the session's unit of work commits (never if it rolls back).
    If the dispatch then fails, the rows are still in the database and the reconciler finds
    them."""
    pending: dict[str, list[tuple[int, datetime | None]]]
    pending = session.info.setdefault(_AFTER_COMMIT_KEY, {})
    pending.setdefault(what, []).extend(rows)


_CONNECTION_KEY = "involve.connection"


def connection_of(session: Session) -> Connection:
    """The session's connection. Inside `Database.session()` (one transaction from start to
    end, never committed part-way) it is asked once and kept: the one writer runs a dozen
    statements per message, and each `session.connection()` walks the session's transaction
    state again."""
    found: Connection | None = session.info.get(_CONNECTION_KEY)
    return found if found is not None else session.connection()


def _sqlite_setup(engine: Engine) -> None:
    # pysqlite's own transaction handling would start writes lazily and fail with "database is
    # locked" on upgrade; we begin ourselves, IMMEDIATE by default, so writers queue politely.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        if conn.connection.driver_connection.in_transaction:
            # Begun on the driver by `Database.session()`; SQLAlchemy's transaction, made when
            # something asks the connection for it, is bookkeeping over that one.
            return
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        # On the driver itself (this begins every webhook's unit of work), its errors raised as
        # SQLAlchemy's, so a lock that timed out is still seen as passing (`is_transient`).
        try:
            conn.connection.driver_connection.execute(f"BEGIN {mode}")
        except conn.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(
                f"BEGIN {mode}", None, exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
            ) from exc


def make_engine(url: str, **kwargs: Any) -> Engine:
    # A failed statement's parameters are participants' numbers and words; SQLAlchemy would
    # put them in the exception text, and from there into every log and error report.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 15}, **kwargs
        )
        _sqlite_setup(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    engine = create_engine(url, **kwargs)
    if engine.dialect.driver == "psycopg":
        # The pool's check, sent by libpq itself, is the transaction's BEGIN (`_ping_psycopg`):
        # SQLAlchemy's switched psycopg to autocommit and back around a cursor for an empty
        # query, which cost every webhook more CPU than its round trip, and psycopg then sent
        # BEGIN before the first statement, another round trip.
        engine.dialect.do_ping = _ping_psycopg  # type: ignore[method-assign]
        event.listen(engine, "set_connection_execution_options", _before_session_options)
    return engine


# Options psycopg can set only outside a transaction.
_SESSION_OPTIONS = {"isolation_level", "postgresql_readonly", "postgresql_deferrable"}


def _before_session_options(connection: Connection, options: dict[str, Any]) -> None:
    """A reused connection comes out of the pool inside the BEGIN its check sent
    (`_ping_psycopg`), with nothing of its user's in it yet: that empty transaction is ended
    first, so an isolation level or read-only set on it works as on a new connection, not only
    sometimes. Work already begun through SQLAlchemy is left alone (psycopg refuses loudly)."""
    from psycopg import pq

    if not _SESSION_OPTIONS & options.keys() or connection.in_transaction():
        return
    driver = connection.connection.driver_connection
    if driver.pgconn.transaction_status == pq.TransactionStatus.INTRANS:
        driver.rollback()


def _ping_psycopg(dbapi_connection: Any) -> bool:
    """Whether a pooled psycopg connection still answers; False makes the pool replace it.
    Run by libpq in C with the GIL released. What it sends is the BEGIN psycopg would send
    before the connection's first statement anyway: psycopg reads the transaction's status
    from libpq, sees it begun and sends no other, so the check costs no round trip of its
    own. (A connection that goes unused costs a ROLLBACK when it goes back to the pool; an
    isolation level or read-only asked for on it ends that empty transaction first:
    `_before_session_options`.) An empty query where psycopg would not begin (autocommit, or
    already in a transaction)."""
    import psycopg  # only where PostgreSQL is used (SQLite needs no driver)
    from psycopg import pq

    pgconn = dbapi_connection.pgconn
    begin = (
        not dbapi_connection.autocommit and pgconn.transaction_status == pq.TransactionStatus.IDLE
    )
    try:
        result = pgconn.exec_(b"BEGIN" if begin else b";")
    except psycopg.Error:
        return False
    answer = pq.ExecStatus.COMMAND_OK if begin else pq.ExecStatus.EMPTY_QUERY
    return result.status == answer and pgconn.status == pq.ConnStatus.OK


def is_transient(exc: BaseException) -> bool:
    """A failure that the same work may not meet again: a deadlock, a serialization failure,
    a lost connection, SQLite busy. Worth retrying; anything else is a bug or bad data."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, GroupRolledBack):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if code in ("40001", "40P01", "55P03", "57P01", "08006", "08003", "08000"):
        return True
    if isinstance(exc, OperationalError):
        text = str(getattr(exc, "orig", exc)).lower()
        return "locked" in text or "busy" in text or "connection" in text or "closed" in text
    return False


class _WriterQueue:
    """SQLite lets one writer in at a time and makes the others poll with growing sleeps (up to
    100 ms each). Queueing writers here instead, on a thread lock and an flock beside the file,
    wakes the next one as soon as the last commits."""

    def __init__(self, database_path: str):
        self._thread_lock = threading.Lock()
        self._path = database_path + ".writers"
        self._fd: int | None = None

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self._thread_lock:
            if fcntl is None:
                yield
                return
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


class _UnitSession(Session):
    """The ORM session of `Database.session()`, kept and bound to one unit at a time."""


@event.listens_for(_UnitSession, "after_transaction_create")
def _join_the_unit(session: Session, transaction: Any) -> None:
    # ORM work begins. The unit began on the driver and SQLAlchemy's connection does not know
    # yet: its transaction is made now (bookkeeping only: on SQLite the begin listener sends no
    # second BEGIN; on psycopg SQLAlchemy's begin sends nothing), so the session joins it instead of owning it.
    # Its commit then leaves the unit's transaction to the unit (never committed part-way),
    # and the unit rolls back the whole of it on an error.
    if transaction.parent is None:
        connection = session.bind
        if isinstance(connection, Connection) and not connection.in_transaction():
            connection.begin()


def _driver_call(connection: Connection, statement: str) -> None:
    """BEGIN IMMEDIATE (SQLite) or COMMIT, straight on the driver; its errors raised as
    SQLAlchemy's, a lost connection invalidated, so `is_transient` and the pool see them as
    they see any other (a busy SQLite, a server gone)."""
    driver = connection.connection.driver_connection
    try:
        if statement == "COMMIT":
            driver.commit()  # sqlite3 and psycopg: nothing sent when no transaction began
        else:
            driver.execute(statement)
    except connection.dialect.loaded_dbapi.Error as exc:
        raise driver_error(connection, exc, statement) from exc


def _roll_back(connection: Connection) -> None:
    """After an error in a unit: its transaction rolled back. If even that fails, the
    connection is invalidated (the server ends its transaction with it) and the unit's own
    error is the one raised."""
    if connection.invalidated or connection.closed:
        return  # a lost connection: nothing left to roll back
    try:
        transaction = connection.get_transaction()
        if transaction is not None:
            transaction.rollback()
        # The driver's own too, always: after a failed COMMIT SQLAlchemy's transaction is
        # inactive and its rollback is bookkeeping only, while the driver would still hold the
        # transaction (on SQLite, the write lock, past the writers' turn). With none open the
        # driver sends nothing.
        if not (connection.invalidated or connection.closed):
            connection.connection.driver_connection.rollback()
    except Exception:
        log.warning("a unit of work could not roll back; its connection is dropped")
        if not connection.invalidated:
            connection.invalidate()


Dispatcher = Callable[[str, Queued], None]  # (OUTBOX or INBOX, rows)
T = TypeVar("T")

GROUP_LIMIT = 8  # units committed together at most (`Database.together`)
_UNIT_SAVEPOINT = "involve_unit"


class GroupRolledBack(Exception):
    """Another unit's failure undid the transaction this one was written in
    (`Database.together`): nothing of it stands, and trying it again is safe."""


class _Member:
    """One unit of work handed to `Database.together`, and what became of it."""

    __slots__ = ("error", "finished", "lead", "pending", "result", "woken", "work")

    def __init__(self, work: Callable[[Session], Any]):
        self.work = work
        self.woken = threading.Event()  # finished, or asked to lead
        self.lead = False
        self.finished = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.pending: dict[str, list[tuple[int, datetime | None]]] | None = None

    def finish(self) -> None:
        self.finished = True
        self.woken.set()


class Database:
    """One per process: an engine, a session factory, and who dispatches after commit."""

    def __init__(self, url: str, after_commit: Dispatcher | None = None, **engine_kwargs: Any):
        self.url = url
        self.after_commit = after_commit
        self.engine = make_engine(url, **engine_kwargs)
        path = url.split(":///", 1)[-1] if url.startswith("sqlite") else ""
        on_disk = bool(path) and path != ":memory:"
        self._writers = _WriterQueue(path) if on_disk else None
        # `together`'s units waiting in this process, and whether a thread is committing them.
        self._members: deque[_Member] = deque()
        self._members_lock = threading.Lock()
        self._leading = False
        self._sqlite = url.startswith("sqlite")
        self._idle_sessions: list[Session] = []  # see _take_session
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readonly = sessionmaker(
            self.engine.execution_options(sqlite_begin="DEFERRED"), expire_on_commit=False
        )

    @property
    def writers_take_turns(self) -> bool:
        """Writers here wait for one another's whole unit of work (SQLite's one writer at a
        time), and `together` commits the units that wait together."""
        return self._writers is not None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any error; what it queued
        for after the commit is dispatched once it has committed."""
        # The one writer runs its statements on the connection's driver (`connection_of`,
        # bot/storage/prepared.py), so the unit's transaction is the driver's: begun (SQLite:
        # BEGIN IMMEDIATE here; PostgreSQL: by the pool's check, `_ping_psycopg`) and committed
        # on it. SQLAlchemy's transaction objects and their events cost more than BEGIN and
        # COMMIT themselves, so they are made only when something asks SQLAlchemy's connection
        # for a transaction (ORM work, `Connection.execute`), as bookkeeping over the driver's,
        # and the unit then commits or rolls back through them. The connection is taken from
        # the pool before SQLite's writers' turn and goes back after it, idle and holding no
        # lock; the ORM session is a kept one (`_UnitSession`), made ready outside the turn.
        turn = self._writers.turn() if self._writers is not None else nullcontext()
        connection = self.engine.connect()
        session = self._take_session(connection)
        try:
            with turn:
                if self._sqlite:
                    _driver_call(connection, "BEGIN IMMEDIATE")
                try:
                    yield session
                    if session.in_transaction():
                        # What the ORM holds is written; the session joined the unit's
                        # transaction (`_join_the_unit`), so this commit leaves it to the unit.
                        session.commit()
                    transaction = connection.get_transaction()
                    if transaction is not None:
                        transaction.commit()
                    else:
                        _driver_call(connection, "COMMIT")
                except BaseException:
                    if session.in_transaction():
                        session.close()  # its savepoints too, before the unit's transaction
                    _roll_back(connection)
                    raise
            pending = session.info.get(_AFTER_COMMIT_KEY)
        finally:
            try:
                self._put_back(session)
            finally:
                connection.close()
        if pending:
            for what, rows in pending.items():
                self._dispatch(what, rows)

    def together(self, work: Callable[[Session], T]) -> T:
        """`work` as a unit of work of its own (`session`), its result returned once it is
        committed. Where writers take turns (SQLite), the units this process's threads hand
        in while one is being written are written after it in the same transaction, each in
        a savepoint of its own, and committed together (at most GROUP_LIMIT): one commit, and
        the pages they share written once, instead of one each. A unit that fails is rolled
        back to its savepoint and its error raised to its own caller only. If a unit's
        failure undoes the whole transaction (SQLAlchemy rolls all of it back when an ORM
        flush fails), the others get `GroupRolledBack`, which `is_transient` calls worth
        trying again at once; if the commit itself fails, every unit in it gets that error,
        as each would have alone. `work` may run on another thread (whichever is committing),
        so it must take all it needs as arguments and keep nothing of the session."""
        if self._writers is None:
            with self.session() as session:
                return work(session)
        member = _Member(work)
        connection = self.engine.connect()
        try:
            with self._members_lock:
                self._members.append(member)
                # Nobody leading: nobody else waits, and this one leads. `lead` stays set
                # until `_lead` takes it out of the line, so an interrupt before then hands
                # the lead on (`_leave`) instead of losing it.
                lead = member.lead = not self._leading
                self._leading = True
            try:
                while True:
                    if lead:
                        self._lead(connection, member)
                    if member.finished:
                        break
                    member.woken.wait()
                    member.woken.clear()
                    lead = member.lead and not member.finished
            except BaseException:
                self._leave(member)  # interrupted while waiting (Ctrl-C): out of the line
                raise
        finally:
            connection.close()
        if member.error is not None:
            raise member.error
        if member.pending:
            for what, rows in member.pending.items():
                self._dispatch(what, rows)
        return member.result  # type: ignore[no-any-return]

    def _leave(self, member: _Member) -> None:
        """A unit whose caller stopped waiting leaves the line; if it had been handed the
        lead, the next one takes it, so nobody behind it waits for ever. (One already being
        written is committed or not with its group: its caller will not know which.)"""
        with self._members_lock:
            if member in self._members:
                self._members.remove(member)
            if member.lead and not member.finished:
                member.lead = False
                self._hand_over()

    def _hand_over(self) -> None:
        # Under `_members_lock`.
        if self._members:
            self._members[0].lead = True
            self._members[0].woken.set()
        else:
            self._leading = False

    def _lead(self, connection: Connection, own: _Member) -> None:
        """Write `own` and the units waiting behind it, in one transaction; then hand those
        still waiting to the first of them (its caller is waiting anyway), or stop leading."""
        assert self._writers is not None
        group: list[_Member] = []
        committing = committed = False
        try:
            with self._members_lock:
                # First in line: nobody leads while any wait, so whoever is handed the lead,
                # or found nobody leading, is at the front.
                group.append(self._members.popleft())
                own.lead = False
            assert group[0] is own
            with self._writers.turn():
                try:
                    _driver_call(connection, "BEGIN IMMEDIATE")
                    self._write_member(connection, own)
                    # Committed through SQLAlchemy's transaction, where a unit asked for one
                    # (ORM work), as soon as that unit is written.
                    while len(group) < GROUP_LIMIT and connection.get_transaction() is None:
                        with self._members_lock:
                            member = self._members.popleft() if self._members else None
                        if member is None:
                            break
                        group.append(member)
                        self._write_member(connection, member)
                    committing = True
                    transaction = connection.get_transaction()
                    if transaction is not None:
                        transaction.commit()
                    else:
                        _driver_call(connection, "COMMIT")
                    committed = True
                except BaseException:
                    if not committed:
                        _roll_back(connection)
                    raise
        except BaseException as exc:
            self._failed(group, own, exc, committing, committed)
        finally:
            try:
                with self._members_lock:
                    if not group and own in self._members:
                        self._members.remove(own)  # stopped before it took itself out
                    self._hand_over()
            finally:
                for member in group or [own]:
                    member.finish()

    @staticmethod
    def _failed(
        group: list[_Member],
        own: _Member,
        exc: BaseException,
        committing: bool,
        committed: bool,
    ) -> None:
        """Who learns what, when a group's transaction failed (or this thread was stopped).

        An interrupt (KeyboardInterrupt, SystemExit: not an `Exception`) is this thread's,
        whichever unit it was running: it goes to this thread's own caller only. The others'
        work stands if it was committed; if it was not, they are told to try again; if the
        COMMIT was under way, nobody can say, and they get an error that is not worth an
        immediate retry (the writer then keeps the message, and finds it stored already if
        it was). Otherwise nothing of the group stands: a failed BEGIN or COMMIT is
        everyone's, as it would have been alone, and a unit that undid the transaction keeps
        its own error while the others, who did nothing wrong, are told to try again."""
        if not isinstance(exc, Exception):
            own.error = exc
            for member in group:
                if member is own or committed:
                    continue
                member.result, member.pending = None, None
                member.error = (
                    RuntimeError("interrupted while committing: whether it was written is unknown")
                    if committing
                    else GroupRolledBack("interrupted before its group was committed")
                )
            return
        if committed:
            return  # a failure after the commit: what was written stands
        shared: BaseException
        if committing or len(group) == 1:
            shared = exc
        else:
            shared = GroupRolledBack("another unit's failure undid this one's transaction")
        for member in group:
            if member.error is None:
                member.error = shared
            member.result, member.pending = None, None

    def _write_member(self, connection: Connection, member: _Member) -> None:
        """One unit of a group, in a savepoint: kept, or rolled back alone. Raises when the
        group's transaction cannot go on: `GroupRolledBack` after noting the unit's own error
        (its failure undid the transaction), or an interrupt as it is (`_failed` gives it to
        this thread's own caller)."""
        session = self._take_session(connection)
        driver = connection.connection.driver_connection
        try:
            _driver_call(connection, f"SAVEPOINT {_UNIT_SAVEPOINT}")
            try:
                member.result = member.work(session)
                if session.in_transaction():
                    session.commit()  # written; joined to the group's transaction
                member.pending = session.info.get(_AFTER_COMMIT_KEY)
            except BaseException as exc:
                if not isinstance(exc, Exception):
                    raise  # an interrupt: this thread's, not the unit's (`_failed`)
                member.error = exc
                if session.in_transaction():
                    session.close()
                if not driver.in_transaction:
                    # A failed ORM flush (SQLAlchemy rolled the whole transaction back):
                    # the group cannot go on.
                    raise GroupRolledBack("the group's transaction was undone") from exc
                # Its statements undone, the others' kept.
                _driver_call(connection, f"ROLLBACK TO {_UNIT_SAVEPOINT}")
            _driver_call(connection, f"RELEASE {_UNIT_SAVEPOINT}")
        finally:
            self._put_back(session)

    def _take_session(self, connection: Connection) -> Session:
        # Making an ORM session and closing it cost a unit more than most units' ORM work
        # (usually none): one is kept per unit running at once and bound to each unit's
        # connection. A plain list: `pop` and `append` are atomic, so threads need no lock.
        try:
            session = self._idle_sessions.pop()
        except IndexError:
            session = _UnitSession(expire_on_commit=False)
        session.bind = connection
        session.info[_CONNECTION_KEY] = connection
        return session

    def _put_back(self, session: Session) -> None:
        if session.in_transaction() or session.identity_map:
            session.close()  # ORM work: its objects detached (if this fails, it is not kept)
        session.bind = None
        session.info.clear()
        self._idle_sessions.append(session)

    def _dispatch(self, what: str, rows: Queued) -> None:
        if self.after_commit is None or not rows:
            return  # no queue in this process: the worker's reconciler finds the rows
        try:
            self.after_commit(what, rows)
        except Exception as exc:  # Redis away: the rows are safe; the reconciler finds them
            log.warning(
                "could not enqueue %d %s rows now (%s); the reconciler will",
                len(rows),
                what,
                type(exc).__name__,
            )

    @contextmanager
    def read(self) -> Iterator[Session]:
        """For long reads (exports): on SQLite it does not hold the write lock."""
        with self._readonly() as session, session.begin():
            yield session

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
