"""What one webhook costs in this process, without gunicorn or the load generator: the same
panel, mix and signed requests as `bench.webhooks`, handed one after another to the app's WSGI
callable, timed in CPU seconds (or counted in instructions under callgrind).

On a machine shared with other work, wall-clock throughput moves by a fifth from run to run;
CPU time per request moves much less, and instruction counts not at all. So a change to the
request path is judged here first, involve beside *no logic* (`bench.floor_app`), and then in
`./dev bench webhooks`.

    python -m bench.inprocess [involve|floor] [sqlite|postgresql] [REQUESTS]
        [--profile FILE.html] [--seed-only DIR | --from DIR]

`--seed-only DIR` seeds a database once and keeps it in DIR; `--from DIR` measures a copy of
it (for callgrind, where seeding would be counted too; and so two runs meet the same data).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text

from bench import webhooks

BASE = "http://bench.invalid"
WARM_UP = 200  # requests before measuring: imports, connections, caches, compiled statements


def _environ(prepared: Any) -> dict[str, Any]:
    host = BASE.split("//", 1)[1]
    environ = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": prepared.path,
        "QUERY_STRING": "",
        "SERVER_NAME": host,
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": host,
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": prepared.headers["Content-Type"],
        "CONTENT_LENGTH": str(len(prepared.body)),
        "HTTP_X_TWILIO_SIGNATURE": prepared.headers["X-Twilio-Signature"],
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(prepared.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    return environ


def _requests(phones: list[str]) -> list[Any]:
    """The connections' texts interleaved, as the server meets them."""
    batches = webhooks.prepared(BASE, webhooks.conversations_by_connection(phones))
    longest = max(len(b) for b in batches)
    return [b[i] for i in range(longest) for b in batches if i < len(b)]


def _app(which: str, url: str, workdir: Path) -> Any:
    os.environ.update(
        {
            "DATABASE_URL": url,
            "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
            "TWILIO_AUTH_TOKEN": webhooks.TOKEN,
            "TWILIO_FROM_NUMBER": "+441234567890",
            "SUPPRESSION_KEY": "bench-suppression-key-" + "0" * 32,
            "ORG_NAME": "Bench Charity",
            "PUBLIC_BASE_URL": BASE,
            "INVOLVE_INSTANCE_PATH": str(workdir),
            "CONVERSATIONS_DIR": str(workdir),
            "REDIS_URL": "redis://127.0.0.1:1/0",
            "QUIET_HOURS": "",
        }
    )
    if which == "floor":
        from bench import floor_app

        return floor_app.app
    import webhooks as involve_webhooks

    return involve_webhooks.create_app()


def _call(app: Any, prepared: Any) -> None:
    status: list[str] = []

    def start_response(line: str, _headers: Any, _exc: Any = None) -> None:
        status.append(line)

    body = app(_environ(prepared), start_response)
    try:
        b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    if not status[0].startswith("200"):
        raise RuntimeError(f"HTTP {status[0]}")


def _copy_database(source: str, workdir: Path) -> str:
    """A copy of a seeded database, to measure on."""
    if source.startswith("sqlite"):
        path = Path(source.split(":///", 1)[1])
        target = workdir / f"copy-{uuid.uuid4().hex[:8]}.sqlite3"
        shutil.copy(path, target)
        return f"sqlite:///{target}"
    url = make_url(source)
    name = f"involve_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{url.database}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess")
    parser.add_argument("app", choices=("involve", "floor"))
    parser.add_argument("backend", choices=("sqlite", "postgresql"))
    parser.add_argument("requests", type=int, nargs="?", default=2000)
    parser.add_argument(
        "--profile", help="write a pyinstrument profile of the measured part (pip install it)"
    )
    parser.add_argument("--seed-only", help="seed into this folder and stop")
    parser.add_argument("--from", dest="source", help="measure a copy of a seeded folder")
    args = parser.parse_args(argv)

    with ExitStack() as stack:
        if args.seed_only:
            workdir = Path(args.seed_only)
            workdir.mkdir(parents=True, exist_ok=True)
            url = stack.enter_context(_fresh(args.backend, workdir))
            phones = webhooks.seed(url, workdir)
            # Kept past the fresh database's drop: the original of every `--from` copy.
            kept = _copy_database(url, workdir)
            (workdir / "url").write_text(kept)
            (workdir / "phones").write_text("\n".join(phones))
            print(kept)
            return 0
        workdir = Path(tempfile.mkdtemp(prefix="involve-inprocess-"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        if args.source:
            source = Path(args.source)
            url = _copy_database((source / "url").read_text(), workdir)
            shutil.copy(source / "bench.yaml", workdir / "bench.yaml")
            phones = (source / "phones").read_text().split("\n")
            if url.startswith("postgresql"):
                stack.callback(_drop, url)
        else:
            url = stack.enter_context(_fresh(args.backend, workdir))
            phones = webhooks.seed(url, workdir)
        return _measure(args, url, workdir, phones)


def _fresh(backend: str, workdir: Path) -> Any:
    pg = webhooks.postgres_url() if backend == "postgresql" else None
    return webhooks.fresh_database(backend, pg, workdir)


def _drop(url: str) -> None:
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    admin.dispose()


def _callgrind(state: str) -> None:
    """Under `valgrind --tool=callgrind --instr-atstart=no`, count the measured part only."""
    if os.environ.get("INPROCESS_CALLGRIND"):
        subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], check=True)


def _measure(args: argparse.Namespace, url: str, workdir: Path, phones: list[str]) -> int:
    app = _app(args.app, url, workdir)
    plan = _requests(phones)
    for prepared in plan[:WARM_UP]:
        _call(app, prepared)
    measured = plan[WARM_UP : WARM_UP + args.requests]
    profiler = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=float(os.environ.get("PROFILE_INTERVAL", "0.001")))
        profiler.start()
    _callgrind("on")
    cpu, wall = time.process_time(), time.perf_counter()
    for prepared in measured:
        _call(app, prepared)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    _callgrind("off")
    if profiler is not None:
        profiler.stop()
        Path(args.profile).write_text(profiler.output_html())
        print(
            profiler.output_text(
                unicode=False, color=False, show_all=os.environ.get("PROFILE_ALL") == "1"
            )
        )
    n = len(measured)
    print(
        f"{args.app}, {args.backend}: {n} requests, {cpu / n * 1000:.3f} ms CPU"
        f" and {wall / n * 1000:.3f} ms wall each"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
