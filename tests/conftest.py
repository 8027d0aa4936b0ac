"""Fixtures: real databases (SQLite always, PostgreSQL where TEST_DATABASE_URL is set) and a
real Redis (TEST_REDIS_URL, else the local server's database 13, else an embedded server).

Tests only ever wipe what they created: a fresh PostgreSQL database per run, dropped at the end,
and a Redis database that carries our marker key (we refuse to touch one that holds other keys).

Under pytest-xdist (`./dev test` runs `-n auto`) every worker is a run of its own: its own temp
folder, SQLite file and PostgreSQL database, and the Redis database after the one before it
(TEST_REDIS_URL's number, or 13, plus the worker's index: gw0 -> 13, gw1 -> 14, ...).
Tests marked `slow` run only with `--slow` (CI's `.ci/run` passes it) or `-m slow`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from argon2 import PasswordHasher
from redis import Redis
from sqlalchemy import create_engine, make_url, text

from bot.channels import load_settings  # the core's settings and each channel's own
from bot.commands import runtime
from bot.config import Settings
from bot.storage import db as dbmod
from bot.storage.db import Database
from bot.storage.models import Base
from tests.fakes import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, FakeTwilio

ROOT = Path(__file__).resolve().parent.parent
CONVERSATIONS = ROOT / "conversations"
REDIS_MARKER = "involve:test-database"
BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])
DEFAULT_TEST_REDIS = "redis://127.0.0.1:6379/13"


# --- slow tests ---------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow",
        action="store_true",
        help="also run the tests marked slow (end-to-end runs of whole processes); CI does",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow") or "slow" in (config.option.markexpr or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow (CI does)")
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(skip)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Each run gets its own temp folder, removed when the run ends, pass or fail.

    pytest's default keeps the last three runs in the temp folder; its "none" policy instead
    deletes every unlocked run folder there, another run's in progress included. A folder of
    our own, named before pytest makes one, avoids both. `--basetemp` still wins.

    It is in memory (/dev/shm) where there is one and TMPDIR does not say otherwise: every
    SQLite checkpoint syncs to disk, and on a disk shared with other work each sync can take a
    tenth of a second; in memory the same SQLite, in the same WAL mode, syncs at once.
    """
    if config.option.basetemp is None:
        memory = Path("/dev/shm")
        in_memory = not os.environ.get("TMPDIR") and memory.is_dir() and os.access(memory, os.W_OK)
        # Short names: Unix socket paths are limited to about 100 characters.
        base = tempfile.mkdtemp(prefix="involve-tests-", dir=memory if in_memory else None)
        config.option.basetemp = base
        atexit.register(shutil.rmtree, base, ignore_errors=True)


def _pg_url(raw: str):
    url = make_url(raw)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.sqlite3'}"
        dbmod.upgrade(url)
        yield url
        return
    with _fresh_pg_database() as url:
        dbmod.upgrade(url)
        yield url


@contextmanager
def _fresh_pg_database() -> Iterator[str]:
    """A new, uniquely named PostgreSQL database on TEST_DATABASE_URL's server, dropped after."""
    base = _pg_url(os.environ["TEST_DATABASE_URL"])
    name = f"{base.database or 'involve_test'}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
        # Commits need not wait for the server's disk: a test database is never recovered
        # after a crash, and what every other connection sees is the same. On a shared disk
        # each wait was tens of milliseconds, and the tests commit thousands of times.
        conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own with no tables at all, for tests that run migrations
    themselves (a copy of a database as an older revision left it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    with _fresh_pg_database() as url:
        yield url


def wipe(database: Database) -> None:
    from bot.conversations import forget_cached_surveys

    forget_cached_surveys()  # ids are reused after a wipe
    with database.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    wipe(database)
    yield database
    wipe(database)
    database.dispose()


def xdist_worker_index() -> int:
    """0 in a plain run; n in pytest-xdist's worker gw<n>."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))


def redis_database_after(url: str, steps: int) -> str:
    """The same Redis server's database `steps` numbers after the one `url` names."""
    if steps == 0:
        return url
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if "db" in query or parts.scheme == "unix":
        query["db"] = str(int(query.get("db", 0)) + steps)
        return urlunsplit(parts._replace(query=urlencode(query)))
    return urlunsplit(parts._replace(path=f"/{int(parts.path.strip('/') or 0) + steps}"))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from bot.commands.embedded_redis import EmbeddedRedis

    url = redis_database_after(
        os.environ.get("TEST_REDIS_URL") or DEFAULT_TEST_REDIS, xdist_worker_index()
    )
    server = None
    try:
        client = Redis.from_url(url, socket_connect_timeout=1)
        client.ping()
    except Exception:  # no server there (or no such database): one of our own
        # Short path: Unix socket paths are limited to about 100 characters.
        server = EmbeddedRedis(
            Path(f"/tmp/involve-test-redis-{uuid.uuid4().hex[:8]}"), persist=False
        ).start()
        url = server.url
        client = Redis.from_url(url)
    if client.dbsize() and not client.exists(REDIS_MARKER):
        pytest.exit(
            f"the Redis database at {url} holds keys that are not ours; set TEST_REDIS_URL to an empty one",
            2,
        )
    client.flushdb()
    client.set(REDIS_MARKER, "1")
    client.close()
    yield url
    client = Redis.from_url(url)
    client.flushdb()
    client.set(REDIS_MARKER, "1")  # still ours next time, even if a killed worker writes late
    client.close()
    if server is not None:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    client.flushdb()
    client.set(REDIS_MARKER, "1")
    yield client
    client.flushdb()
    client.set(REDIS_MARKER, "1")
    client.close()


def make_settings(database_url: str, redis_url: str | None = None, **env: str) -> Settings:
    base = {
        "DATABASE_URL": database_url,
        "CONVERSATIONS_DIR": str(CONVERSATIONS),
        "QUIET_HOURS": "",
        "SEND_RATE": "1000",
        # No gap between invitations (the default is 14 days): most tests invite the same few
        # people to campaign after campaign; the gap's own tests (test_frequency.py) set it.
        "INVITE_GAP_DAYS": "0",
    }
    if redis_url:
        base["REDIS_URL"] = redis_url
    base.update(env)
    return load_settings(base)


@pytest.fixture
def settings(database: Database, tmp_path: Path) -> Iterator[Settings]:
    current = make_settings(database.url, INVOLVE_INSTANCE_PATH=str(tmp_path))
    runtime.configure(current)
    yield current
    runtime.configure(current)


# --- password hashing ---------------------------------------------------------------------

# argon2id at argon2-cffi's defaults spends about 0.1 s and 64 MiB a hash on purpose, and the
# console's tests sign in hundreds of times. What they test is the sign-in, not argon2's cost:
# they get the same algorithm at its smallest cost; a test marked `real_password_hashing`
# gets the production hasher.
_CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture(autouse=True)
def cheap_password_hashing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    if request.node.get_closest_marker("real_password_hashing"):
        return
    from bot.cycle import staff

    monkeypatch.setattr(staff, "_hasher", _CHEAP_HASHER)
    monkeypatch.setattr(staff, "_DUMMY_HASH", _CHEAP_DUMMY_HASH)


_CHEAP_DUMMY_HASH = _CHEAP_HASHER.hash("not anyone's password, only here to spend the same time")


@pytest.fixture
def fresh_rate_window() -> Iterator[None]:
    """The limits on guessing count tries in fixed windows of the clock (a minute for the admin
    API, 15 minutes for the console): a test that counts tries starts at the beginning of a
    fresh one, with the clock running, so a slow machine never sees a window end mid-test."""
    import time

    import time_machine

    quarter = 15 * 60  # a whole number of minutes, so a new minute starts with it too
    start = (int(time.time()) // quarter + 1) * quarter + 0.01
    with time_machine.travel(start, tick=True):
        yield


@pytest.fixture
def twilio_fake() -> Iterator[FakeTwilio]:
    fake = FakeTwilio().start()
    yield fake
    fake.stop()


PUBLIC = "https://involve.example.org"
ADMIN_TOKEN = "test-admin-token-0123456789abcdefghijkl"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SUPPRESSION_KEY = "test-suppression-key-0123456789abcdef"


def app_env(
    database_url: str, redis_url: str, twilio_url: str, instance: Path, **extra: str
) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CONVERSATIONS_DIR": str(CONVERSATIONS),
        "QUIET_HOURS": "",
        "SEND_RATE": "1000",
        "INVITE_GAP_DAYS": "0",  # as in make_settings: the gap's own tests set it
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": FROM_NUMBER,
        "TWILIO_API_BASE_URL": twilio_url,
        "PUBLIC_BASE_URL": PUBLIC,
        "INVOLVE_INSTANCE_PATH": str(instance),
        "ORG_NAME": "Age Better",
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "SUPPRESSION_KEY": SUPPRESSION_KEY,
    }
    env.update(extra)
    return env


@pytest.fixture
def app_settings(
    database: Database, redis_conn: Redis, redis_url: str, twilio_fake: FakeTwilio, tmp_path: Path
) -> Iterator[Settings]:
    current = load_settings(app_env(database.url, redis_url, twilio_fake.url, tmp_path))
    runtime.configure(current)
    yield current
    runtime.configure(current)


@pytest.fixture
def app(app_settings: Settings):
    from webhooks import create_app

    return create_app({"SETTINGS": app_settings, "TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


def run_worker(redis: Redis) -> None:
    """A real rq worker in burst mode: runs what is queued now, then returns."""
    from bot.commands.worker import make_worker

    make_worker(redis).work(burst=True, with_scheduler=False)
