import itertools
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import time_machine
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from bot.commands import jobs, runtime
from bot.config import load_settings, parse_quiet_hours
from bot.conversations import outbox
from bot.sending.pacing import RateLimiter, in_quiet_hours, next_allowed
from bot.storage.models import Message, Participant
from tests import people
from tests.conftest import app_env, run_worker

LONDON = ZoneInfo("Europe/London")
DEFAULT = parse_quiet_hours("20:00-10:00,15:00-16:00")


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def test_outside_quiet_hours_is_now():
    noon = utc(2026, 6, 1, 11, 0)  # 12:00 BST
    assert next_allowed(noon, DEFAULT, LONDON) == noon


def test_afternoon_window():
    at = utc(2026, 6, 1, 14, 30)  # 15:30 BST
    assert next_allowed(at, DEFAULT, LONDON) == utc(2026, 6, 1, 15, 0)  # 16:00 BST


def test_overnight_window_in_summer_and_winter():
    assert next_allowed(utc(2026, 6, 1, 20, 0), DEFAULT, LONDON) == utc(
        2026, 6, 2, 9, 0
    )  # 21:00 BST -> 10:00 BST
    assert next_allowed(utc(2026, 1, 10, 21, 0), DEFAULT, LONDON) == utc(2026, 1, 11, 10, 0)  # GMT
    assert next_allowed(utc(2026, 1, 11, 7, 0), DEFAULT, LONDON) == utc(2026, 1, 11, 10, 0)


def test_across_the_autumn_clock_change():
    # 21:00 BST on Saturday 24 October; clocks go back at 02:00 on Sunday 25 October.
    assert next_allowed(utc(2026, 10, 24, 20, 0), DEFAULT, LONDON) == utc(
        2026, 10, 25, 10, 0
    )  # 10:00 GMT
    # In the repeated hour itself (01:30 GMT, the second time round).
    assert next_allowed(utc(2026, 10, 25, 1, 30), DEFAULT, LONDON) == utc(2026, 10, 25, 10, 0)


def test_across_the_spring_clock_change():
    # 21:00 GMT on Saturday 28 March; clocks go forward at 01:00 on Sunday 29 March.
    assert next_allowed(utc(2026, 3, 28, 21, 0), DEFAULT, LONDON) == utc(
        2026, 3, 29, 9, 0
    )  # 10:00 BST
    assert next_allowed(utc(2026, 3, 29, 0, 59), DEFAULT, LONDON) == utc(2026, 3, 29, 9, 0)


def test_adjoining_windows_are_followed_along():
    windows = parse_quiet_hours("09:00-12:00,12:00-13:00")
    assert next_allowed(utc(2026, 1, 5, 10, 0), windows, LONDON) == utc(2026, 1, 5, 13, 0)


def test_no_quiet_hours():
    assert not in_quiet_hours(utc(2026, 1, 1, 3, 0), (), LONDON)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _queue(database, kind):
    with database.session() as session:
        person = session.scalar(select(Participant)) or people.person(
            session, phone="+447700900123"
        )
        return outbox.add(session, person, "sms", "An invitation", kind).id


def test_invitations_wait_for_quiet_hours_to_end_but_replies_do_not(
    database, redis_conn, redis_url, twilio_fake, tmp_path
):
    runtime.configure(
        load_settings(
            app_env(
                database.url,
                redis_url,
                twilio_fake.url,
                tmp_path,
                QUIET_HOURS="20:00-10:00,15:00-16:00",
            )
        )
    )
    invitation, reply = _queue(database, "invitation"), _queue(database, "reply")
    with time_machine.travel(utc(2026, 10, 24, 20, 0), tick=False):  # Saturday 21:00 BST
        assert jobs.send_message(invitation).startswith("held until 2026-10-25T10:00:00")
        assert jobs.send_message(reply).startswith("handed over")
    with database.session() as session:
        held = session.get(Message, invitation)
        assert held.status == "pending" and held.send_after == utc(2026, 10, 25, 10, 0)
    scheduled = ScheduledJobRegistry("involve", connection=redis_conn)
    assert scheduled.count == 1
    assert [m["Body"] for m in twilio_fake.sends()] == ["An invitation"]
    # When the window opens, the worker sends it.
    with time_machine.travel(utc(2026, 10, 25, 10, 0, 1), tick=False):
        assert jobs.send_message(invitation).startswith("handed over")
    assert len(twilio_fake.sends()) == 2


def test_rate_limiter_spaces_slots_across_workers(redis_conn):
    a, b = RateLimiter(redis_conn, rate=4), RateLimiter(redis_conn, rate=4)
    waits = [
        a.reserve("twilio:+44")[0],
        b.reserve("twilio:+44")[0],
        a.reserve("twilio:+44")[0],
        b.reserve("twilio:+44")[0],
    ]
    assert waits[0] < 0.05
    for earlier, later in itertools.pairwise(waits):
        assert 0.2 <= later - earlier <= 0.3
    assert (
        RateLimiter(redis_conn, rate=4).reserve("telegram")[0] < 0.05
    )  # each sender has its own pace


def test_rate_limiter_grants_only_slots_within_the_horizon(redis_conn):
    limiter = RateLimiter(redis_conn, rate=1)
    wait, granted = limiter.reserve("k", count=10, within=3)
    assert wait < 0.05 and granted == 4  # slots at 0, 1, 2 and 3 seconds
    wait, granted = limiter.reserve("k", count=5, within=3)
    assert 3.9 < wait <= 4.0 and granted == 0  # nothing reserved that would not be used
    assert 3.9 < limiter.reserve("k", count=1, within=10)[0] <= 4.0


def test_a_long_queue_waits_in_the_scheduler_not_in_the_job(
    database, redis_conn, redis_url, twilio_fake, tmp_path
):
    # One send every three hours: the rest are due far beyond the job's 20 s horizon, however
    # long this machine takes. (At 0.04/s they were due 25 s on; a busy machine that took
    # longer than that to hand the first over found them due and sent them in the same run.)
    interval = timedelta(hours=3)
    runtime.configure(
        load_settings(
            app_env(
                database.url,
                redis_url,
                twilio_fake.url,
                tmp_path,
                SEND_RATE=str(1 / interval.total_seconds()),
            )
        )
    )
    ids = [_queue(database, "reply") for _ in range(4)]
    outbox.dispatch(redis_conn, [(i, None) for i in ids])
    before = datetime.now(UTC)
    run_worker(redis_conn)
    after = datetime.now(UTC)
    assert len(twilio_fake.sends()) == 1
    with database.session() as session:
        rows = {m.id: m for m in session.scalars(select(Message).where(Message.id.in_(ids)))}
    assert sorted(m.status for m in rows.values()) == ["pending", "pending", "pending", "queued"]
    # The other three wait in rq's scheduler, in one job, for the slot after the first.
    scheduled = ScheduledJobRegistry("involve", connection=redis_conn)
    (job_id,) = scheduled.get_job_ids()
    assert sorted(Job.fetch(job_id, connection=redis_conn).args[0]) == sorted(
        m.id for m in rows.values() if m.status == "pending"
    )
    at = scheduled.get_scheduled_time(job_id)
    assert before + interval - timedelta(seconds=1) <= at <= after + interval + timedelta(seconds=1)
    waiting = [_utc(m.send_after) for m in rows.values() if m.status == "pending"]
    assert all(abs(w - at) < timedelta(seconds=1) for w in waiting)


def test_send_rate_paces_real_sends(database, redis_conn, redis_url, twilio_fake, tmp_path):
    runtime.configure(
        load_settings(app_env(database.url, redis_url, twilio_fake.url, tmp_path, SEND_RATE="5"))
    )
    ids = [_queue(database, "reply") for _ in range(6)]
    outbox.dispatch(redis_conn, [(i, None) for i in ids])
    started = time.monotonic()
    run_worker(redis_conn)
    assert len(twilio_fake.sends()) == 6
    assert time.monotonic() - started >= 5 / 5 - 0.05  # six sends at 5/s span at least a second
