from bot.config import load_settings
from tests.conftest import app_env


def test_healthy(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {
        "status": "ok",
        "database": "ok",
        "redis": "ok",
        "channels": {
            "sms": "on",
            "voice": "on",
            "telegram": "off: set TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET",
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
