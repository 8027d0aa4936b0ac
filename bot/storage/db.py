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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

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
        # SQLite would copy the log into the database inside whichever commit passes 1000
        # pages: 3-5 ms, every 60-odd messages, with the writers' turn held, so every writer
        # queued behind it waits too. The unit of work checkpoints after its commit instead,
        # out of the turn (`_Checkpoints`).
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        # The log file is reused from its start after a checkpoint, and cut back to this size
        # then: so its size says how much was written since (`_Checkpoints.due`).
        cursor.execute(f"PRAGMA journal_size_limit={_Checkpoints.THRESHOLD // 2}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
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
        # The pool's check, as SQLAlchemy's (an empty query, one round trip), sent by libpq
        # itself: SQLAlchemy's switched psycopg to autocommit and back around a cursor for it,
        # which cost every webhook more CPU than the round trip.
        engine.dialect.do_ping = _ping_psycopg  # type: ignore[method-assign]
    return engine


def _ping_psycopg(dbapi_connection: Any) -> bool:
    """Whether a pooled psycopg connection still answers; False makes the pool replace it.
    Run by libpq in C with the GIL released; outside psycopg's transaction bookkeeping, which
    is safe here: a connection comes back to the pool rolled back, idle."""
    import psycopg  # only where PostgreSQL is used (SQLite needs no driver)

    pgconn = dbapi_connection.pgconn
    try:
        result = pgconn.exec_(b";")
    except psycopg.Error:
        return False
    return (
        result.status == psycopg.pq.ExecStatus.EMPTY_QUERY
        and pgconn.status == psycopg.pq.ConnStatus.OK
    )


def is_transient(exc: BaseException) -> bool:
    """A failure that the same work may not meet again: a deadlock, a serialization failure,
    a lost connection, SQLite busy. Worth retrying; anything else is a bug or bad data."""
    from sqlalchemy.exc import DBAPIError, OperationalError

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


class _Checkpoints:
    """Copies SQLite's write-ahead log back into the database once it has grown past
    SQLite's own threshold (1000 pages), after a commit and outside the writers' turn.

    A PASSIVE checkpoint waits for nobody: writers go on appending to the log while it
    copies, readers keep their snapshot, and what it cannot copy yet (frames a reader still
    needs) is copied by a later one. One thread of the process checkpoints at a time; another
    process checkpointing at the same moment makes this one a no-op (SQLite's own lock)."""

    THRESHOLD = 1000 * 4096  # bytes of log, SQLite's default of 1000 pages of 4 KiB

    def __init__(self, database_path: str):
        self._log = database_path + "-wal"
        self._busy = threading.Lock()

    def due(self) -> bool:
        try:
            return os.stat(self._log).st_size >= self.THRESHOLD
        except OSError:  # no log yet (nothing written since the last reset)
            return False

    def run(self, engine: Engine) -> None:
        """A checkpoint on a connection of the engine's pool."""
        pooled = engine.raw_connection()
        try:
            self.run_on(pooled.driver_connection)
        finally:
            pooled.close()

    def run_on(self, driver_connection: Any) -> None:
        """A checkpoint on this sqlite3 connection, in no transaction of its own."""
        if not self._busy.acquire(blocking=False):
            return  # another thread of this process is at it
        try:
            driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except Exception as exc:  # the data is safe in the log; the next commit tries again
            log.warning("SQLite checkpoint failed (%s)", type(exc).__name__)
        finally:
            self._busy.release()


Dispatcher = Callable[[str, Queued], None]  # (OUTBOX or INBOX, rows)


class Database:
    """One per process: an engine, a session factory, and who dispatches after commit."""

    def __init__(self, url: str, after_commit: Dispatcher | None = None, **engine_kwargs: Any):
        self.url = url
        self.after_commit = after_commit
        self.engine = make_engine(url, **engine_kwargs)
        path = url.split(":///", 1)[-1] if url.startswith("sqlite") else ""
        on_disk = bool(path) and path != ":memory:"
        self._writers = _WriterQueue(path) if on_disk else None
        self._checkpoints = _Checkpoints(path) if on_disk else None
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readonly = sessionmaker(
            self.engine.execution_options(sqlite_begin="DEFERRED"), expire_on_commit=False
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any error; what it queued
        for after the commit is dispatched once it has committed."""
        # The transaction is the connection's, begun and committed on it; the session joins
        # it, and only when ORM work asks for it (an ORM session's own begin, commit and
        # connection bookkeeping cost the one writer more than a message's statements, which
        # run on the connection itself: `connection_of`). The connection is taken from the
        # pool before the writers' turn and goes back after it, idle and holding no lock.
        turn = self._writers.turn() if self._writers is not None else nullcontext()
        with (
            self.engine.connect() as connection,
            turn,
            connection.begin(),
            Session(bind=connection, expire_on_commit=False) as session,
        ):
            session.info[_CONNECTION_KEY] = connection
            yield session
            if session.in_transaction():
                # What the ORM still holds is written; the joined session leaves the commit
                # to the connection's transaction.
                session.commit()
        if self._checkpoints is not None and self._checkpoints.due():
            self._checkpoints.run(self.engine)
        for what, rows in session.info.pop(_AFTER_COMMIT_KEY, {}).items():
            self._dispatch(what, rows)

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
