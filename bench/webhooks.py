"""Inbound answer webhooks per second and p50/p99 latency through gunicorn, for SQLite and
PostgreSQL, against a bare Flask app answering a fixed TwiML string, measured in the same run.

Every request is a new, signed text answering the next question of a real conversation, so it
takes the whole path: signature, dedupe on MessageSid, conversation state, answer write, TwiML.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests
from sqlalchemy import create_engine, func, make_url, select, text
from twilio.request_validator import RequestValidator

from bench import load
from bot import conversations, db
from bot.models import Answer, Participant
from bot.survey import load_text

TOKEN = "bench-auth-token"
CONNECTIONS = 8
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
PER_CONNECTION = 6000  # more than any connection can send in SECONDS
TARGETS = {"sqlite": 0.35, "postgresql": 0.25}
P99_TARGET_MS = 20.0
QUESTIONS = 200


def bench_survey_source() -> str:
    questions = "\n".join(
        f"  - {{id: q{i}, type: scale, ask: 'Question {i}?', min: 1, max: 5}}"
        for i in range(QUESTIONS)
    )
    return f"id: bench\ntitle: Benchmark\nquestions:\n{questions}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn(app: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            os.environ.get("BENCH_WORKERS", "2"),
            "--threads",
            os.environ.get("BENCH_THREADS", "4"),
            "--log-level",
            "warning",
            app,
        ],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/", timeout=2)
            return process
        except requests.RequestException:  # not listening yet, or still booting its workers
            if process.poll() is not None:
                raise RuntimeError(
                    process.stderr.read().decode() if process.stderr else "gunicorn exited"
                ) from None
            time.sleep(0.1)
    stop(process)
    raise RuntimeError("gunicorn did not start")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


def seed(url: str, people: int) -> list[str]:
    """People each with a conversation in progress; returns their numbers."""
    survey = load_text(bench_survey_source(), "bench.yaml")
    database = db.Database(url)
    phones = [f"+4477009{n:05d}" for n in range(people)]
    now = datetime.now(UTC)
    with database.session() as session:
        for phone in phones:
            person = Participant(phone=phone, name="Bench", tags=[])
            session.add(person)
            session.flush()
            conversations.start_conversation(session, person, survey, "sms", now, "bench")
    database.dispose()
    return phones


def prepared_answers(base: str, phones: list[str]) -> list[list[load.Prepared]]:
    """Per connection: its own people, each answering their next question in turn."""
    path = "/webhooks/twilio/sms"
    validator = RequestValidator(TOKEN)
    mine = [phones[i::CONNECTIONS] for i in range(CONNECTIONS)]
    result = []
    for group in mine:
        batch = []
        for n in range(PER_CONNECTION):
            sid = "SM" + uuid.uuid4().hex
            params = {
                "MessageSid": sid,
                "SmsSid": sid,
                "AccountSid": "AC" + "0" * 32,
                "From": group[n % len(group)],
                "To": "+441234567890",
                "Body": str(1 + n % 5),
                "NumMedia": "0",
                "NumSegments": "1",
                "SmsStatus": "received",
                "ApiVersion": "2010-04-01",
                "FromCountry": "GB",
                "ToCountry": "GB",
            }
            batch.append(
                load.prepare(path, params, validator.compute_signature(base + path, params))
            )
        result.append(batch)
    return result


def postgres_url() -> str | None:
    raw = (
        os.environ.get("BENCH_DATABASE_URL")
        or os.environ.get("TEST_DATABASE_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    url = make_url(raw).set(drivername="postgresql+psycopg")
    try:
        engine = create_engine(
            url.set(database="postgres"),
            isolation_level="AUTOCOMMIT",
            connect_args={"connect_timeout": 2},
        )
        with engine.connect():
            pass
        engine.dispose()
        return url.render_as_string(hide_password=False)
    except Exception:
        return None


def measure_involve(backend: str, url: str, workdir: Path) -> tuple[load.Result, int]:
    people = CONNECTIONS * 25
    phones = seed(url, people)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "DATABASE_URL": url,
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_FROM_NUMBER": "+441234567890",
        "SUPPRESSION_KEY": "bench-suppression-key-" + "0" * 32,
        "PUBLIC_BASE_URL": base,
        "INVOLVE_INSTANCE_PATH": str(workdir),
        "CONVERSATIONS_DIR": str(workdir),
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }
    batches = prepared_answers(base, phones)
    server = gunicorn("webhooks:create_app()", port, env)
    try:
        load.run(port, [b[:50] for b in batches], 1.0)  # warm up: imports, connections, caches
        before = count_answers(url)
        result = load.run(port, [b[50:] for b in batches], SECONDS)
    finally:
        stop(server)
    return result, count_answers(url) - before


def count_answers(url: str) -> int:
    database = db.Database(url)
    with database.session() as session:
        stored = session.scalar(select(func.count(Answer.id))) or 0
    database.dispose()
    return stored


def measure_bare() -> load.Result:
    port = free_port()
    batches = prepared_answers(
        f"http://127.0.0.1:{port}", [f"+4477009{n:05d}" for n in range(CONNECTIONS)]
    )
    server = gunicorn("bench.bare_app:app", port, {})
    try:
        load.run(port, [b[:50] for b in batches], 1.0)
        return load.run(port, [b[50:] for b in batches], SECONDS)
    finally:
        stop(server)


def _mean(a: load.Result, b: load.Result) -> load.Result:
    return load.Result(
        a.requests + b.requests,
        a.seconds + b.seconds,
        (a.p50_ms + b.p50_ms) / 2,
        (a.p99_ms + b.p99_ms) / 2,
        a.errors + b.errors,
    )


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="involve-bench-"))
    rows: list[tuple[str, load.Result, int | None]] = []
    failures: list[str] = []
    try:
        bare_before = measure_bare()
        backends = [("sqlite", f"sqlite:///{workdir / 'bench.sqlite3'}")]
        pg = postgres_url()
        pg_name = None
        if pg:
            pg_name = f"involve_bench_{uuid.uuid4().hex[:8]}"
            admin = create_engine(
                make_url(pg).set(database="postgres"), isolation_level="AUTOCOMMIT"
            )
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{pg_name}"'))
            backends.append(
                (
                    "postgresql",
                    make_url(pg).set(database=pg_name).render_as_string(hide_password=False),
                )
            )
        else:
            print("PostgreSQL not reachable: measuring SQLite only (set BENCH_DATABASE_URL)")
        try:
            for backend, url in backends:
                db.upgrade(url)
                result, stored = measure_involve(backend, url, workdir)
                rows.append((f"involve, {backend}", result, stored))
                if result.p99_ms > P99_TARGET_MS:
                    failures.append(
                        f"{backend}: p99 {result.p99_ms:.1f} ms is over {P99_TARGET_MS} ms"
                    )
                if stored != result.requests:
                    failures.append(
                        f"{backend}: {result.requests} answers sent but {stored} stored"
                    )
        finally:
            if pg_name:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
                admin.dispose()
        # The baseline again, after: the machine's pace drifts, so the ratio is against the mean.
        bare_after = measure_bare()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    bare = _mean(bare_before, bare_after)
    for name, result, _stored in rows:
        backend = name.split(", ")[1]
        ratio = result.per_second / bare.per_second
        if ratio < TARGETS[backend]:
            failures.append(f"{backend}: {ratio:.2f}x is under the {TARGETS[backend]}x target")
    rows[:0] = [("bare Flask, before", bare_before, None), ("bare Flask, after", bare_after, None)]

    print(
        f"\nInbound answer webhooks through gunicorn (2 workers x 4 threads), {CONNECTIONS} connections, {SECONDS:.0f} s each"
    )
    print(f"{'':28}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}{'errors':>8}{'stored':>8}")
    for name, result, stored in rows:
        ratio = result.per_second / bare.per_second
        print(
            f"{name:28}{result.per_second:9.0f}{result.p50_ms:9.2f}{result.p99_ms:9.2f}{ratio:8.2f}{len(result.errors):8}{'' if stored is None else stored:>8}"
        )
    print(f"ratio: against the mean of the two baseline runs ({bare.per_second:.0f} req/s)")
    print(
        f"targets: ratio >= {TARGETS['sqlite']} (SQLite), >= {TARGETS['postgresql']} (PostgreSQL); p99 < {P99_TARGET_MS:.0f} ms"
    )
    for failure in failures:
        print("MISSED:", failure)
    for name, result, _ in rows:
        if result.errors:
            print(f"{name}: first errors: {result.errors[:3]}")
    return 1 if failures else 0
