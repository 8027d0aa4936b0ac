"""Campaign benchmarks, each beside a baseline measured in the same run.

- launch: a campaign to BENCH_PEOPLE people (default 100,000) fanned out and handed to a local
  fake of Twilio's API by one rq worker, against rq's own ceiling (one no-op job a message);
  then SEND_RATE=20 held for a few seconds, which must come out within 10% of 20 a second.
- export: responses.csv for BENCH_PEOPLE people x 10 questions, rows a second and peak memory,
  against the csv module writing the same number of ready-made rows.
- import: a BENCH_PEOPLE-row panel CSV, against csv.DictReader just reading it.
"""

from __future__ import annotations

import csv
import io
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from redis import Redis
from rq import Queue
from sqlalchemy import insert, select

PEOPLE = int(os.environ.get("BENCH_PEOPLE", "100000"))
QUESTIONS = 10


def _survey_source() -> str:
    lines = [
        f"  - {{id: q{i}, type: choice, ask: 'Question {i}?', options: [{{value: a, label: Alpha}}, {{value: b, label: Beta}}]}}"
        for i in range(QUESTIONS)
    ]
    return (
        "id: bench\ntitle: Benchmark\nintro: 'Hello {{ name }}.'\nquestions:\n"
        + "\n".join(lines)
        + "\n"
    )


def _settings(workdir: Path, redis_url: str, twilio_url: str, **extra: str):
    from bot.config import load_settings

    (workdir / "conversations").mkdir(exist_ok=True)
    (workdir / "conversations" / "bench.yaml").write_text(_survey_source())
    env = {
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "REDIS_URL": redis_url,
        "CONVERSATIONS_DIR": str(workdir / "conversations"),
        "QUIET_HOURS": "",
        "SEND_RATE": "100000",
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": "bench",
        "TWILIO_FROM_NUMBER": "+441234567890",
        "SUPPRESSION_KEY": "bench-suppression-key-" + "0" * 32,
        "ORG_NAME": "Bench Charity",
        "TWILIO_API_BASE_URL": twilio_url,
        "PUBLIC_BASE_URL": "https://bench.example.org",
        "INVOLVE_INSTANCE_PATH": str(workdir),
        **extra,
    }
    return load_settings(env), env


def _seed_people(database, count: int) -> None:
    from bot.storage.models import ContactPoint, Participant

    now = datetime.now(UTC)
    people = Participant.__table__
    with database.session() as session:
        rows = [
            {
                "name": f"Person {n}",
                "tags": ["panel"],
                "channel": "sms",
                "opted_out": False,
                "created_at": now,
                "updated_at": now,
            }
            for n in range(count)
        ]
        for start in range(0, count, 10000):
            ids = session.scalars(
                insert(people).returning(people.c.id, sort_by_parameter_order=True),
                rows[start : start + 10000],
            ).all()
            session.execute(
                insert(ContactPoint.__table__),
                [
                    {
                        "participant_id": pid,
                        "channel": "sms",
                        "address": f"+4477{start + n:08d}",
                        "position": 0,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for n, pid in enumerate(ids)
                ],
            )


def _redis() -> tuple[str, object | None]:
    """A Redis of the benchmark's own, which it empties between runs: `BENCH_REDIS_URL` when
    you name one for it, else a fresh embedded server. Never a Redis it merely found running
    (a database number on it may be somebody else's work)."""
    named = os.environ.get("BENCH_REDIS_URL")
    if named:
        return named, None
    from bot.commands.embedded_redis import EmbeddedRedis

    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="inv-")), persist=False).start()
    return server.url, server


def noop(_message_id: int) -> None:
    return None


def bench_launch(workdir: Path) -> list[str]:
    from bot.commands import runtime
    from bot.commands.worker import make_worker
    from bot.cycle import campaigns
    from bot.storage import db
    from tests.fakes import FakeTwilio

    redis_url, embedded = _redis()
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    fake = FakeTwilio().start()
    report: list[str] = []
    try:
        settings, _ = _settings(workdir, redis_url, fake.url)
        runtime.configure(settings)
        db.upgrade(settings.database_url)
        database = runtime.database()
        _seed_people(database, PEOPLE)

        # Baseline: rq's own ceiling, one no-op job a message (a sample; it is slow).
        sample = min(PEOPLE, 3000)
        queue = Queue("involve", connection=redis)
        queue.enqueue_many([Queue.prepare_data(noop, (n,)) for n in range(sample)])
        started = time.perf_counter()
        make_worker(redis).work(burst=True, with_scheduler=False, logging_level="WARNING")
        baseline = sample / (time.perf_counter() - started)
        redis.flushdb()

        with database.session() as session:
            campaign, size = campaigns.create(
                session,
                {"survey": "bench", "audience": {"all": True}, "channel": "sms"},
                runtime.library().surveys(),
                settings,
            )
            campaigns.launch(session, campaign, settings)
        started = time.perf_counter()
        campaigns.enqueue_fan_out(redis, campaign)
        make_worker(redis).work(burst=True, with_scheduler=False, logging_level="WARNING")
        elapsed = time.perf_counter() - started
        handed = len(fake.sends())
        rate = handed / elapsed
        report.append(
            f"launch: {handed:,} of {size:,} invitations handed to the fake Twilio in {elapsed:.1f} s = {rate:,.0f}/s "
            f"(rq no-op job per message: {baseline:,.0f}/s; ratio {rate / baseline:.1f}x); target >= 1,000/s"
        )
        if handed != size or rate < 1000:
            report.append("MISSED: launch rate or count")

        # SEND_RATE=20: the pace is held.
        from bot.conversations import outbox
        from bot.storage.models import Message

        runtime.configure(settings.with_overrides(send_rate=20.0))
        redis.flushdb()
        with database.session() as session:
            ids = session.scalars(
                select(Message.id).where(Message.kind == "invitation").limit(120)
            ).all()
            for message in session.scalars(select(Message).where(Message.id.in_(ids))):
                message.status, message.provider_id = "pending", None
        before = len(fake.requests)
        outbox.dispatch(redis, [(i, None) for i in ids])
        make_worker(redis).work(burst=True, with_scheduler=False, logging_level="WARNING")
        stamps = [r["at"] for r in fake.requests[before:] if r["method"] == "POST"]
        paced = (len(stamps) - 1) / (stamps[-1] - stamps[0])
        report.append(
            f"pacing: SEND_RATE=20 gave {paced:.2f}/s over {len(stamps)} sends (target 18-22)"
        )
        if not 18 <= paced <= 22:
            report.append("MISSED: pacing")
    finally:
        fake.stop()
        redis.flushdb()
        if embedded is not None:
            embedded.stop()
    return report


def _seed_answers(database, people: int) -> int:
    from bot import conversations
    from bot.commands import runtime
    from bot.cycle import campaigns
    from bot.storage.models import Answer, Campaign, Conversation, Invitation, Participant

    survey = runtime.library().get("bench")
    now = datetime.now(UTC)
    with database.session() as session:
        version = conversations.survey_version(session, survey)
        campaign = Campaign(
            survey_id="bench",
            survey_version_id=version.id,
            status="launched",
            audience={"all": True},
            channel="sms",
        )
        session.add(campaign)
        session.flush()
        campaign_id = campaign.id
        pids = session.scalars(select(Participant.id).order_by(Participant.id)).all()
    for start in range(0, people, 5000):
        chunk = pids[start : start + 5000]
        with database.session() as session:
            conv_ids = session.scalars(
                insert(Conversation.__table__).returning(
                    Conversation.__table__.c.id, sort_by_parameter_order=True
                ),
                [
                    {
                        "participant_id": p,
                        "survey_version_id": version.id,
                        "campaign_id": campaign_id,
                        "channel": "sms",
                        "status": "completed",
                        "state": {},
                        "started_at": now,
                        "last_activity_at": now,
                        "completed_at": now,
                    }
                    for p in chunk
                ],
            ).all()
            session.execute(
                insert(Invitation.__table__),
                [
                    {
                        "campaign_id": campaign_id,
                        "participant_id": p,
                        "channel": "sms",
                        "status": "invited",
                        "conversation_id": c,
                        "created_at": now,
                        "invited_at": now,
                    }
                    for p, c in zip(chunk, conv_ids, strict=True)
                ],
            )
            session.execute(
                insert(Answer.__table__),
                [
                    {
                        "conversation_id": c,
                        "participant_id": p,
                        "question_id": f"q{q}",
                        "value": "a",
                        "label": "Alpha",
                        "raw_text": "1",
                        "unparsed": False,
                        "skipped": False,
                        "channel": "sms",
                        "answered_at": now,
                    }
                    for p, c in zip(chunk, conv_ids, strict=True)
                    for q in range(QUESTIONS)
                ],
            )
    del campaigns
    return campaign_id


# Peak memory: reset the kernel's high-water mark at the start (it is inherited across fork and
# exec), then read VmHWM at the end.
PEAK = """
def reset_peak():
    try:
        open('/proc/self/clear_refs', 'w').write('5')
    except OSError:
        pass
def peak_kb():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""

EXPORT_CHILD = (
    PEAK
    + """
import resource, sys, time
reset_peak()
from bot import config
from bot.cycle import exports
from bot.commands import runtime
from bot.storage.models import Campaign
runtime.configure(config.load_settings())
start = time.perf_counter(); rows = 0
with runtime.database().read() as session, open('/dev/null', 'w') as out:
    campaign = session.get(Campaign, int(sys.argv[1]))
    for chunk in exports.csv_chunks(exports.response_rows(session, campaign), 1000):
        out.write(chunk); rows += chunk.count('\\r\\n')
elapsed = time.perf_counter() - start
print(rows - 1, elapsed, peak_kb())
"""
)

BASELINE_CHILD = (
    PEAK
    + """
import csv, resource, sys, time
reset_peak()
n = int(sys.argv[1]); row = ['A1', 'sms', 'completed', '2026-11-25T12:00:00+00:00', '2026-11-25T12:05:00+00:00'] + ['Alpha'] * 10
start = time.perf_counter()
with open('/dev/null', 'w') as out:
    writer = csv.writer(out)
    for _ in range(n): writer.writerow(row)
print(n, time.perf_counter() - start, peak_kb())
"""
)


def bench_export(workdir: Path) -> list[str]:
    from bot.commands import runtime
    from bot.storage import db

    settings, env = _settings(workdir, "redis://127.0.0.1:1/0", "http://127.0.0.1:1")
    runtime.configure(settings)
    db.upgrade(settings.database_url)
    database = runtime.database()
    _seed_people(database, PEOPLE)
    campaign_id = _seed_answers(database, PEOPLE)
    child_env = {**os.environ, **env}
    out = subprocess.run(
        [sys.executable, "-c", EXPORT_CHILD, str(campaign_id)],
        env=child_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    rows, seconds, rss_kb = int(out[0]), float(out[1]), int(out[2])
    base = subprocess.run(
        [sys.executable, "-c", BASELINE_CHILD, str(PEOPLE)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    base_rate = int(base[0]) / float(base[1])
    rate = rows / seconds
    report = [
        f"export: {rows:,} rows x {QUESTIONS} questions in {seconds:.1f} s = {rate:,.0f} rows/s, peak RSS {rss_kb / 1024:.0f} MB "
        f"(csv.writer alone: {base_rate:,.0f} rows/s, {int(base[2]) / 1024:.0f} MB; ratio {rate / base_rate:.2f}); target >= 50,000 rows/s, <= 150 MB"
    ]
    if rows != PEOPLE or rate < 50000 or rss_kb / 1024 > 150:
        report.append("MISSED: export")
    return report


def bench_import(workdir: Path) -> list[str]:
    from bot.commands import runtime
    from bot.cycle.panel import import_rows, read_csv
    from bot.storage import db

    settings, _ = _settings(workdir, "redis://127.0.0.1:1/0", "http://127.0.0.1:1")
    runtime.configure(settings)
    db.upgrade(settings.database_url)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["name", "phone", "tags", "recontact", "external_id"])
    for n in range(PEOPLE):
        writer.writerow(
            [
                f"Person {n}",
                f"07700 {n % 1000:03d}{n // 1000:03d}" if n < 1_000_000 else "",
                "panel;readers",
                "yes" if n % 2 else "no",
                f"EXT{n}",
            ]
        )
    text = buffer.getvalue()
    started = time.perf_counter()
    parsed = sum(1 for _ in csv.DictReader(io.StringIO(text)))
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    rows, _ = read_csv(text)
    with runtime.database().session() as session:
        report = import_rows(session, settings, rows, source="import", first_row=2)
    elapsed = time.perf_counter() - started
    result = [
        f"import: {PEOPLE:,} rows in {elapsed:.1f} s ({report.created:,} created, {len(report.rejected)} rejected) "
        f"(csv.DictReader alone: {baseline:.2f} s for {parsed:,}; ratio {elapsed / baseline:.0f}x slower); target <= 30 s"
    ]
    if elapsed > 30 or report.created != PEOPLE:
        result.append("MISSED: import")
    return result


def main(which: tuple[str, ...] = ("launch", "export", "import")) -> int:
    lines: list[str] = []
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name in which:
        workdir = Path(tempfile.mkdtemp(prefix=f"involve-bench-{name}-"))
        lines += {"launch": bench_launch, "export": bench_export, "import": bench_import}[name](
            workdir
        )
    del peak
    print()
    for line in lines:
        print(line)
    return 1 if any(line.startswith("MISSED") for line in lines) else 0
