"""The worker's own beat: the reconciler comes on schedule, whatever the queue is doing."""

import time

from rq import Queue

from bot.commands.worker import CronThread


def reconcilers_queued(redis) -> int:
    return sum(
        1
        for job in Queue("involve", connection=redis).get_jobs()
        if job.func_name == "bot.sending.jobs.reconcile_outbox"
    )


def test_the_reconciler_is_enqueued_on_a_fixed_beat_even_after_redis_is_flushed(redis_conn):
    beat = CronThread(redis_conn, interval=1)
    beat.start()
    try:
        deadline = time.monotonic() + 5
        while reconcilers_queued(redis_conn) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reconcilers_queued(redis_conn) >= 1  # at once, not after a dequeue timeout
        redis_conn.flushdb()  # Redis restarted empty
        deadline = time.monotonic() + 5
        while reconcilers_queued(redis_conn) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reconcilers_queued(redis_conn) >= 1  # the schedule lives in the worker
    finally:
        beat.stop()
        beat.join(5)
    assert not beat.is_alive()
