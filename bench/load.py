"""A small closed-loop HTTP load generator: N keep-alive connections, each sending its own
prepared requests back to back, in a few processes so the client is not the bottleneck."""

from __future__ import annotations

import http.client
import multiprocessing as mp
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlencode


@dataclass(frozen=True)
class Prepared:
    path: str
    body: bytes
    headers: dict[str, str]


def prepare(path: str, params: dict[str, str], signature: str) -> Prepared:
    body = urlencode(params).encode()
    return Prepared(
        path,
        body,
        {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature},
    )


def _connection_loop(
    port: int, requests: list[Prepared], seconds: float, out: list[float], errors: list[str]
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    deadline = time.perf_counter() + seconds
    for prepared in requests:
        if time.perf_counter() >= deadline:
            break
        started = time.perf_counter()
        try:
            conn.request("POST", prepared.path, body=prepared.body, headers=prepared.headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(f"HTTP {response.status}")
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        except Exception as exc:
            errors.append(repr(exc))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        out.append(time.perf_counter() - started)
    conn.close()


def _process(port: int, batches: list[list[Prepared]], seconds: float, results: mp.Queue) -> None:
    latencies: list[list[float]] = [[] for _ in batches]
    errors: list[str] = []
    threads = [
        threading.Thread(target=_connection_loop, args=(port, batch, seconds, latencies[i], errors))
        for i, batch in enumerate(batches)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put(([x for lat in latencies for x in lat], errors))


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: list[str]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


def run(
    port: int, per_connection: list[list[Prepared]], seconds: float, processes: int = 2
) -> Result:
    """Each inner list is one connection's requests, used in order until time runs out."""
    groups = [per_connection[i::processes] for i in range(processes)]
    results: mp.Queue = mp.get_context("fork").Queue()
    ctx = mp.get_context("fork")
    started = time.perf_counter()
    workers = [
        ctx.Process(target=_process, args=(port, group, seconds, results))
        for group in groups
        if group
    ]
    for w in workers:
        w.start()
    collected = [results.get() for _ in workers]
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    latencies = sorted(x for lat, _ in collected for x in lat)
    errors = [e for _, errs in collected for e in errs]
    if not latencies:
        return Result(0, elapsed, float("nan"), float("nan"), errors)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return Result(len(latencies), min(elapsed, seconds + 0.5), pct(0.50), pct(0.99), errors)
