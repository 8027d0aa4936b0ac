"""The one error a staff verb raises: a refusal with an HTTP-like status and a one-line message.

The admin API answers it as JSON with that status, the CLI prints the message and exits 1, and
the console will show it beside the form. It is a leaf module so that the core modules
(campaigns, feedback, ...) and the services can all raise it without importing each other.
"""

from __future__ import annotations

from typing import Any


class Refused(Exception):
    """Staff asked for something that cannot be done; `message` says what to change.

    `status` follows HTTP (400 bad input, 404 not found, 409 not possible in this state, ...);
    `extra` holds fields the API adds to its JSON answer (such as `retry_after`).
    """

    def __init__(self, message: str, status: int = 400, **extra: Any):
        super().__init__(message)
        self.message, self.status, self.extra = message, status, extra

    def __str__(self) -> str:
        return self.message
