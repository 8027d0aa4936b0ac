"""`involve serve`: the whole service on one machine, stopped cleanly by Ctrl-C.

Web app (gunicorn), an rq worker with its scheduler, an embedded Redis where REDIS_URL is unset,
and SQLite where DATABASE_URL is unset, migrated on start.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; the lock below is then advisory only
    fcntl = None  # type: ignore[assignment]

from bot.commands.embedded_redis import EmbeddedRedis
from bot.commands.output import echo
from bot.config import Settings
from bot.storage import db

MAX_SOCKET_PATH = 100  # Unix socket paths are limited to about 107 bytes


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
        return _serve(settings, host, port, web_workers, env)
    finally:
        os.close(lock_fd)


def _serve(settings: Settings, host: str, port: int, web_workers: int, env: dict[str, str]) -> int:
    embedded: EmbeddedRedis | None = None
    if not settings.redis_url:
        embedded = EmbeddedRedis(_redis_dir(settings)).start()
        env["REDIS_URL"] = embedded.url
    try:
        return _run(settings, host, port, web_workers, env, embedded)
    finally:
        # Stopped last, and whatever failed on the way (a database that cannot be reached):
        # never left running for the next attempt to find.
        if embedded is not None:
            embedded.stop()


def _run(
    settings: Settings,
    host: str,
    port: int,
    web_workers: int,
    env: dict[str, str],
    embedded: EmbeddedRedis | None,
) -> int:
    env["DATABASE_URL"] = settings.database_url
    db.upgrade(settings.database_url)

    redis_note = f"embedded Redis at {embedded.url}" if embedded else "Redis from REDIS_URL"
    database_note = settings.database_url.split("@")[-1]
    echo(f"involve: database {database_note}; {redis_note}")
    from bot.channels import states as channel_states

    for channel, state in channel_states(settings).items():
        echo(f"involve: {channel} {state}")
    from bot.scripts.library import SurveyLibrary

    for problem in SurveyLibrary(settings.conversations_dir).check():
        echo(f"involve: survey script not loaded: {problem}", err=True)
    echo(
        f"involve: serving on http://{host}:{port} (public URL {settings.public_base_url}); Ctrl-C stops"
    )

    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--bind",
                f"{host}:{port}",
                "--workers",
                str(web_workers),
                "--threads",
                "4",
                "--access-logfile",
                "-",
                "--logger-class",  # no query strings or participant keys in the access log
                "webhooks.access_log.AccessLogger",
                "webhooks:create_app()",
            ],
            env=env,
        ),
        subprocess.Popen([sys.executable, "-m", "bot.commands.cli", "worker"], env=env),
    ]
    stopping = False

    def stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    try:
        while not stopping:
            for process in processes:
                if process.poll() is not None:
                    echo(
                        f"involve: a process exited with code {process.returncode}; stopping",
                        err=True,
                    )
                    code = process.returncode or 1
                    stopping = True
            redis_process = embedded.process if embedded is not None else None
            if (
                embedded is not None
                and redis_process is not None
                and redis_process.poll() is not None
            ):
                # Nothing would be sent, and only /healthz would say so: stop, loudly.
                echo(
                    "involve: the embedded Redis stopped; stopping"
                    f" (see {embedded.directory / 'redis.log'})",
                    err=True,
                )
                code, stopping = 1, True
            time.sleep(0.2)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        echo("involve: stopped")
    return code
