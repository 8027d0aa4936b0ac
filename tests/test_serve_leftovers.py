"""What a `serve` that did not stop cleanly left behind, found by the next one (no whole serve
here: the record and the checks on their own, with real processes)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from bot.commands import children, serve_record
from bot.commands.serve import port_in_use
from bot.commands.stop_signals import StopSignals


def _left_running() -> subprocess.Popen:
    """A process as serve starts one (its own process group), left running."""
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
    )


def test_the_next_serve_stops_what_a_killed_one_left_and_says_which(tmp_path):
    web, worker = _left_running(), _left_running()
    try:
        serve_record.write(
            tmp_path,
            4242,
            [serve_record.started("web", web.pid), serve_record.started("worker", worker.pid)],
        )
        said: list[str] = []
        assert serve_record.stop_leftovers(tmp_path, said.append, timeout=5)
        assert web.wait(timeout=10) is not None and worker.wait(timeout=10) is not None
        assert len(said) == 1
        assert "earlier `involve serve` (pid 4242) did not stop cleanly" in said[0]
        assert f"web (pid {web.pid})" in said[0] and f"worker (pid {worker.pid})" in said[0]
        assert not (tmp_path / serve_record.RECORD_NAME).exists()
    finally:
        for process in (web, worker):
            process.kill()
            process.wait()


def test_a_pid_now_someone_elses_is_never_touched(tmp_path):
    """The pid is reused by another program: its start time differs, so it is left alone."""
    stranger = _left_running()
    try:
        created = psutil.Process(stranger.pid).create_time()
        serve_record.write(
            tmp_path, 4242, [serve_record.Started("worker", stranger.pid, created - 3600)]
        )
        said: list[str] = []
        assert serve_record.stop_leftovers(tmp_path, said.append, timeout=5)
        assert stranger.poll() is None, "another program's process was stopped"
        assert said and "nothing it started is still running" in said[0]
    finally:
        stranger.kill()
        stranger.wait()


def test_what_cannot_be_proved_ours_is_named_with_what_to_do(tmp_path, monkeypatch):
    stranger = _left_running()
    try:
        serve_record.write(tmp_path, 4242, [serve_record.started("web", stranger.pid)])

        def denied(_process):
            raise serve_record.Unprovable("access denied")

        monkeypatch.setattr(serve_record, "is_running", denied)
        said: list[str] = []
        assert not serve_record.stop_leftovers(tmp_path, said.append, timeout=5)
        assert stranger.poll() is None
        assert f"web (pid {stranger.pid})" in said[0] and "kill PID" in said[0]
        assert (tmp_path / serve_record.RECORD_NAME).exists(), "kept until someone checks"
    finally:
        stranger.kill()
        stranger.wait()


def test_no_record_and_an_unreadable_one_say_nothing(tmp_path):
    said: list[str] = []
    assert serve_record.stop_leftovers(tmp_path, said.append)
    (tmp_path / serve_record.RECORD_NAME).write_text("{not json")
    assert serve_record.stop_leftovers(tmp_path, said.append)
    assert said == []


def test_a_port_in_use_is_found_before_anything_starts():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        problem = port_in_use("127.0.0.1", port)
        assert problem is not None and f"port {port} on 127.0.0.1 is in use" in problem
        assert f"(pid {os.getpid()}," in problem and "--port" in problem
    assert port_in_use("127.0.0.1", port) is None


def test_stopping_a_child_takes_its_whole_group(tmp_path):
    """A leader that leaves a child behind (as a gunicorn master killed mid-stop would):
    the group is emptied, so nothing of it keeps the port."""
    marker = tmp_path / "grandchild.pid"
    leader = children.start(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time, signal\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
            f"open({str(marker)!r}, 'w').write(str(child.pid))\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
            "time.sleep(120)\n",
        ]
    )
    deadline = time.monotonic() + 30
    while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = psutil.Process(int(marker.read_text()))
    children.stop([leader], timeout=10)
    assert leader.returncode == 0
    grandchild.wait(timeout=10)  # gone, killed with the group
    assert not children.group_alive(leader.pid)


def test_stop_signals_only_note_and_wake_the_loop():
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGHUP)}
    with StopSignals() as stop:
        assert not stop.wait(0.01)
        started = time.monotonic()
        os.kill(os.getpid(), signal.SIGHUP)
        assert stop.wait(5) and time.monotonic() - started < 2
        assert stop.name == "SIGHUP"
        os.kill(os.getpid(), signal.SIGINT)  # a second one: still just noted, no KeyboardInterrupt
        assert stop.wait(0.01) and stop.name == "SIGHUP"
    # Whatever was there before (another test in this process may have set its own) is back.
    assert {signum: signal.getsignal(signum) for signum in before} == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_stops_when_serve_dies(tmp_path):
    """serve killed outright: the kernel sends its children SIGTERM."""
    marker = tmp_path / "child.pid"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from bot.commands import children\n"
            "child = children.start(['sleep', '120'])\n"
            f"open({str(marker)!r}, 'w').write(str(child.pid))\n"
            "time.sleep(120)\n",
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        child = psutil.Process(int(marker.read_text()))
    finally:
        parent.kill()
        parent.wait()
    child.wait(timeout=10)


def test_every_web_process_reads_the_config_that_turns_the_control_socket_off():
    """gunicorn (25.1 on) opens one control socket per user: two instances on a machine
    would share it. The Procfile's web and serve both read webhooks.gunicorn_config."""
    from gunicorn.app.wsgiapp import WSGIApplication
    from gunicorn.config import Config

    from bot.commands.serve import _gunicorn_args
    from tests.conftest import ROOT

    procfile_web = next(
        line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:")
    )
    serve_args = _gunicorn_args("127.0.0.1", 5000, 1)
    for args in (procfile_web.split(), serve_args):
        at = args.index("--config")
        assert args[at + 1] == "python:webhooks.gunicorn_config"
    application = WSGIApplication.__new__(WSGIApplication)  # gunicorn's own loader, no argv
    application.cfg = Config()
    application.load_config_from_module_name_or_filename("python:webhooks.gunicorn_config")
    if "control_socket_disable" in application.cfg.settings:  # gunicorn 25.1 on
        assert application.cfg.control_socket_disable is True


def test_stopped_is_said_only_when_nothing_runs(tmp_path, capsys):
    from bot.commands.serve import _say_stopped

    stubborn = _left_running()
    try:
        record = [serve_record.started("worker", stubborn.pid)]
        serve_record.write(tmp_path, os.getpid(), record)
        _say_stopped(tmp_path, record)
        said = capsys.readouterr()
        assert "involve: stopped" not in said.out + said.err
        assert f"still running: worker (pid {stubborn.pid})" in said.err
        assert (tmp_path / serve_record.RECORD_NAME).exists(), "kept for the next serve"
    finally:
        stubborn.kill()
        stubborn.wait()
    _say_stopped(tmp_path, record)
    assert capsys.readouterr().out == "involve: stopped\n"
    assert not (tmp_path / serve_record.RECORD_NAME).exists()
