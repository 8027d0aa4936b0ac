"""Text from outside, made storable."""

from __future__ import annotations

from typing import Any


def clean_text(value: Any) -> str:
    """Text any database will store: no NUL characters, no unpaired surrogates."""
    return str(value).encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def clean_json(value: Any) -> Any:
    """A parsed JSON document with every string in it (keys too) made storable by
    `clean_text`. Walked without recursion: the document may be as deep as the parser allowed."""
    if isinstance(value, str):
        return clean_text(value)
    if not isinstance(value, dict | list):
        return value
    return _clean_container(value)


def _clean_container(document: Any) -> Any:
    top: Any = {} if isinstance(document, dict) else []
    pending: list[tuple[Any, Any]] = [(document, top)]
    while pending:
        source, target = pending.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in items:
            if isinstance(item, dict | list):
                copy: Any = {} if isinstance(item, dict) else []
                pending.append((item, copy))
                cleaned = copy
            elif isinstance(item, str):
                cleaned = clean_text(item)
            else:
                cleaned = item
            if isinstance(target, dict):
                target[clean_text(key)] = cleaned
            else:
                target.append(cleaned)
    return top
