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
            "telegram": "off: not available yet",
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
