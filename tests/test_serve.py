"""The quick start: `involve serve` with nothing configured runs the whole service."""

import os
import signal
import socket
import subprocess
import sys
import time

import requests

from tests.conftest import CONVERSATIONS, SUPPRESSION_KEY
from tests.fakes import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, sign, sms_params


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_runs_web_worker_embedded_redis_and_sqlite_then_stops_cleanly(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        INVOLVE_INSTANCE_PATH=str(tmp_path / "instance"),
        PUBLIC_BASE_URL=base,
        CONVERSATIONS_DIR=str(CONVERSATIONS),
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_FROM_NUMBER=FROM_NUMBER,
        SUPPRESSION_KEY=SUPPRESSION_KEY,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--port", str(port), "--web-workers", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline:
            try:
                health = requests.get(base + "/healthz", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):  # still starting; a busy machine
                time.sleep(0.2)
        assert health is not None and health.status_code == 200, health and health.text
        assert {k: health.json()[k] for k in ("status", "database", "redis")} == {
            "status": "ok",
            "database": "ok",
            "redis": "ok",
        }
        params = sms_params("TITLE")
        reply = requests.post(
            base + "/webhooks/twilio/sms",
            data=params,
            headers={"X-Twilio-Signature": sign(base + "/webhooks/twilio/sms", params)},
            timeout=10,
        )
        assert reply.status_code == 200 and "Which title do you like best?" in reply.text
        assert (tmp_path / "instance" / "involve.sqlite3").exists()
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "involve: stopped" in output
    assert "involve: sms on" in output and "involve: telegram off: not available yet" in output
    from bot.config import load_settings
    from bot.serve import _redis_dir

    socket_path = (
        _redis_dir(load_settings({"INVOLVE_INSTANCE_PATH": str(tmp_path / "instance")}))
        / "redis.sock"
    )
    assert "embedded Redis at unix://" + str(socket_path) in output
    assert not _redis_alive(socket_path), "the embedded Redis must stop with the service"


def _redis_alive(path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(path))
            return True
    except OSError:
        return False
