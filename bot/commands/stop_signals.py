"""SIGINT, SIGTERM and SIGHUP for `involve serve`: noted by the handler, acted on by the loop.

A Python signal handler runs between two bytecodes of the main thread, wherever it is; one that
logs, prints or takes a lock can find that lock already held by the code it interrupted, and
wait forever. So the handler here only sets a flag. Python's own C handler writes the signal's
number to a pipe (`signal.set_wakeup_fd`), which wakes the main loop's `wait` at once.
SIGHUP is a stop too: a closed terminal or a lost SSH session must not leave the web app, the
worker and the embedded Redis running without the `serve` that would stop them.
"""

from __future__ import annotations

import os
import select
import signal
from types import FrameType, TracebackType
from typing import Any

# SIGHUP is POSIX's; Windows has only the other two.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class StopSignals:
    def __init__(self) -> None:
        self.received: int | None = None  # the first stop signal, once one came
        self._previous: dict[int, Any] = {}
        self._previous_wakeup = -1
        self._read = self._write = -1

    def _note(self, signum: int, _frame: FrameType | None) -> None:
        # Nothing else here: see the module's note.
        if self.received is None:
            self.received = signum

    def __enter__(self) -> StopSignals:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._previous_wakeup = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._note)
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_wakeup)
        os.close(self._read)
        os.close(self._write)

    @property
    def stopping(self) -> bool:
        return self.received is not None

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds, less if a signal comes; True once a stop was asked."""
        if not self.stopping:
            select.select([self._read], [], [], timeout)
        self._drain()
        return self.stopping

    def _drain(self) -> None:
        try:
            while os.read(self._read, 512):
                pass
        except BlockingIOError:
            pass

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else ""
