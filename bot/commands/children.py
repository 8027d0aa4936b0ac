"""The processes `involve serve` starts, each in a process group of its own, and how they stop.

A terminal's Ctrl-C goes to every process in its foreground group. gunicorn's threaded worker
answers SIGINT by shutting its thread pool down inside the signal handler, which takes the
pool's lock; when the signal lands while the worker's main thread holds that lock (handing a
request to the pool), the worker deadlocks, and after its master is killed it holds the port
for good. So the children run in sessions of their own: only `serve` hears the terminal, and
it asks each child to stop once, with SIGTERM, which gunicorn's workers answer with a flag.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import psutil

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Looked up here, before any fork: a child between fork and exec should load nothing.
_prctl = _load_prctl()


def stop_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that has the kernel send the child SIGTERM when this process dies, even
    by SIGKILL, so a killed `serve` does not leave its web app, worker and Redis running
    (Linux only; elsewhere the next `serve` finds them from its record). None where unsupported.
    """
    if _prctl is None:
        return None
    parent = os.getpid()
    prctl = _prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the line above: go with it
            os._exit(1)

    return preexec


def start(args: list[str], env: dict[str, str] | None = None, **kwargs: object) -> subprocess.Popen:
    """Start a child in a session (and so a process group) of its own; see the module's note."""
    return subprocess.Popen(
        args,
        env=env,
        start_new_session=True,
        preexec_fn=stop_with_parent(),
        **kwargs,  # type: ignore[arg-type]
    )


def group_alive(pgid: int) -> bool:
    """True while a process group has a member that runs. A zombie (exited, not yet reaped by
    its parent) still counts for the kernel, but holds no port or socket: it is not counted."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal is still a member
        return True
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, PermissionError):
            continue
    return False


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def stop(processes: list[subprocess.Popen], timeout: float) -> None:
    """SIGTERM to each process, then wait until each one's whole group is gone: the leader
    within `timeout`, else the group is killed; anything a leader left behind in its group (a
    gunicorn worker, an rq work horse) is given a moment, then killed too."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            kill_group(process.pid)
            process.wait()
    for process in processes:
        wait_for_group(process.pid, timeout=2)


def wait_for_group(pgid: int, timeout: float) -> bool:
    """Wait for a process group to empty, killing it after `timeout`; False if members remain
    even then (zombies a container's init does not reap count as members)."""
    deadline = time.monotonic() + timeout
    killed = False
    while group_alive(pgid):
        if time.monotonic() > deadline:
            if killed:
                return False
            kill_group(pgid)
            killed, deadline = True, time.monotonic() + timeout
        time.sleep(0.1)
    return True
