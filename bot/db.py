"""Database connections and migrations, for SQLite and PostgreSQL alike."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

try:
    import fcntl
except ImportError:  # Windows: SQLite's own locking still keeps the data safe
    fcntl = None  # type: ignore[assignment]

MIGRATIONS = Path(__file__).parent / "migrations"


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
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")


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
    return create_engine(url, **kwargs)


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


class Database:
    """One per process: an engine and a session factory."""

    def __init__(self, url: str, **engine_kwargs: Any):
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        path = url.split(":///", 1)[-1] if url.startswith("sqlite") else ""
        self._writers = _WriterQueue(path) if path and path != ":memory:" else None
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readonly = sessionmaker(
            self.engine.execution_options(sqlite_begin="DEFERRED"), expire_on_commit=False
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on any error."""
        if self._writers is None:
            with self.sessions() as session, session.begin():
                yield session
            return
        with self._writers.turn(), self.sessions() as session, session.begin():
            yield session

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
