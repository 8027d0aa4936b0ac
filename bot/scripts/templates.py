"""Message templates: Jinja2's sandbox, strict about names nobody defined, and bounded.

Staff write these, participants read them; a typo in a name must fail at lint or preview time,
not print an empty gap in a text to six hundred people.

Staff can also write a template that never ends (loops in loops), that builds a gigabyte
(`'x' * 10**9`, `9 ** 9 ** 9`), or that changes the data the next person's message is built
from (`summary.setdefault(...)`). So every render:

- gets its own frozen copy of the context (dicts and lists become read-only views), in an
  immutable sandbox that refuses `append`, `update`, `setdefault` and the like;
- runs under a time limit (checked on every loop step, call and attribute access) and an
  output limit, and refuses operators and calls whose result would be huge before they run;
- fails with `TemplateProblem` saying what went wrong; never a crash, never a hung process.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from jinja2 import (
    Environment,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateSyntaxError,
    Undefined,
    UndefinedError,
    meta,
    nodes,
)
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.visitor import NodeTransformer

# A text message is at most 1,600 characters at Twilio; ten thousand is room for any spoken
# prompt or preview and far below anything that hurts.
MAX_OUTPUT = 10_000
# Any one value a template builds (a string, a list) and any number it passes to a call.
MAX_VALUE = 100_000
# Seconds one render may take. A normal message renders in microseconds.
TIME_LIMIT = 1.0
# Bits an integer power may produce: 2**4096 is already a 1,234-digit number.
MAX_POWER_BITS = 4096
# How many loop steps between looking at the clock (the clock is the slow part).
CLOCK_EVERY = 256
# A width or precision in a format string (`%1000000000d`, `{:>1000000000}`).
_HUGE_FORMAT_WIDTH = re.compile(r"\d{6,}")


class TemplateProblem(ValueError):
    """A template cannot be compiled or rendered; `line` is 1-based where known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message if line is None else f"line {line}: {message}")
        self.line = line
        self.problem = message


class _Budget:
    """One render's allowance of time; per thread, as renders run in web and worker threads."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds
        self.steps = 0

    def tick(self) -> None:
        self.steps += 1
        if self.steps % CLOCK_EVERY == 0 and time.monotonic() > self.deadline:
            raise TemplateProblem(
                f"the template took too long (over {TIME_LIMIT:g} s): look for loops inside loops"
            )


_current = threading.local()


def _tick() -> None:
    budget: _Budget | None = getattr(_current, "budget", None)
    if budget is not None:
        budget.tick()


def _refuse(what: str = "that would make too long a value") -> None:
    raise TemplateProblem(what)


def _too_big(value: Any) -> bool:
    return isinstance(value, str | bytes | list | tuple) and len(value) > MAX_VALUE


# Lists nested in lists share their parts, so `[l, l]` thirty times over is a small object
# whose text is a gigabyte; turning it into text is one uninterruptible C call. So any value
# about to become text is measured first, visiting at most this many parts.
MAX_PARTS = 10_000


def _check_value(value: Any) -> None:
    if isinstance(value, str):
        if len(value) > MAX_VALUE:
            _refuse()
        return
    if not isinstance(value, list | tuple | set | frozenset | Mapping):
        return
    seen, stack = 0, [value]
    while stack:
        item = stack.pop()
        seen += 1
        if seen > MAX_PARTS:
            _refuse("that value is too large to use")
        if isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif isinstance(item, str) and len(item) > MAX_VALUE:
            _refuse()


# str methods and filters whose number argument is the size of what they build.
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_WIDTH_FILTERS = frozenset({"center", "indent", "truncate", "wordwrap", "format"})


def _check_width(args: Iterable[Any]) -> None:
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_VALUE:
            _refuse(f"the number {arg} is too large to use here")
        if isinstance(arg, str) and _HUGE_FORMAT_WIDTH.search(arg):
            _refuse("a format width or precision is too large")


class _Guard(NodeTransformer):
    """Routes every loop and every `~` through the environment's bounded helpers."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        # Even a loop that calls nothing and prints nothing (`{% for a in s %}{% for b in s
        # %}`) then meets the clock at every step.
        node.iter = nodes.Call(
            nodes.EnvironmentAttribute("bounded_iter"), [node.iter], [], None, None
        )
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(
            nodes.EnvironmentAttribute("bounded_concat"),
            [nodes.Tuple(node.nodes, "load")],
            [],
            None,
            None,
        )


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return _Guard().visit(super()._parse(source, name, filename))

    @staticmethod
    def bounded_iter(iterable: Iterable[Any]) -> Iterator[Any]:
        for item in iterable:
            _tick()
            yield item

    @staticmethod
    def bounded_concat(parts: tuple[Any, ...]) -> str:
        _tick()
        for part in parts:
            _check_value(part)
        result = "".join(str(part) for part in parts)
        if len(result) > MAX_VALUE:
            _refuse()
        return result

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if (
            operator == "**"
            and isinstance(left, int)
            and isinstance(right, int)
            and right > 0
            and max(abs(left).bit_length(), 1) * right > MAX_POWER_BITS
        ):
            _refuse(f"{left} ** {right} is too large a number")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | bytes | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > MAX_VALUE
                ):
                    _refuse("that repetition would make too long a value")
        if operator == "%" and isinstance(left, str):
            _check_width([left])
            _check_value(right)
        result = super().call_binop(context, operator, left, right)
        if _too_big(result):
            _refuse()
        return result

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        if isinstance(getattr(__obj, "__self__", None), str) and (
            getattr(__obj, "__name__", "") in _WIDTH_METHODS
        ):
            _check_width(args)
        for arg in (*args, *kwargs.values()):
            _check_value(arg)
        result = super().call(__context, __obj, *args, **kwargs)
        if _too_big(result):
            _refuse()
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_width([value.__self__])
        return wrapped


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Filters run outside `call`: the same checks on what goes in and what comes out."""

    def bounded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        given = [a for a in args if not isinstance(a, Context | Environment | EvalContext)]
        if name in _WIDTH_FILTERS:
            _check_width([*given, *kwargs.values()])
        for arg in (*given, *kwargs.values()):
            _check_value(arg)
        result = function(*args, **kwargs)
        if _too_big(result):
            _refuse()
        return result

    # Jinja passes the context, environment or eval context according to these markers.
    if hasattr(function, "jinja_pass_arg"):
        bounded.jinja_pass_arg = function.jinja_pass_arg  # type: ignore[attr-defined]
    return bounded


def _finalize(value: Any) -> Any:
    """What `{{ ... }}` prints is measured before it becomes text."""
    _check_value(value)
    return value


_env = _BoundedEnvironment(
    undefined=StrictUndefined,
    autoescape=False,
    keep_trailing_newline=False,
    trim_blocks=True,
    lstrip_blocks=True,
    finalize=_finalize,
)


def _fallback(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """`{{ answers.colour | default("that one") }}`: the fallback where the value is missing
    or empty. An answer skipped, unreadable or not asked reads as empty text, not as a name
    nobody defined, so empty text takes the fallback too (Jinja's own keeps it)."""
    if isinstance(value, Undefined) or (isinstance(value, str) and not value):
        return default_value
    return default_value if boolean and not value else value


_env.filters["default"] = _env.filters["d"] = _fallback
_env.filters = {name: _bounded_filter(name, f) for name, f in _env.filters.items()}


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


def _frozen(value: Any) -> Any:
    """A read-only copy: what one person's render sees cannot be what the next one sees."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(_frozen(v) for v in value)
    return value


def render(source: str, context: Mapping[str, Any]) -> str:
    if "{" not in source:
        return source.strip()  # most prompts are plain text: no need to run a template
    try:
        template = _compiled(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(exc.message or "syntax error", exc.lineno) from None
    frozen = {k: _frozen(v) for k, v in context.items()}
    previous = getattr(_current, "budget", None)
    _current.budget = _Budget(TIME_LIMIT)
    try:
        size, parts = 0, []
        for part in template.generate(**frozen):
            size += len(part)
            if size > MAX_OUTPUT:
                raise TemplateProblem(f"the message is too long (over {MAX_OUTPUT:,} characters)")
            parts.append(part)
        return "".join(parts).strip()
    except TemplateProblem:
        raise
    except UndefinedError as exc:
        raise TemplateProblem(exc.message or "undefined name") from None
    except SecurityError as exc:
        raise TemplateProblem(f"not allowed: {exc}") from None
    except RecursionError:
        raise TemplateProblem("the template calls itself without end") from None
    except TemplateError as exc:
        raise TemplateProblem(exc.message or "the template cannot be rendered") from None
    except (ArithmeticError, TypeError, ValueError, LookupError, MemoryError) as exc:
        # Staff input, not our bug: say what Python said, e.g. "division by zero".
        raise TemplateProblem(f"cannot render: {exc}") from None
    finally:
        _current.budget = previous


def attributes_of(source: str, name: str) -> list[str]:
    """The attributes a template reads from `name` (`answers.colour`, `answers["colour"]`),
    in order, so a script can be checked for names it could not have yet."""
    try:
        parsed = _env.parse(source)
    except TemplateSyntaxError:
        return []
    found: list[str] = []
    for node in parsed.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == name):
            continue
        if isinstance(node, nodes.Getattr):
            found.append(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            found.append(node.arg.value)
    return list(dict.fromkeys(found))


FALLBACK_FILTERS = ("default", "d")


def unguarded_attributes(source: str, name: str) -> list[str]:
    """The attributes of `name` a template can print with no fallback: not inside
    `| default(...)`, not before an `or`, not under an `if` that tests them. These are the
    ones that read as nothing when the answer is missing."""
    try:
        parsed = _env.parse(source)
    except TemplateSyntaxError:
        return []
    found: list[str] = []

    def attribute(node: nodes.Node) -> str | None:
        if not isinstance(node, nodes.Getattr | nodes.Getitem):
            return None
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == name):
            return None
        if isinstance(node, nodes.Getattr):
            return node.attr
        arg = node.arg
        return arg.value if isinstance(arg, nodes.Const) and isinstance(arg.value, str) else None

    def tested(node: nodes.Node) -> set[str]:
        within = [node, *node.find_all((nodes.Getattr, nodes.Getitem))]
        return {a for n in within if (a := attribute(n))}

    def visit(node: nodes.Node, guarded: frozenset[str] | None) -> None:
        # `guarded`: the attributes with a fallback here; None: every one has.
        here = attribute(node)
        if here is not None:
            if guarded is not None and here not in guarded:
                found.append(here)
            return
        if isinstance(node, nodes.Filter) and node.name in FALLBACK_FILTERS:
            if node.node is not None:
                visit(node.node, None)
            for part in (*node.args, *node.kwargs):
                visit(part, guarded)
            return
        if isinstance(node, nodes.Or):
            visit(node.left, None)
            visit(node.right, guarded)
            return
        if isinstance(node, nodes.If | nodes.CondExpr):
            inside = None if guarded is None else guarded | tested(node.test)
            visit(node.test, None)
            body = node.body if isinstance(node, nodes.If) else [node.expr1]
            rest = (
                [*node.elif_, *node.else_]
                if isinstance(node, nodes.If)
                else [node.expr2]
                if node.expr2 is not None
                else []
            )
            for part in body:
                visit(part, inside)
            for part in rest:
                visit(part, guarded)
            return
        for child in node.iter_child_nodes():
            visit(child, guarded)

    visit(parsed, frozenset())
    return list(dict.fromkeys(found))


class Piped(str):
    """An earlier answer in a prompt: reads as its label, `.value` gives the stored code."""

    value: str

    def __new__(cls, label: str, value: str = "") -> Piped:
        made = super().__new__(cls, label)
        made.value = value
        return made
