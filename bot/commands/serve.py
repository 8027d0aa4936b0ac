"""`involve serve`: the whole service on one machine, stopped cleanly by Ctrl-C, SIGTERM or SIGHUP.

Web app (gunicorn), an rq worker with its scheduler, an embedded Redis where REDIS_URL is unset,
and SQLite where DATABASE_URL is unset, migrated on start.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import psutil

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock below is then advisory only
    fcntl = None  # type: ignore[assignment]

from bot.channels import states as channel_states
from bot.commands import children, serve_record
from bot.commands.embedded_redis import EmbeddedRedis
from bot.commands.output import echo
from bot.commands.stop_signals import StopSignals
from bot.config import Settings
from bot.scripts.library import SurveyLibrary
from bot.storage import db

MAX_SOCKET_PATH = 100  # Unix socket paths are limited to about 107 bytes
# How long the web app and the worker get to finish what they are doing before they are killed
# (a job still running is retried by the reconciler); gunicorn's own wait comes first.
STOP_TIMEOUT = 20
WEB_GRACEFUL_TIMEOUT = 10


def _redis_dir(settings: Settings) -> Path:
    preferred = settings.instance_path / "redis"
    if len(str(preferred / "redis.sock")) <= MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(str(preferred).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"involve-{digest}"


class AlreadyServing(RuntimeError):
    pass


def _hold_instance_lock(instance: Path) -> int:
    """Take `serve.lock` in the instance folder for as long as this process lives.

    A second `involve serve` in the same folder would replace the first one's embedded Redis
    socket and leave its worker failing every job, so it must stop before touching anything.
    The kernel drops an flock when its holder dies, so a crash never leaves a stale lock.
    """
    path = instance / "serve.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise AlreadyServing(
                f"`involve serve` is already running in {instance} (pid {holder}); "
                "stop it first, or set INVOLVE_INSTANCE_PATH to another folder"
            ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def serve(settings: Settings, host: str, port: int, web_workers: int) -> int:
    env = dict(os.environ, INVOLVE_INSTANCE_PATH=str(settings.instance_path))
    if not (os.environ.get("PUBLIC_BASE_URL") or "").strip() and port != 5000:
        # The default (http://localhost:5000) names the default port; on another one, local
        # requests are signed for the port they really reach.
        settings = settings.with_overrides(public_base_url=f"http://localhost:{port}")
    env.setdefault("PUBLIC_BASE_URL", settings.public_base_url)
    settings.instance_path.mkdir(parents=True, exist_ok=True)
    try:
        lock_fd = _hold_instance_lock(settings.instance_path)
    except AlreadyServing as exc:
        echo(f"involve: {exc}", err=True)
        return 1
    try:
        if not serve_record.stop_leftovers(settings.instance_path, _say):
            return 1
        busy = port_in_use(host, port)
        if busy:
            echo(f"involve: {busy}", err=True)
            return 1
        with StopSignals() as stop:
            return _serve(settings, host, port, web_workers, env, stop)
    finally:
        os.close(lock_fd)


def _say(message: str) -> None:
    echo(message, err=True)


def port_in_use(host: str, port: int) -> str | None:
    """Why gunicorn could not listen on host:port, or None. Checked before anything starts:
    gunicorn would retry for five seconds and then leave only "a process exited" to read."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        return f"cannot listen on {host}: {exc.strerror}"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return f"cannot listen on {host}:{port}: {exc.strerror}"
        else:
            return None
    return (
        f"port {port} on {host} is in use{_holder(port)}: stop what uses it (another"
        " `involve serve`, or what an earlier one left behind), or choose another with --port"
    )


def _holder(port: int) -> str:
    """ " (pid N, name)" for the process listening on the port, where the system says."""
    try:
        for connection in psutil.net_connections(kind="inet"):
            if (
                connection.status == psutil.CONN_LISTEN
                and connection.laddr
                and connection.laddr.port == port
                and connection.pid
            ):
                return f" (pid {connection.pid}, {psutil.Process(connection.pid).name()})"
    except (psutil.Error, OSError):
        pass
    return ""


def _serve(
    settings: Settings,
    host: str,
    port: int,
    web_workers: int,
    env: dict[str, str],
    stop: StopSignals,
) -> int:
    instance = settings.instance_path
    started: list[serve_record.Started] = []

    def record(role: str, process: subprocess.Popen) -> None:
        started.append(serve_record.started(role, process.pid))
        serve_record.write(instance, os.getpid(), started)

    embedded: EmbeddedRedis | None = None
    try:
        if not settings.redis_url:
            embedded = EmbeddedRedis(_redis_dir(settings)).start()
            assert embedded.process is not None
            record("embedded Redis", embedded.process)
            env["REDIS_URL"] = embedded.url
        return _run(settings, host, port, web_workers, env, embedded, stop, record)
    finally:
        # Stopped last, and whatever failed on the way (a database that cannot be reached):
        # never left running for the next attempt to find.
        if embedded is not None:
            embedded.stop()
        if started:
            _say_stopped(instance, started)


def _say_stopped(instance: Path, started: list[serve_record.Started]) -> None:
    """Say "stopped" only when nothing started runs any more, and forget the record; otherwise
    keep the record for the next serve, and say what is left."""
    left = [p for p in started if serve_record.still_running(p)]
    if not left:
        serve_record.remove(instance)
        echo("involve: stopped")
        return
    names = ", ".join(f"{p.role} (pid {p.pid})" for p in left)
    echo(
        f"involve: not everything stopped; still running: {names}."
        " The next `involve serve` in this folder stops them, or stop them with `kill PID`",
        err=True,
    )


def _gunicorn_args(host: str, port: int, web_workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",  # as the Procfile: no control socket shared with other instances
        "python:webhooks.gunicorn_config",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(web_workers),
        "--threads",
        "4",
        # Within serve's own wait (STOP_TIMEOUT), so gunicorn stops its workers itself.
        "--graceful-timeout",
        str(WEB_GRACEFUL_TIMEOUT),
        "--access-logfile",
        "-",
        "--logger-class",  # no query strings or participant keys in the access log
        "webhooks.access_log.AccessLogger",
        "webhooks:create_app()",
    ]


def _run(
    settings: Settings,
    host: str,
    port: int,
    web_workers: int,
    env: dict[str, str],
    embedded: EmbeddedRedis | None,
    stop: StopSignals,
    record: Callable[[str, subprocess.Popen], None],
) -> int:
    env["DATABASE_URL"] = settings.database_url
    db.upgrade(settings.database_url)

    redis_note = f"embedded Redis at {embedded.url}" if embedded else "Redis from REDIS_URL"
    database_note = settings.database_url.split("@")[-1]
    echo(f"involve: database {database_note}; {redis_note}")

    for channel, state in channel_states(settings).items():
        echo(f"involve: {channel} {state}")

    for problem in SurveyLibrary(settings.conversations_dir).check():
        echo(f"involve: survey script not loaded: {problem}", err=True)
    if stop.stopping:  # asked to stop while the database was being set up
        return 0
    echo(
        f"involve: serving on http://{host}:{port} (public URL {settings.public_base_url}); Ctrl-C stops"
    )

    processes: list[subprocess.Popen] = []
    code = 0
    try:
        for role, args in (
            ("web", _gunicorn_args(host, port, web_workers)),
            ("worker", [sys.executable, "-m", "bot.commands.cli", "worker"]),
        ):
            processes.append(children.start(args, env))
            record(role, processes[-1])
        while not stop.wait(0.5):
            exited = next((p for p in processes if p.poll() is not None), None)
            if exited is not None:
                echo(f"involve: a process exited with code {exited.returncode}; stopping", err=True)
                code = exited.returncode or 1
                break
            redis_process = embedded.process if embedded is not None else None
            if redis_process is not None and redis_process.poll() is not None:
                # Nothing would be sent, and only /healthz would say so: stop, loudly.
                echo(
                    "involve: the embedded Redis stopped; stopping"
                    f" (see {embedded.directory / 'redis.log'})",  # type: ignore[union-attr]
                    err=True,
                )
                code = 1
                break
    finally:
        if stop.stopping:
            echo(f"involve: {stop.name} received; stopping the web app and the worker")
        children.stop(processes, timeout=STOP_TIMEOUT)
    return code
