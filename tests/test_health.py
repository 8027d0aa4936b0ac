from bot.config import load_settings
from tests.conftest import app_env


def test_healthy(client, redis_conn):
    from bot.commands.worker import beat

    beat(redis_conn)  # a worker's beat just ran
    response = client.get("/healthz")
    assert response.status_code == 200
    body = dict(response.json)
    assert body.pop("worker")["alive"] is True
    assert body == {
        "status": "ok",
        "database": "ok",
        "redis": "ok",
        "channels": {
            "sms": "on",
            "voice": "on",
            "telegram": "off: set TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET",
            "whatsapp": "off: set TWILIO_WHATSAPP_FROM (or TWILIO_WHATSAPP_MESSAGING_SERVICE_SID)",
        },
        "inbound": {"retrying": 0, "failed": 0},
    }


def test_redis_down_is_503(database, twilio_fake, tmp_path):
    from webhooks import create_app

    settings = load_settings(
        app_env(database.url, "redis://127.0.0.1:1/0", twilio_fake.url, tmp_path)
    )
    response = create_app({"SETTINGS": settings}).test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["database"] == "ok" and response.json["redis"].startswith(
        "down: ConnectionError"
    )


def test_database_down_is_503(redis_url, twilio_fake, tmp_path):
    from webhooks import create_app

    url = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"
    settings = load_settings(app_env(url, redis_url, twilio_fake.url, tmp_path))
    response = create_app({"SETTINGS": settings}).test_client().get("/healthz")
    assert response.status_code == 503 and response.json["database"].startswith(
        "down: OperationalError"
    )


def test_redis_whose_socket_was_removed_is_down_even_with_a_pooled_connection(
    database, twilio_fake, tmp_path
):
    """A second `involve serve` once removed the first one's socket: jobs failed, /healthz said ok."""
    import shutil

    from bot.commands import runtime
    from bot.commands.embedded_redis import EmbeddedRedis
    from bot.commands.serve import _redis_dir
    from webhooks import create_app

    env = app_env(database.url, "", twilio_fake.url, tmp_path / "instance")
    del env["REDIS_URL"]
    settings = load_settings(env)
    server = EmbeddedRedis(_redis_dir(settings), persist=False).start()
    try:
        runtime.configure(settings)
        client = create_app({"SETTINGS": settings}).test_client()
        assert client.get("/healthz").json["redis"] == "ok"
        server.socket.unlink()  # what the second `involve serve` did
        response = client.get("/healthz")
        assert response.status_code == 503, response.json
        assert response.json["redis"].startswith("down: ")
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)
        runtime.configure(settings)


def test_no_worker_is_degraded_and_says_when_one_was_last_seen(client, redis_conn):
    """A launch sat at "launching" with 0 invited while /healthz said ok: no worker ran."""
    from datetime import UTC, datetime, timedelta

    from bot.commands.worker import BEAT_KEY, beat

    redis_conn.delete(BEAT_KEY)
    never = client.get("/healthz")
    assert never.status_code == 200  # the contract keeps 503 for the database and Redis
    assert never.json["status"] == "degraded"
    assert never.json["worker"] == {"alive": False, "last_seen": None}
    gone = datetime.now(UTC) - timedelta(minutes=10)
    beat(redis_conn, gone)
    stale = client.get("/healthz").json
    assert stale["status"] == "degraded"
    assert stale["worker"] == {"alive": False, "last_seen": gone.isoformat(timespec="seconds")}


def test_the_workers_beat_is_written_by_its_cron_thread(redis_conn):
    import time

    from bot.commands.worker import BEAT_KEY, CronThread, worker_state

    redis_conn.delete(BEAT_KEY)
    thread = CronThread(redis_conn, interval=1)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not redis_conn.exists(BEAT_KEY) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        thread.stop()
        thread.join(5)
    assert worker_state(redis_conn)["alive"] is True
