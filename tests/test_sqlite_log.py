"""SQLite's write-ahead log is copied back into the database after a commit, outside the
writers' turn, not inside whichever commit passes 1000 pages (which made every writer queued
behind it wait)."""

import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import insert, select, text

from bot.storage import db
from bot.storage.models import Participant

PEOPLE = Participant.__table__


def _database(tmp_path: Path) -> tuple[db.Database, Path]:
    path = tmp_path / "log.sqlite3"
    url = f"sqlite:///{path}"
    db.upgrade(url)
    return db.Database(url), path


def _write_many(database: db.Database, units: int, start: int = 0) -> None:
    for n in range(start, start + units):
        with database.session() as session:
            session.execute(
                insert(PEOPLE).values(
                    external_id=f"p{n}",
                    name="x" * 3000,  # about a page a row: the log grows fast
                    tags=[],
                    opted_out=False,
                )
            )


def test_a_commit_does_not_checkpoint_inside_the_writers_turn(tmp_path):
    database, _path = _database(tmp_path)
    with database.engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert driver.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    checkpoints_in_turn = []
    turn = database._writers.turn

    def watched_turn():
        # While a unit holds the turn, no checkpoint is running in this process.
        with turn():
            checkpoints_in_turn.append(database._checkpoints._busy.locked())
            yield

    database._writers.turn = contextmanager(watched_turn)
    _write_many(database, 50)
    assert checkpoints_in_turn and not any(checkpoints_in_turn)
    database.dispose()


def test_the_log_is_copied_back_and_stays_bounded(tmp_path):
    database, path = _database(tmp_path)
    log = Path(f"{path}-wal")
    largest = 0
    for start in range(0, 3000, 100):
        _write_many(database, 100, start)
        largest = max(largest, log.stat().st_size)
    # 3000 rows of ~3 KB is ~12 MB written; the log never held more than a little over the
    # threshold (each unit adds a page or two past it before the checkpoint after it).
    assert largest < 2 * db._Checkpoints.THRESHOLD
    # Everything is there, for a reader that never saw the log too.
    database.dispose()
    with sqlite3.connect(path) as plain:
        assert plain.execute("SELECT count(*) FROM participants").fetchone()[0] == 3000
    assert os.path.getsize(path) > 3000 * 3000  # copied into the database file itself


def test_writers_in_threads_checkpoint_safely(tmp_path):
    database, _path = _database(tmp_path)
    errors: list[BaseException] = []

    def writer(start: int) -> None:
        try:
            _write_many(database, 400, start)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n * 1000,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with database.session() as session:
        assert session.execute(select(text("count(*)")).select_from(PEOPLE)).scalar() == 1600
    database.dispose()
