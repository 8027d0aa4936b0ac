import pytest

from bot.config import ConfigError, load_settings


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL must be a sqlite:/// or postgresql:// URL"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL must be a redis://"),
        ({"PUBLIC_BASE_URL": "example.org"}, "PUBLIC_BASE_URL must be an http(s) URL"),
        ({"SEND_RATE": "fast"}, "SEND_RATE must be a number greater than 0"),
        ({"SEND_RATE": "0"}, "SEND_RATE must be a number greater than 0"),
        ({"QUIET_HOURS": "evenings"}, "QUIET_HOURS must be windows like 20:00-10:00"),
        ({"QUIET_HOURS": "25:00-10:00"}, "QUIET_HOURS has a time that does not exist"),
        ({"INVOLVE_TIMEZONE": "Mars/Olympus"}, "INVOLVE_TIMEZONE must be an IANA time zone"),
        ({"TWILIO_ACCOUNT_SID": "AC1"}, "TWILIO_AUTH_TOKEN must be set too"),
        ({"TWILIO_FROM_NUMBER": "call me"}, "TWILIO_FROM_NUMBER must be a phone number"),
        (
            {"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t"},
            "TWILIO_FROM_NUMBER must be set too",
        ),
        ({"ADMIN_TOKEN": "secret"}, "ADMIN_TOKEN must be at least 32 characters"),
        ({"ADMIN_TOKEN": "x" * 31}, "ADMIN_TOKEN must be at least 32 characters"),
        ({"VOICE_RETRY": "soon"}, "VOICE_RETRY must be delays like 15m,1h,1d"),
        ({"VOICE_WAIT_SECONDS": "5"}, "VOICE_WAIT_SECONDS must be a whole number from 10 to 60"),
        ({"VOICE_CONFIDENCE": "high"}, "VOICE_CONFIDENCE must be a number from 0 to 1"),
        ({"VOICE_TRANSCRIBE": "perhaps"}, "VOICE_TRANSCRIBE must be yes or no"),
        (
            {
                "TWILIO_ACCOUNT_SID": "AC1",
                "TWILIO_AUTH_TOKEN": "t",
                "TWILIO_FROM_NUMBER": "+447700900999",
            },
            "SUPPRESSION_KEY must be set when Twilio or Telegram is on",
        ),
        (
            {"TELEGRAM_BOT_TOKEN": "1:abc"},
            "SUPPRESSION_KEY must be set when Twilio or Telegram is on",
        ),
        ({"SUPPRESSION_KEY": "short"}, "SUPPRESSION_KEY must be at least 32 characters"),
        (
            {
                "TWILIO_ACCOUNT_SID": "AC1",
                "TWILIO_AUTH_TOKEN": "t",
                "TWILIO_FROM_NUMBER": "+447700900999",
                "SUPPRESSION_KEY": "k" * 32,
            },
            "ORG_NAME must be set when Twilio or Telegram is on",
        ),
        (
            {"TELEGRAM_BOT_TOKEN": "1:abc", "SUPPRESSION_KEY": "k" * 32, "ORG_NAME": "  "},
            "ORG_NAME must be set when Twilio or Telegram is on",
        ),
        ({"ORG_NAME": "A" * 61}, "ORG_NAME must be at most 60 characters"),
        ({"CONTACT_PHONE": "ring the office"}, "CONTACT_PHONE must be a phone number"),
        ({"CONTACT_PHONE": "12345"}, "CONTACT_PHONE must be a phone number"),
        ({"RETENTION_DAYS": "a year"}, "RETENTION_DAYS must be a whole number of days"),
        ({"RETENTION_DAYS": "0"}, "RETENTION_DAYS must be a whole number of days"),
        ({"TRUSTED_PROXIES": "yes"}, "TRUSTED_PROXIES must be a whole number from 0 to 5"),
        # Telegram takes 1-256 of A-Z a-z 0-9 _ -; we ask for 16 at least (issue 20, 21).
        (
            {"TELEGRAM_WEBHOOK_SECRET": "my webhook secret 2026"},
            "TELEGRAM_WEBHOOK_SECRET may hold only the letters",
        ),
        (
            {"TELEGRAM_WEBHOOK_SECRET": "secret-\U0001f510-0123456789"},
            "TELEGRAM_WEBHOOK_SECRET may hold only the letters",
        ),
        (
            {"TELEGRAM_WEBHOOK_SECRET": "x" * 300},
            "TELEGRAM_WEBHOOK_SECRET must be 16 to 256 characters (it has 300)",
        ),
        (
            {"TELEGRAM_WEBHOOK_SECRET": "a"},
            "TELEGRAM_WEBHOOK_SECRET must be 16 to 256 characters (it has 1)",
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(env, message):
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_defaults(tmp_path):
    settings = load_settings({}, instance_path=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'involve.sqlite3'}"
    assert settings.public_base_url == "http://localhost:5000"
    assert [str(w) for w in settings.quiet_hours] == ["20:00-10:00", "15:00-16:00"]
    assert settings.send_rate == 1.0 and str(settings.timezone) == "Europe/London"
    assert not settings.twilio_enabled and not settings.telegram_enabled
    assert settings.trusted_proxies == 0  # no X-Forwarded-For is believed
    # A laptop with no Twilio or Telegram needs no secret and keeps everything until erased.
    assert settings.suppression_key is None and settings.retention_days is None


def test_retention_days_and_suppression_key_are_read():
    settings = load_settings({"RETENTION_DAYS": "365", "SUPPRESSION_KEY": "k" * 32})
    assert (settings.retention_days, settings.suppression_key) == (365, "k" * 32)


def test_postgres_urls_get_the_psycopg_driver():
    assert (
        load_settings({"DATABASE_URL": "postgres://u@h/db"}).database_url
        == "postgresql+psycopg://u@h/db"
    )


def test_cli_reports_a_bad_setting_in_one_line(monkeypatch):
    from click.testing import CliRunner

    from bot.commands import runtime
    from bot.commands.cli import main

    runtime._settings = None
    monkeypatch.setenv("SEND_RATE", "lots")
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert (
        result.exit_code == 1
        and "Error: SEND_RATE must be a number greater than 0" in result.output
    )
    runtime._settings = None


def test_a_long_enough_admin_token_is_accepted():
    assert load_settings({"ADMIN_TOKEN": "x" * 32}).admin_token == "x" * 32


def test_the_web_app_stops_at_start_on_a_short_admin_token(monkeypatch, tmp_path):
    from bot.commands import runtime
    from webhooks import create_app

    runtime._settings = None
    monkeypatch.setenv("ADMIN_TOKEN", "letmein")
    monkeypatch.setenv("INVOLVE_INSTANCE_PATH", str(tmp_path))
    try:
        with pytest.raises(SystemExit) as stopped:
            create_app()
        assert str(stopped.value).startswith("involve: ADMIN_TOKEN must be at least 32")
        assert "letmein" not in str(stopped.value)  # a secret, even a bad one, is not echoed
    finally:
        runtime._settings = None


def test_voice_settings_and_their_defaults():
    from datetime import timedelta

    default = load_settings({})
    assert (default.voice_name, default.voice_language, default.voice_wait_seconds) == (
        "Polly.Amy",
        "en-GB",
        10,
    )
    assert default.voice_retry == (timedelta(minutes=15), timedelta(hours=1), timedelta(days=1))
    assert default.inbound_call_survey is None and default.voice_transcribe is False
    chosen = load_settings(
        {"VOICE_RETRY": "30m, 2h", "VOICE_NAME": "alice", "INBOUND_CALL_SURVEY": "hear-back"}
    )
    assert chosen.voice_retry == (timedelta(minutes=30), timedelta(hours=2))
    assert (chosen.voice_name, chosen.inbound_call_survey) == ("alice", "hear-back")
    assert load_settings({"VOICE_RETRY": ""}).voice_retry == ()


def test_without_a_channel_a_key_is_made_once_in_the_instance_folder(tmp_path):
    from bot.conversations.suppression import suppression_hash, suppression_key

    settings = load_settings({}, instance_path=tmp_path)
    key = suppression_key(settings)
    assert len(key) == 64 and suppression_key(settings) == key
    assert (tmp_path / "suppression.key").stat().st_mode & 0o077 == 0  # only the owner reads it
    assert suppression_hash("+447700900001", key) != suppression_hash("+447700900001", b"k" * 32)


def test_telegram_bot_username_is_checked_at_start():
    assert load_settings({"TELEGRAM_BOT_USERNAME": "@InvolveBot"}).telegram_bot_username == (
        "InvolveBot"
    )
    with pytest.raises(ConfigError, match="TELEGRAM_BOT_USERNAME must be a bot username"):
        load_settings({"TELEGRAM_BOT_USERNAME": "not a name"})


def test_a_telegram_webhook_secret_telegram_takes_is_kept_as_it_is():
    for secret in ("A-z_09" + "k" * 10, "s" * 256):
        assert load_settings({"TELEGRAM_WEBHOOK_SECRET": secret}).telegram_webhook_secret == secret


def test_a_bad_telegram_webhook_secret_is_never_echoed():
    with pytest.raises(ConfigError) as caught:
        load_settings({"TELEGRAM_WEBHOOK_SECRET": "hunter2 hunter2 hunter2"})
    assert "hunter2" not in str(caught.value)


def test_org_name_and_contact_phone_are_read():
    settings = load_settings(
        {
            "TELEGRAM_BOT_TOKEN": "1:abc",
            "SUPPRESSION_KEY": "k" * 32,
            "ORG_NAME": "Age Better Cardiff",
            "CONTACT_PHONE": " 0300  123 4567 ",
        }
    )
    assert (settings.org_name, settings.contact_phone) == ("Age Better Cardiff", "0300 123 4567")
    # No channel on (a laptop, the simulator): a name to show, and no number.
    default = load_settings({})
    assert (default.org_name, default.contact_phone) == ("our involvement team", None)
