"""Text from outside, made storable."""

from __future__ import annotations

from typing import Any


def clean_text(value: Any) -> str:
    """Text any database will store: no NUL characters, no unpaired surrogates."""
    return str(value).encode("utf-8", "replace").decode("utf-8").replace("\x00", "")
