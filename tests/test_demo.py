"""`involve serve --demo`: a whole cycle on one machine with nothing sent to anyone.

The demo's stand-ins for Twilio and Telegram are product code (bot/commands/demo/);
here they run with the real web app on a real local HTTP server, real databases and Redis, the
real rq worker, and the real senders talking to the stand-ins over HTTP.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot.commands import demo, runtime
from bot.commands.cli import main
from bot.commands.demo import records
from bot.commands.demo.stand_ins import StandIns
from bot.config import ConfigError, Settings, load_settings
from bot.storage.models import Answer
from tests.conftest import ADMIN, ADMIN_TOKEN, CONVERSATIONS, run_worker
from tests.test_console import token

PANEL = [
    {"name": "Gwen Evans", "phone": "07700 900001", "tags": ["readers"], "recontact": True},
    {"name": "Rhys Hughes", "telegram_chat_id": "424242", "channel": "telegram", "tags": ["chat"]},
]


@dataclass
class Demo:
    settings: Settings
    stand_ins: StandIns
    client: object
    instance: Path

    def sent(self, address: str) -> list[str]:
        return [
            r.text
            for r in self.stand_ins.records()
            if r.direction == "out" and r.address == address
        ]


@pytest.fixture
def running_demo(database, redis_conn, redis_url, tmp_path) -> Iterator[Demo]:
    """The web app in demo mode on a real local server, with the demo's stand-ins, as
    `involve serve --demo` runs them (less gunicorn)."""
    from werkzeug.serving import make_server

    from webhooks import create_app

    built: dict[str, object] = {}
    server = make_server(
        "127.0.0.1", 0, lambda environ, start: built["app"](environ, start), threaded=True
    )
    public = f"http://127.0.0.1:{server.server_port}"
    stand_ins = StandIns(public).start()
    instance = tmp_path / "demo"
    env = {
        **demo.environment({}, stand_ins.url, public, instance),
        "DATABASE_URL": database.url,
        "REDIS_URL": redis_url,
        "CONVERSATIONS_DIR": str(CONVERSATIONS),
        "SEND_RATE": "1000",
        "ADMIN_TOKEN": ADMIN_TOKEN,
    }
    settings = load_settings(env)
    app = built["app"] = create_app({"SETTINGS": settings})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Demo(settings, stand_ins, app.test_client(), instance)
    finally:
        server.shutdown()
        thread.join(5)
        stand_ins.stop()
        runtime.configure(settings)


def _sign_in(client, password: str) -> None:
    response = client.post(
        "/console/sign-in",
        data={"csrf_token": token(client), "email": demo.STAFF_EMAIL, "password": password},
    )
    assert response.status_code == 302, response.get_data(as_text=True)


def _launch(client, channel: str, tag: str) -> None:
    created = client.post(
        "/admin/api/campaigns",
        json={"survey": "guide-title", "audience": {"tags": [tag]}, "channel": channel},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.json
    # Without the demo (the quick start's own settings) this is the 409 "set TWILIO_...".
    launched = client.post(f"/admin/api/campaigns/{created.json['id']}/launch", headers=ADMIN)
    assert launched.status_code == 202, launched.json


def _reply(client, **form: str) -> str:
    response = client.post(
        "/console/demo/reply", data={"csrf_token": token(client, "/console/demo"), **form}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return client.get("/console/demo").get_data(as_text=True)


def _answers(database) -> dict[str, str]:
    with database.session() as session:
        return {a.question_id: a.value for a in session.scalars(select(Answer))}


def _eventually(check, seconds: float = 30.0) -> bool:
    """A callback from another thread: waited for, never timed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_a_launch_goes_to_the_stand_ins_shows_on_the_demo_page_and_a_reply_answers(
    running_demo, database, redis_conn
):
    client = running_demo.client
    _sign_in(client, demo.staff_account(database))
    imported = client.post("/admin/api/participants", json={"participants": PANEL}, headers=ADMIN)
    assert imported.json["created"] == 2, imported.json
    _launch(client, "sms", "readers")
    run_worker(redis_conn)

    (invitation,) = running_demo.sent("+447700900001")
    assert invitation.startswith("Hello Gwen") and "Which title do you like best?" in invitation
    page = client.get("/console/demo").get_data(as_text=True)
    assert "<h1>Demo: messages sent</h1>" in page and "Hello Gwen" in page
    assert "Gwen Evans, +447700900001" in page  # who on the panel holds the number
    assert 'class="demo-banner"' in page and "Nothing here reaches anyone" in page

    # Signed with the demo's token, as Twilio would: the status endpoint takes it.
    assert _eventually(
        lambda: [r.status for r in running_demo.stand_ins.records()] == ["delivered"]
    ), running_demo.stand_ins.records()

    page = _reply(client, kind="text", address="+447700900001", reply="2")
    assert _answers(database) == {"title": "your-health"}
    assert "What made you choose it?" in page
    assert running_demo.sent("+447700900001")[-1].startswith("What made you choose it?")


def test_a_telegram_button_pressed_on_the_demo_page_answers(running_demo, database, redis_conn):
    client = running_demo.client
    _sign_in(client, demo.staff_account(database))
    client.post("/admin/api/participants", json={"participants": PANEL}, headers=ADMIN)
    _launch(client, "telegram", "chat")
    run_worker(redis_conn)

    page = client.get("/console/demo").get_data(as_text=True)
    assert "Hello Rhys" in page
    pressed = re.search(r'name="button" value="([^"]+)">Your health, your way<', page)
    assert pressed, page
    _reply(client, kind="chat", address="424242", button=pressed.group(1))
    assert _answers(database) == {"title": "your-health"}
    run_worker(redis_conn)  # Telegram's answers go out through the outbox
    assert "What made you choose it?" in running_demo.sent("424242")[-1]


def test_involve_demo_text_sends_a_signed_text_and_prints_the_answer(running_demo, tmp_path):
    running_demo.instance.mkdir(parents=True, exist_ok=True)
    (running_demo.instance / demo.STAND_INS_FILE).write_text(running_demo.stand_ins.url)
    result = CliRunner().invoke(
        main,
        ["demo", "text", "07700 900123", "TITLE"],
        env={"INVOLVE_INSTANCE_PATH": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    assert "+447700900123 wrote: TITLE" in result.output
    assert "Which title do you like best?" in result.output


def test_involve_demo_text_says_when_no_demo_is_running(tmp_path):
    result = CliRunner().invoke(
        main, ["demo", "text", "07700 900123", "yes"], env={"INVOLVE_INSTANCE_PATH": str(tmp_path)}
    )
    assert result.exit_code == 1 and "no demo is running here" in result.output


def test_a_call_is_recorded_and_said_to_be_a_call(running_demo, database, redis_conn):
    client = running_demo.client
    client.post("/admin/api/participants", json={"participants": PANEL}, headers=ADMIN)
    _launch(client, "voice", "readers")
    run_worker(redis_conn)
    (call,) = [r for r in running_demo.stand_ins.records() if r.address == "+447700900001"]
    assert call.kind == records.CALL and call.sid.startswith("CA") and "phone call" in call.text


def test_a_second_demo_in_the_same_folder_is_refused_before_it_changes_anything(tmp_path):
    import fcntl

    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / demo.STAND_INS_FILE).write_text("http://127.0.0.1:9\n")
    with open(folder / "serve.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the running demo's serve holds it
        result = CliRunner().invoke(
            main,
            ["serve", "--demo"],
            env={
                **QUIET,
                "DATABASE_URL": None,
                "REDIS_URL": None,
                "INVOLVE_INSTANCE_PATH": str(tmp_path),
            },
        )
    assert result.exit_code == 1 and "a demo is already running" in result.output
    assert (folder / demo.STAND_INS_FILE).read_text() == "http://127.0.0.1:9\n"
    assert not (folder / "involve.sqlite3").exists()


QUIET = {name: None for name in (*demo.PROVIDER_SETTINGS, "PUBLIC_BASE_URL")}


@pytest.mark.parametrize(
    ("env", "args", "named"),
    [
        ({"TWILIO_ACCOUNT_SID": "AC" + "1" * 32}, [], "TWILIO_ACCOUNT_SID"),
        ({"TELEGRAM_BOT_TOKEN": "123:real"}, [], "TELEGRAM_BOT_TOKEN"),
        ({"PUBLIC_BASE_URL": "https://involve.example.org"}, [], "PUBLIC_BASE_URL"),
        ({"DATABASE_URL": "postgresql://db.example.org/involve"}, [], "DATABASE_URL"),
        ({"REDIS_URL": "redis://127.0.0.1:6379/0"}, [], "REDIS_URL"),
        ({}, ["--host", "0.0.0.0"], "--host"),
    ],
)
def test_the_demo_refuses_to_start_near_anything_real(tmp_path, env, args, named):
    result = CliRunner().invoke(
        main,
        ["serve", "--demo", *args],
        env={
            **QUIET,
            "DATABASE_URL": None,
            "REDIS_URL": None,
            "INVOLVE_INSTANCE_PATH": str(tmp_path),
            **env,
        },
    )
    assert result.exit_code == 1, result.output
    assert named in result.output and "--demo" in result.output
    assert not (tmp_path / "demo").exists(), "nothing may start before the refusal"


def test_demo_settings_refuse_a_real_provider_or_public_address(tmp_path):
    base = demo.environment({}, "http://127.0.0.1:9", "http://localhost:5000", tmp_path)
    assert load_settings(base).demo
    for name, real in (
        ("TWILIO_API_BASE_URL", "https://api.twilio.com"),
        ("TELEGRAM_API_BASE_URL", "https://api.telegram.org"),
        ("PUBLIC_BASE_URL", "https://involve.example.org"),
    ):
        with pytest.raises(ConfigError, match=name):
            load_settings({**base, name: real})


def test_outside_a_demo_there_is_no_demo_page_and_no_banner(client, database):
    from tests.test_console import add_staff, sign_in

    assert "demo-banner" not in client.get("/console/sign-in").get_data(as_text=True)
    add_staff(database)
    sign_in(client)
    assert client.get("/console/demo").status_code == 404
    assert "demo-banner" not in client.get("/console/").get_data(as_text=True)


@pytest.mark.slow
def test_serve_demo_runs_a_whole_cycle_and_stops_with_nothing_left(tmp_path):
    """The README's recipe, as a newcomer runs it: `involve serve --demo`, a panel and a
    launch through the admin API, the invitation in the stand-ins, a reply by `involve demo
    text`, then Ctrl-C."""
    import os
    import signal
    import subprocess
    import sys

    import requests

    from tests.test_serve import _wait_for_health, free_port

    port = free_port()
    base = f"http://localhost:{port}"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (*demo.PROVIDER_SETTINGS, "DATABASE_URL", "REDIS_URL", "PUBLIC_BASE_URL")
    }
    env.update(
        INVOLVE_INSTANCE_PATH=str(tmp_path / "instance"),
        CONVERSATIONS_DIR=str(CONVERSATIONS),
        ADMIN_TOKEN=ADMIN_TOKEN,
    )
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.commands.cli", "serve", "--demo", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    pointer = tmp_path / "instance" / "demo" / demo.STAND_INS_FILE
    try:
        health = _wait_for_health(base)
        assert health is not None and health.json()["channels"] == {
            "sms": "on",
            "telegram": "on",
            "voice": "on",
            # The demo's stand-ins are Twilio's texts and calls and Telegram: no WhatsApp sender
            # is set up there, and the channel says so.
            "whatsapp": "off: set TWILIO_WHATSAPP_FROM (or TWILIO_WHATSAPP_MESSAGING_SERVICE_SID)",
        }, log.read_text()
        people = requests.post(
            f"{base}/admin/api/participants",
            json={"participants": PANEL},
            headers=ADMIN,
            timeout=30,
        )
        assert people.status_code == 200, people.text
        created = requests.post(
            f"{base}/admin/api/campaigns",
            json={"survey": "guide-title", "audience": {"tags": ["readers"]}, "channel": "sms"},
            headers=ADMIN,
            timeout=30,
        ).json()
        launched = requests.post(
            f"{base}/admin/api/campaigns/{created['id']}/launch", headers=ADMIN, timeout=30
        )
        assert launched.status_code == 202, launched.text
        stand_ins = pointer.read_text().strip()
        assert _eventually(
            lambda: any(
                r.address == "+447700900001" and r.text.startswith("Hello Gwen")
                for r in records.fetch_records(stand_ins)
            ),
            120,
        ), log.read_text()
        reply = subprocess.run(
            [sys.executable, "-m", "bot.commands.cli", "demo", "text", "07700 900001", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert reply.returncode == 0, reply.stderr
        assert "answer: What made you choose it?" in reply.stdout
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    output = log.read_text()
    assert process.returncode == 0, output
    assert "involve: DEMO: nothing reaches anyone" in output and "involve: stopped" in output
    assert not pointer.exists()
    with pytest.raises(records.StandInError):
        records.fetch_records(stand_ins)


def test_stand_in_telegram_ids_never_repeat_across_a_restart():
    """The outbox keeps a sent message's id as the provider's, and the webhook ignores an
    update id seen before: a restarted demo must not hand out the same ones again."""
    first = StandIns("http://127.0.0.1:9")
    time.sleep(0.01)  # a restart takes longer than this
    second = StandIns("http://127.0.0.1:9")
    sent = [s.telegram("sendMessage", {"chat_id": 424242, "text": "hi"}) for s in (first, second)]
    assert sent[1]["message_id"] > sent[0]["message_id"]
    assert next(second._update_ids) > next(first._update_ids)
    # A chat id that is not a number is still answered (as Telegram answers), not a crash.
    assert first.telegram("sendMessage", {"chat_id": "@someone", "text": "hi"})["message_id"]
