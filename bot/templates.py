"""Message templates: Jinja2's sandbox, strict about names nobody defined.

Staff write these, participants read them; a typo in a name must fail at lint or preview time,
not print an empty gap in a text to six hundred people.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment, SecurityError

_env = SandboxedEnvironment(
    undefined=StrictUndefined,
    autoescape=False,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
)


class TemplateProblem(ValueError):
    """A template cannot be compiled or rendered; `line` is 1-based where known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message if line is None else f"line {line}: {message}")
        self.line = line
        self.problem = message


def check(source: str, allowed_names: Iterable[str]) -> None:
    """Raise TemplateProblem for a syntax error or a name outside `allowed_names`."""
    try:
        parsed = _env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(exc.message or "syntax error", exc.lineno) from None
    unknown = sorted(meta.find_undeclared_variables(parsed) - set(allowed_names))
    if unknown:
        allowed = ", ".join(sorted(allowed_names)) or "none"
        raise TemplateProblem(f"unknown name {unknown[0]!r} (you can use: {allowed})")


@lru_cache(maxsize=4096)
def _compiled(source: str) -> Template:
    return _env.from_string(source)


def render(source: str, context: Mapping[str, Any]) -> str:
    if "{" not in source:
        return source.strip()  # most prompts are plain text: no need to run a template
    try:
        return _compiled(source).render(**context).strip()
    except TemplateSyntaxError as exc:
        raise TemplateProblem(exc.message or "syntax error", exc.lineno) from None
    except UndefinedError as exc:
        raise TemplateProblem(exc.message or "undefined name") from None
    except SecurityError as exc:
        raise TemplateProblem(f"not allowed: {exc}") from None
