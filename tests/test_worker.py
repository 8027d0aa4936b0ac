"""The worker's own beat: the reconciler comes on schedule, whatever the queue is doing."""

import time

from rq import Queue

from bot.commands.worker import CronThread


def reconcilers_queued(redis) -> int:
    return sum(
        1
        for job in Queue("involve", connection=redis).get_jobs()
        if job.func_name == "bot.commands.jobs.reconcile_outbox"
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


def test_a_process_wires_campaigns_to_survey_ends_whatever_it_imported(tmp_path):
    """A worker that only ever ran inbox retries must still invite whoever waited for a survey
    to end: the receivers are connected by the process's wiring, not by an import somewhere."""
    import subprocess
    import sys

    program = (
        "from bot.commands import runtime\n"
        "from bot.config import load_settings\n"
        "from bot.conversations import events\n"
        "import sys\n"
        "assert 'bot.cycle.campaigns' not in sys.modules\n"
        f"runtime.configure(load_settings({{'DATABASE_URL': 'sqlite:///{tmp_path}/w.sqlite3'}}))\n"
        "runtime.database()\n"
        "print(len(list(events.survey_ended.receivers)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "1", done.stderr


def test_an_idle_worker_can_wait_for_jobs_longer_than_a_clients_read_timeout(redis_url):
    """redis-py times reads out after 5 s by default, and the Procfile worker pings Redis
    before it starts: that pinged connection must not be the one rq's dequeue waits on."""
    from redis import Redis

    from bot.commands.worker import make_worker

    client = Redis.from_url(redis_url, socket_timeout=1)  # 5 s in life; 1 s keeps this quick
    client.ping()
    worker = make_worker(client)
    started = time.monotonic()
    assert worker.connection.blpop(["involve:test:nothing"], timeout=2) is None
    assert time.monotonic() - started >= 1.9


def test_a_worker_stops_listening_at_once_even_when_redis_answers_before_it_says_stop(
    redis_conn,
):
    """A busy machine can let the listening thread read Redis's reply to the unsubscribe before
    the worker tells it to stop; it then waited up to a minute for a new subscription, and so
    did every burst worker's end (each test that ran a worker) and every worker's shutdown."""
    import threading

    from bot.commands.worker import make_worker

    worker = make_worker(redis_conn)
    worker.subscribe()
    listening = worker.pubsub
    deadline = time.monotonic() + 10
    while not listening.subscribed and time.monotonic() < deadline:
        time.sleep(0.01)
    unsubscribe = listening.unsubscribe

    def unsubscribe_and_let_the_thread_read_the_reply(*args, **kwargs):
        result = unsubscribe(*args, **kwargs)
        deadline = time.monotonic() + 10
        while listening.subscribed and time.monotonic() < deadline:
            time.sleep(0.01)
        return result

    listening.unsubscribe = unsubscribe_and_let_the_thread_read_the_reply
    stopping = threading.Thread(target=worker.unsubscribe, daemon=True)
    stopping.start()
    stopping.join(20)  # rq waits up to 60 s for the thread; the fix needs none of it
    assert not stopping.is_alive(), "the worker is still waiting for its listening thread"
    worker.pubsub_thread.join(20)
    assert not worker.pubsub_thread.is_alive()
