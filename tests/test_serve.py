"""The quick start: `involve serve` with nothing configured runs the whole service."""

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.conftest import CONVERSATIONS, SUPPRESSION_KEY
from tests.fakes import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, sign, sms_params

# Each starts whole `involve serve` processes (gunicorn, a worker, an embedded Redis).
pytestmark = pytest.mark.slow


def free_port() -> int:
    """A free port below the kernel's ephemeral range. A port the kernel hands out for
    port 0 (what this used to return) could be handed out again, before `serve` bound it,
    to another server asking for any port: the demo's stand-ins, the fakes, a parallel
    test. `/healthz` then answered from that server (seen once, as a health check without
    `channels`). Ports below the range are never handed out that way."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _serve_env(tmp_path, base: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        INVOLVE_INSTANCE_PATH=str(tmp_path / "instance"),
        PUBLIC_BASE_URL=base,
        CONVERSATIONS_DIR=str(CONVERSATIONS),
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_FROM_NUMBER=FROM_NUMBER,
        SUPPRESSION_KEY=SUPPRESSION_KEY,
        ORG_NAME="Age Better",
        # Where gunicorn 25.1 on puts its control socket unless told otherwise.
        XDG_RUNTIME_DIR=str(tmp_path / "run"),
    )
    (tmp_path / "run").mkdir(exist_ok=True)
    return env


def _start_serve(tmp_path, port: int, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.commands.cli",
            "serve",
            "--port",
            str(port),
            "--web-workers",
            "1",
        ],
        env=_serve_env(tmp_path, f"http://127.0.0.1:{port}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **popen,
    )


def _wait_for_health(base: str) -> requests.Response | None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            return requests.get(base + "/healthz", timeout=10)
        except (requests.ConnectionError, requests.Timeout):  # still starting, on a busy machine
            time.sleep(0.2)
    return None


@pytest.fixture(autouse=True)
def _no_redis_folder_left_behind(tmp_path):
    """Where tmp_path is too long for a socket, serve keeps its Redis in the temp folder. And
    a test that failed part-way leaves none of its processes running for the next ones."""
    yield
    for process in _ours(tmp_path):
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    folder = _socket_path(tmp_path).parent
    if tmp_path not in folder.parents:
        shutil.rmtree(folder, ignore_errors=True)


def _socket_path(tmp_path):
    from bot.commands.serve import _redis_dir
    from bot.config import load_settings

    return (
        _redis_dir(load_settings({"INVOLVE_INSTANCE_PATH": str(tmp_path / "instance")}))
        / "redis.sock"
    )


def test_serve_runs_web_worker_embedded_redis_and_sqlite_then_stops_cleanly(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = _start_serve(tmp_path, port)
    try:
        health = _wait_for_health(base)
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
    assert "involve: sms on" in output and "involve: telegram off: set TELEGRAM_BOT_TOKEN" in output
    socket_path = _socket_path(tmp_path)
    assert "embedded Redis at unix://" + str(socket_path) in output
    assert not _redis_alive(socket_path), "the embedded Redis must stop with the service"


def test_a_second_serve_in_the_same_folder_is_refused_and_the_first_keeps_working(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    first = _start_serve(tmp_path, port)
    try:
        health = _wait_for_health(base)
        assert health is not None and health.status_code == 200, health and health.text
        socket_path = _socket_path(tmp_path)
        # The same port too, as a newcomer running the quick start twice would.
        second = _start_serve(tmp_path, port)
        output, _ = second.communicate(timeout=60)
        assert second.returncode == 1, output
        assert "already running in" in output and "INVOLVE_INSTANCE_PATH" in output, output
        assert "embedded Redis" not in output, "the second must stop before starting anything"
        assert _redis_alive(socket_path), "the first one's Redis socket must be left alone"
        health = requests.get(base + "/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["redis"] == "ok", health.text
    finally:
        first.send_signal(signal.SIGINT)
        output, _ = first.communicate(timeout=30)
    assert first.returncode == 0, output


def _redis_alive(path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(path))
            return True
    except OSError:
        return False


def test_on_another_port_texts_are_checked_against_that_port(tmp_path):
    """With PUBLIC_BASE_URL unset, `--port 5911` means signatures for localhost:5911, not the
    default's :5000, so a locally signed text is accepted."""
    port = free_port()
    base = f"http://localhost:{port}"
    env = _serve_env(tmp_path, base)
    del env["PUBLIC_BASE_URL"]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.commands.cli",
            "serve",
            "--port",
            str(port),
            "--web-workers",
            "1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert _wait_for_health(base) is not None
        params = sms_params("TITLE")
        signed = sign(base + "/webhooks/twilio/sms", params)
        reply = requests.post(
            base + "/webhooks/twilio/sms",
            data=params,
            headers={"X-Twilio-Signature": signed},
            timeout=10,
        )
        assert reply.status_code == 200 and "Which title" in reply.text
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert f"public URL {base}" in output


def test_a_serve_that_cannot_reach_its_database_says_so_and_leaves_no_redis(tmp_path):
    env = _serve_env(tmp_path, "http://127.0.0.1:5000")
    env["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:1/involve"  # nothing listens there
    finished = subprocess.run(
        [sys.executable, "-m", "bot.commands.cli", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 1
    assert "Error: DATABASE_URL: cannot use the database" in finished.stderr
    assert "Traceback" not in finished.stderr
    socket_path = _socket_path(tmp_path)
    running = subprocess.run(["pgrep", "-f", str(socket_path)], capture_output=True, text=True)
    assert running.stdout.strip() == "", "the embedded Redis was left running"


def test_a_command_before_the_database_is_set_up_says_what_to_run(tmp_path):
    env = _serve_env(tmp_path, "http://127.0.0.1:5000")
    finished = subprocess.run(
        [sys.executable, "-m", "bot.commands.cli", "campaign", "status", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 1 and "Traceback" not in finished.stderr
    assert "run `involve db upgrade`" in finished.stderr


# --- stopping: nothing of ours left running, whichever way serve is stopped ------------------


def _ours(tmp_path) -> list[psutil.Process]:
    """Every process started for this test's instance folder: serve hands its environment,
    INVOLVE_INSTANCE_PATH included, to everything it starts (and they to their children)."""
    instance = str(tmp_path / "instance")
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("INVOLVE_INSTANCE_PATH") == instance:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def _alive(processes: list[psutil.Process]) -> list[str]:
    """Those still running (is_running() checks the start time too, so a reused pid is not
    taken for one of ours), as "pid name" for the failure message."""
    left = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{process.pid} {' '.join(process.cmdline()[:4])}")
        except psutil.NoSuchProcess:
            pass
    return left


def _group(process: psutil.Process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except ProcessLookupError:
        return None


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _serving(tmp_path, port: int, **popen) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """A serve, healthy, and every process it runs (gunicorn's master and worker, the rq
    worker, the embedded Redis)."""
    process = _start_serve(tmp_path, port, **popen)
    health = _wait_for_health(f"http://127.0.0.1:{port}")
    assert health is not None and health.status_code == 200, health and health.text
    # serve itself, gunicorn's master and its one worker, the rq worker, Redis. /healthz can
    # answer before the rq worker has started (it says "degraded" until the worker beats):
    # on a busy machine, wait for all five.
    deadline = time.monotonic() + 60
    ours = _ours(tmp_path)
    while len(ours) < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
        ours = _ours(tmp_path)
    assert len(ours) >= 5, [p.cmdline() for p in ours]
    return process, ours


def _busy(base: str, stop_at: float) -> None:
    """Keep the web worker's main thread handing requests to its thread pool."""
    with requests.Session() as session:
        while time.monotonic() < stop_at:
            try:
                session.get(base + "/healthz", timeout=2)
            except requests.RequestException:
                return


def _assert_all_gone(tmp_path, port: int, ours: list[psutil.Process], output: str) -> None:
    assert "involve: stopped" in output, output
    assert _alive(ours) == [], output
    assert _alive(_ours(tmp_path)) == [], output
    assert _port_free(port), "the port is still held after 'stopped'"
    assert not (tmp_path / "instance" / "serve.pids").exists(), "a clean stop forgets its record"


def test_ctrl_c_in_the_terminal_stops_everything_every_time(tmp_path):
    """Ctrl-C reaches the terminal's whole foreground group, not just serve. gunicorn's
    threaded workers took it in a signal handler that takes their thread pool's lock: about
    one stop in six left a worker deadlocked, holding the port after "stopped". Pressed while
    requests arrive, some times twice, as an impatient person does."""
    import threading

    for attempt in range(4):
        port = free_port()
        process, ours = _serving(tmp_path, port, start_new_session=True)
        # The terminal's Ctrl-C reaches serve alone; serve stops the rest, each once.
        assert [p.pid for p in ours if _group(p) == process.pid] == [process.pid]
        stop_at = time.monotonic() + 3
        load = [
            threading.Thread(target=_busy, args=(f"http://127.0.0.1:{port}", stop_at))
            for _ in range(3)
        ]
        for thread in load:
            thread.start()
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        if attempt % 2:
            time.sleep(0.3)
            os.killpg(process.pid, signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=60)
        finally:
            for thread in load:
                thread.join()
        assert process.returncode == 0, output
        _assert_all_gone(tmp_path, port, ours, output)


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_a_closed_terminal_or_a_stop_request_stops_everything(tmp_path, signum):
    """SIGHUP (the terminal or SSH session closed) and SIGTERM (systemd, a container stop) to
    serve alone: serve used to die of SIGHUP at once, leaving gunicorn and the embedded Redis
    running, and /healthz green with nobody to stop them."""
    port = free_port()
    process, ours = _serving(tmp_path, port)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    _assert_all_gone(tmp_path, port, ours, output)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)


def test_two_instances_do_not_share_gunicorns_control_socket(tmp_path):
    """gunicorn (25.1 on) opens one control socket per user ($XDG_RUNTIME_DIR/gunicorn.ctl):
    a second instance took it over and the first one's stop removed it."""
    port = free_port()
    process, _ = _serving(tmp_path, port)
    try:
        assert list((tmp_path / "run").iterdir()) == []
        assert not (tmp_path / "instance" / "gunicorn.ctl").exists()
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output


def test_a_killed_serve_takes_its_processes_with_it_and_the_next_one_starts(tmp_path):
    """SIGKILL gives serve no chance to stop anything: its children stop when it dies
    (Linux), and the next serve in the folder starts on the same port."""
    port = free_port()
    process, ours = _serving(tmp_path, port)
    process.kill()
    process.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while _alive(ours) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _alive(ours) == []
    again, ours = _serving(tmp_path, port)
    again.send_signal(signal.SIGINT)
    output, _ = again.communicate(timeout=60)
    assert again.returncode == 0, output
    assert f"earlier `involve serve` (pid {process.pid}) did not stop cleanly" in output
    _assert_all_gone(tmp_path, port, ours, output)
