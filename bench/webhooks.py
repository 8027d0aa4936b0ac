"""Inbound webhooks per second and p50/p99 latency through gunicorn, for SQLite and PostgreSQL,
against a bare Flask app answering a fixed TwiML string, measured in the same run; and, as a
second baseline, the same texts through an app that does involve's database work for each with
no logic at all (`bench.floor_app`): the most any change to involve's own code could reach.

The workload is what a panel does: a campaign invites PANEL people to a short survey, and each
answers all of it — a choice, a scale, SKIP on an optional question, and the yes/no that ends
it (which records consent and closes the conversation). Some send STOP part-way; some new
numbers join by texting the survey's keyword and answer it too. Each connection owns its own
people and sends their texts in order, one person after another, so every request touches a
different person, as a real panel's replies would.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from sqlalchemy import create_engine, func, make_url, select, text
from twilio.request_validator import RequestValidator

from bench import load
from bot.config import load_settings
from bot.cycle import campaigns
from bot.scripts.survey import load_text
from bot.storage import contacts, db
from bot.storage.models import Message, Participant

TOKEN = "bench-auth-token"
CONNECTIONS = 8
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
PANEL = int(os.environ.get("BENCH_PANEL", "3000"))  # invited people (the issue asks >= 1,000)
NEWCOMERS = PANEL // 10  # new numbers joining by keyword
STOP_EVERY = 20  # one invited person in twenty texts STOP after their first answer
WARM_UP = 32  # requests per connection before measuring: imports, connections, caches
STAGGER = 6  # texts on a connection between one person's texts (each script is at most 5)
TARGETS = {"sqlite": 0.35, "postgresql": 0.25}
OF_FLOOR_TARGET = 0.75  # involve's pace against no logic's, on each backend
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))  # involve and no logic, measured in turns
P99_TARGET_MS = 20.0

SURVEY = """id: bench
title: Benchmark
keyword: BENCH
intro: "Hello {{ name }}. Could you help us? Reply STOP to opt out."
questions:
  - id: format
    type: choice
    ask: Would you prefer our guide printed, online, or both?
    options:
      - {value: printed, label: Printed}
      - {value: online, label: Online}
      - {value: both, label: Both}
  - id: useful
    type: scale
    ask: How useful would it be?
    min: 1
    max: 5
    labels: {1: Not useful, 5: Very useful}
  - id: why
    type: text
    optional: true
    ask: Anything else?
  - id: recontact
    type: yesno
    ask: May we tell you how your answers were used?
    sets: recontact
outro: Thank you.
"""
INVITED_SAYS = ["2", "4", "SKIP", "yes"]
STOPPER_SAYS = ["1", "STOP"]
NEWCOMER_SAYS = ["BENCH", "3", "5", "SKIP", "no"]


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


def seed(url: str, workdir: Path) -> list[str]:
    """The panel, invited by a campaign (conversations begun, invitations in the outbox)."""
    (workdir / "bench.yaml").write_text(SURVEY)
    survey = load_text(SURVEY, "bench.yaml")
    settings = load_settings(
        {
            "DATABASE_URL": url,
            "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_FROM_NUMBER": "+441234567890",
            "CONVERSATIONS_DIR": str(workdir),
            "QUIET_HOURS": "",
            "SUPPRESSION_KEY": "bench-suppression-key-" + "0" * 32,
            "ORG_NAME": "Bench Charity",
        }
    )
    database = db.Database(url)  # no dispatcher: the invitations stay in the outbox
    phones = [f"+4477009{n:05d}" for n in range(PANEL)]
    with database.session() as session:
        for phone in phones:
            person = Participant(name="Bench", tags=["panel"])
            session.add(person)
            contacts.add(session, person, "sms", phone)
    with database.session() as session:
        payload = {"survey": "bench", "audience": {"tags": ["panel"]}, "channel": None}
        campaign, _size = campaigns.create(session, payload, {"bench": survey}, settings)
        campaigns.launch(session, campaign, settings)
        campaign_id = campaign.id
    campaigns.fan_out(database, settings, campaign_id)
    database.dispose()
    return phones


def conversations_by_connection(phones: list[str]) -> list[list[tuple[str, str]]]:
    """(sender, text) per connection. Its people start one after another, newcomers spread
    among them, and each sends their next text STAGGER texts after their last: so any stretch
    of the run, whatever the server gets through before time is up, holds every kind of text
    in the proportions of the whole (first answers, scales, SKIPs, survey ends, STOPs, people
    joining), and nobody sends again before their last text was answered."""
    newcomers = [f"+4477008{n:05d}" for n in range(NEWCOMERS)]
    result = []
    for i in range(CONNECTIONS):
        invited = [
            (phone, STOPPER_SAYS if n % STOP_EVERY == 0 else INVITED_SAYS)
            for n, phone in enumerate(phones[i::CONNECTIONS])
        ]
        joining = [(phone, NEWCOMER_SAYS) for phone in newcomers[i::CONNECTIONS]]
        every = max(len(invited) // max(len(joining), 1), 1)
        people: list[tuple[str, list[str]]] = []
        for n, person in enumerate(invited, start=1):
            people.append(person)
            if n % every == 0 and joining:
                people.append(joining.pop(0))
        people += joining
        slots = sorted(
            (n + step * STAGGER, step, phone, text)
            for n, (phone, says) in enumerate(people)
            for step, text in enumerate(says)
        )
        result.append([(phone, text) for _slot, _step, phone, text in slots])
    return result


KINDS = {"STOP": "STOP", "BENCH": "joined", "SKIP": "SKIP", "yes": "ended", "no": "ended"}


def mix(url: str, after_id: int) -> dict[str, int]:
    """The kinds of text handled in full after `after_id`: what was measured."""
    database = db.Database(url)
    with database.session() as session:
        rows = session.execute(
            select(Message.body, func.count(Message.id))
            .where(Message.direction == "in", Message.status == "processed", Message.id > after_id)
            .group_by(Message.body)
        ).all()
    database.dispose()
    counts: dict[str, int] = {}
    for body, count in rows:
        kind = KINDS.get(body or "", "answer")
        counts[kind] = counts.get(kind, 0) + count
    return counts


def prepared(base: str, plan: list[list[tuple[str, str]]]) -> list[list[load.Prepared]]:
    path = "/webhooks/twilio/sms"
    validator = RequestValidator(TOKEN)
    result = []
    for texts in plan:
        batch = []
        for sender, body in texts:
            sid = "SM" + uuid.uuid4().hex
            params = {
                "MessageSid": sid,
                "SmsSid": sid,
                "AccountSid": "AC" + "0" * 32,
                "From": sender,
                "To": "+441234567890",
                "Body": body,
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


def measure(app: str, url: str, workdir: Path) -> tuple[load.Result, int, dict[str, int]]:
    """`app` through gunicorn against a database of its own, freshly seeded."""
    phones = seed(url, workdir)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "DATABASE_URL": url,
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_FROM_NUMBER": "+441234567890",
        "SUPPRESSION_KEY": "bench-suppression-key-" + "0" * 32,
        "ORG_NAME": "Bench Charity",
        "PUBLIC_BASE_URL": base,
        "INVOLVE_INSTANCE_PATH": str(workdir),
        "CONVERSATIONS_DIR": str(workdir),
        "REDIS_URL": "redis://127.0.0.1:1/0",  # after-commit dispatch fails fast: rows wait
        "QUIET_HOURS": "",
    }
    batches = prepared(base, conversations_by_connection(phones))
    server = gunicorn(app, port, env)
    try:
        load.run(port, [b[:WARM_UP] for b in batches], 2.0)
        before, last_id = handled(url)
        result = load.run(port, [b[WARM_UP:] for b in batches], SECONDS)
    finally:
        stop(server)
    return result, handled(url)[0] - before, mix(url, last_id)


def handled(url: str) -> tuple[int, int]:
    """Inbound texts handled in full (not kept for a retry, not failed), and the last id."""
    database = db.Database(url)
    with database.session() as session:
        stored, last = session.execute(
            select(func.count(Message.id), func.max(Message.id)).where(
                Message.direction == "in", Message.status == "processed"
            )
        ).one()
    database.dispose()
    return stored or 0, last or 0


def measure_bare() -> load.Result:
    port = free_port()
    plan = [[(f"+4477009{n:05d}", "1")] * 6000 for n in range(CONNECTIONS)]
    batches = prepared(f"http://127.0.0.1:{port}", plan)
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


@contextmanager
def fresh_database(backend: str, postgres: str | None, workdir: Path) -> Iterator[str]:
    """A new, migrated database for one measurement, dropped afterwards."""
    name = f"involve_bench_{uuid.uuid4().hex[:8]}"
    if backend == "sqlite":
        url = f"sqlite:///{workdir / name}.sqlite3"
        db.upgrade(url)
        yield url
        return
    assert postgres is not None
    admin = create_engine(make_url(postgres).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(postgres).set(database=name).render_as_string(hide_password=False)
        db.upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# What runs, by name: involve itself, and the same database work with no logic at all.
APPS = {"involve": "webhooks:create_app()", "no logic": "bench.floor_app:app"}


def _combined(results: list[load.Result]) -> load.Result:
    """Several runs of one app as one: all their texts over all their time."""
    combined = results[0]
    for result in results[1:]:
        combined = load.Result(
            combined.requests + result.requests,
            combined.seconds + result.seconds,
            combined.p50_ms,
            combined.p99_ms,
            combined.errors + result.errors,
        )
    return load.Result(
        combined.requests,
        combined.seconds,
        sorted(r.p50_ms for r in results)[len(results) // 2],
        max(r.p99_ms for r in results),
        combined.errors,
    )


def _summed(counts: list[dict[str, int]]) -> dict[str, int]:
    return {k: sum(c.get(k, 0) for c in counts) for k in {k for c in counts for k in c}}


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="involve-bench-"))
    # (app, backend) -> per round: (result, texts handled, their kinds)
    runs: dict[tuple[str, str], list[tuple[load.Result, int, dict[str, int]]]] = {}
    try:
        bare_before = measure_bare()
        pg = postgres_url()
        backends = ["sqlite", "postgresql"] if pg else ["sqlite"]
        if not pg:
            print("PostgreSQL not reachable: measuring SQLite only (set BENCH_DATABASE_URL)")
        for backend in backends:
            for round_ in range(ROUNDS):
                # Each round measures involve and no logic one after the other, in turns
                # (involve first, then no logic first): the machine's pace drifts over minutes,
                # and a pair measured side by side meets the same pace.
                order = list(APPS.items()) if round_ % 2 == 0 else list(APPS.items())[::-1]
                for name, app in order:
                    with fresh_database(backend, pg, workdir) as url:
                        runs.setdefault((name, backend), []).append(measure(app, url, workdir))
        # The baseline again, after: the machine's pace drifts, so the ratio is against the mean.
        bare_after = measure_bare()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    bare = _mean(bare_before, bare_after)
    measured = [
        (
            name,
            backend,
            _combined([r for r, _s, _k in rounds]),
            sum(stored for _r, stored, _k in rounds),
            _summed([kinds for _r, _s, kinds in rounds]),
        )
        for (name, backend), rounds in runs.items()
    ]
    floors = {b: r.per_second / bare.per_second for n, b, r, *_ in measured if n != "involve"}
    # involve against no logic, round by round: each pair side by side in time.
    of_floor = {
        backend: [
            mine.per_second / theirs.per_second
            for (mine, _s, _k), (theirs, _t, _l) in zip(
                runs[("involve", backend)], runs[("no logic", backend)], strict=True
            )
        ]
        for backend in backends
    }
    failures: list[str] = []
    for name, backend, result, stored, _kinds in measured:
        if stored != result.requests:
            failures.append(
                f"{name}, {backend}: {result.requests} texts sent but {stored} handled in full"
            )
        if name != "involve":
            continue
        if result.p99_ms > P99_TARGET_MS:
            failures.append(f"{backend}: p99 {result.p99_ms:.1f} ms is over {P99_TARGET_MS} ms")
        ratio = result.per_second / bare.per_second
        if ratio < TARGETS[backend]:
            failures.append(
                f"{backend}: {ratio:.2f}x is under the {TARGETS[backend]}x target"
                f" (the same database work with no logic reached {floors[backend]:.2f}x)"
            )
        share = statistics.mean(of_floor[backend])
        if share < OF_FLOOR_TARGET:
            failures.append(
                f"{backend}: {share:.2f}x of no logic is under the {OF_FLOOR_TARGET}x target"
            )
    rows = [
        ("bare Flask, before", bare_before, None),
        ("bare Flask, after", bare_after, None),
        *((f"{name}, {backend}", result, stored) for name, backend, result, stored, _ in measured),
    ]

    print(
        f"\nA panel of {PANEL} (and {NEWCOMERS} newcomers) answering whole surveys by text through gunicorn (2 workers x 4 threads), {CONNECTIONS} connections, {SECONDS:.0f} s each, {ROUNDS} rounds"
    )
    print(f"{'':28}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}{'errors':>8}{'handled':>8}")
    for name, result, stored in rows:
        ratio = result.per_second / bare.per_second
        print(
            f"{name:28}{result.per_second:9.0f}{result.p50_ms:9.2f}{result.p99_ms:9.2f}{ratio:8.2f}{len(result.errors):8}{'' if stored is None else stored:>8}"
        )
    print(f"ratio: against the mean of the two baseline runs ({bare.per_second:.0f} req/s)")
    for backend, shares in of_floor.items():
        each = ", ".join(f"{share:.2f}x" for share in shares)
        print(
            f"involve, {backend}: {statistics.mean(shares):.2f}x of no logic"
            f" (the mean of {len(shares)} rounds, each side by side: {each})"
        )
    for name, backend, _result, _stored, kinds in measured:
        counted = ", ".join(
            f"{kinds.get(k, 0)} {k}" for k in ("answer", "SKIP", "ended", "STOP", "joined")
        )
        print(f"measured, {name}, {backend}: {counted}")
    print(
        "no logic: the same form, signature and database writes per text as involve, as plain"
        " SQL with no engine step (bench/floor_app.py): the ceiling for involve's code while it sends those statements"
    )
    print(
        f"targets: ratio >= {TARGETS['sqlite']} (SQLite), >= {TARGETS['postgresql']} (PostgreSQL); p99 < {P99_TARGET_MS:.0f} ms; >= {OF_FLOOR_TARGET}x of no logic"
    )
    for failure in failures:
        print("MISSED:", failure)
    for name, result, _ in rows:
        if result.errors:
            print(f"{name}: first errors: {result.errors[:3]}")
    return 1 if failures else 0
