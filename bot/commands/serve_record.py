"""`serve.pids` in the instance folder: what a running `involve serve` started, so the next one
can tell whether the last stopped cleanly.

A `serve` killed outright (SIGKILL, a crash, a lost container) cannot stop its children; on
Linux the kernel asks them to stop (`children.stop_with_parent`), elsewhere they keep running,
holding the port and the embedded Redis. The next `serve` reads this record and stops what is
provably ours: the same pid *and* the same start time, so a pid the system has since given to
another program is never touched. What it cannot prove, it names, with what to do.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from bot.commands import children

RECORD_NAME = "serve.pids"
# Stopped in this order: the web app and worker while Redis still answers them, Redis last.
STOP_ORDER = ("web", "worker", "embedded Redis")
# Start times are read from the kernel in clock ticks (1/100 s); a pid given to another
# program has a later start than this margin.
SAME_START = 0.05


@dataclass(frozen=True)
class Started:
    role: str
    pid: int
    created: float  # psutil's create_time: with the pid, which process this is


def started(role: str, pid: int) -> Started:
    try:
        return Started(role, pid, psutil.Process(pid).create_time())
    except psutil.NoSuchProcess:  # gone already (it failed at once): nothing to find later
        return Started(role, pid, 0.0)


def write(instance: Path, serve_pid: int, processes: list[Started]) -> None:
    path = instance / RECORD_NAME
    partial = path.with_suffix(".partial")
    body = {"serve": serve_pid, "processes": [asdict(p) for p in processes]}
    partial.write_text(json.dumps(body, indent=1) + "\n")
    os.replace(partial, path)  # a reader sees the old record or the new one, never half


def read(instance: Path) -> tuple[int | None, list[Started]]:
    try:
        body = json.loads((instance / RECORD_NAME).read_text())
        return int(body["serve"]), [
            Started(str(p["role"]), int(p["pid"]), float(p["created"])) for p in body["processes"]
        ]
    except FileNotFoundError:
        return None, []
    except (ValueError, KeyError, TypeError):  # unreadable: nothing in it can be proved
        return None, []


def remove(instance: Path) -> None:
    (instance / RECORD_NAME).unlink(missing_ok=True)


class Unprovable(RuntimeError):
    pass


def is_running(process: Started) -> bool:
    """True if that very process runs; False if it has gone (or the pid is someone else's now).

    Raises Unprovable where the system will not say (another user's process, no permission).
    """
    try:
        created = psutil.Process(process.pid).create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied as exc:
        raise Unprovable(str(exc)) from None
    return abs(created - process.created) < SAME_START


def still_running(process: Started) -> bool:
    """is_running, where a process the system will not describe counts as running."""
    try:
        return is_running(process)
    except Unprovable:
        return True


def stop_leftovers(instance: Path, say: Callable[[str], None], timeout: float = 20) -> bool:
    """Stop whatever a `serve` that did not stop cleanly left running in this folder.

    Called with the instance lock held, so no `serve` is running here now. Returns False, having
    said which pids and what to do, where a leftover cannot be proved to be ours.
    """
    serve_pid, processes = read(instance)
    if not processes:
        remove(instance)
        return True
    running, unknown = [], []
    for process in processes:
        try:
            if is_running(process):
                running.append(process)
        except Unprovable:
            unknown.append(process)
    if unknown:
        names = ", ".join(f"{p.role} (pid {p.pid})" for p in unknown)
        say(
            f"involve: an earlier `involve serve` (pid {serve_pid}) in {instance} did not stop"
            f" cleanly and may have left running: {names}. Check them (`ps -p PID`), stop the"
            f" ones that are ours (`kill PID`), delete {instance / RECORD_NAME}, then start again."
        )
        return False
    if not running:
        say(
            f"involve: an earlier `involve serve` (pid {serve_pid}) did not stop cleanly;"
            " nothing it started is still running"
        )
    else:
        names = ", ".join(f"{p.role} (pid {p.pid})" for p in running)
        say(
            f"involve: an earlier `involve serve` (pid {serve_pid}) did not stop cleanly;"
            f" stopping what it left running: {names}"
        )
        order = {role: n for n, role in enumerate(STOP_ORDER)}
        for process in sorted(running, key=lambda p: order.get(p.role, -1)):
            _stop(process, timeout)
    remove(instance)
    return True


def _stop(process: Started, timeout: float) -> None:
    # Each child of `serve` leads a process group of its own; signal the group only when this
    # very process still leads it, so nobody else's process is ever signalled.
    try:
        leads_group = os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        return
    if not is_running(process):
        return
    if leads_group:
        os.killpg(process.pid, signal.SIGTERM)
        children.wait_for_group(process.pid, timeout)
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        psutil.Process(process.pid).wait(timeout)
    except psutil.TimeoutExpired:
        if is_running(process):
            os.kill(process.pid, signal.SIGKILL)
    except psutil.NoSuchProcess:
        pass
