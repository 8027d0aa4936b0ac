"""`involve webhooks set` never points a live number or bot at an address it cannot reach."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bot.commands import runtime
from bot.commands.cli import main
from bot.config import is_local_url, load_settings, unreachable_from_internet
from tests.conftest import SUPPRESSION_KEY
from tests.fakes import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER

# An address no test can reach: the refusal must come before any call to it.
INTERNET_API = "https://api.provider.invalid"


def _configure(tmp_path, **env: str):
    base = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "INVOLVE_INSTANCE_PATH": str(tmp_path),
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": FROM_NUMBER,
        "TWILIO_API_BASE_URL": INTERNET_API,
        "SUPPRESSION_KEY": SUPPRESSION_KEY,
        "ORG_NAME": "Age Better",
    }
    base.update(env)
    runtime.configure(load_settings(base))


@pytest.mark.parametrize(
    "public",
    [
        None,  # unset: the default, http://localhost:5000
        "https://localhost:5000",
        "https://127.0.0.1",
        "https://[::1]:8443",
        "https://192.168.1.20",
        "https://10.0.0.7",
        "https://involve.local",
        "http://involve.example.org",
    ],
)
def test_a_local_or_plain_http_public_url_is_refused_for_real_providers(tmp_path, public):
    env = {} if public is None else {"PUBLIC_BASE_URL": public}
    _configure(tmp_path, **env)
    try:
        result = CliRunner().invoke(main, ["webhooks", "set"])
    finally:
        runtime.configure(None)
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "PUBLIC_BASE_URL" in lines[0] and "nothing was changed" in lines[0]
    assert "could not set" not in result.output  # no provider was asked


def test_telegram_alone_is_refused_too(tmp_path):
    _configure(
        tmp_path,
        TWILIO_ACCOUNT_SID="",
        TWILIO_AUTH_TOKEN="",
        TWILIO_FROM_NUMBER="",
        TELEGRAM_BOT_TOKEN="123:abc",
        TELEGRAM_WEBHOOK_SECRET="a-long-enough-secret-0123456789",
        TELEGRAM_API_BASE_URL=INTERNET_API,
    )
    try:
        result = CliRunner().invoke(main, ["webhooks", "set"])
    finally:
        runtime.configure(None)
    assert result.exit_code != 0
    assert "Telegram could not reach it" in result.output


def test_what_counts_as_local():
    for url in (
        "http://localhost:5000",
        "https://127.8.0.1",
        "https://[::1]",
        "https://[::ffff:10.1.2.3]",
        "https://172.16.0.4",
        "https://169.254.1.1",
        "https://0.0.0.0",
        "https://box.localhost",
    ):
        assert is_local_url(url), url
    for url in ("https://involve.example.org", "https://8.8.8.8", "https://[2001:4860::8888]"):
        assert not is_local_url(url), url
    assert unreachable_from_internet("https://involve.example.org") is None
    assert unreachable_from_internet("http://involve.example.org") == "it is not https"
