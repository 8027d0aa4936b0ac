"""Message templates: Jinja2's sandbox, strict about names nobody defined, and bounded.

Staff write these, participants read them; a typo in a name must fail at lint or preview time,
not print an empty gap in a text to six hundred people.

Staff can also write a template that never ends (loops in loops), that builds a gigabyte
(`'x' * 10**9`, `'x'.replace('', 'y' * 99999)`, `'{:>{w}}'.format(w=10**9)`), or that changes
the data the next person's message is built from (`summary.setdefault(...)`). Rather than
refuse a list of known tricks, every route a template has to build a value is bounded:

- calls: only what is listed here may be called (the str methods a message could use, reading
  a mapping, the template's own macros, `range`, `dict`, `namespace`), each with the size of
  what it will build worked out from its arguments BEFORE it runs; anything else is refused;
- filters: only the listed ones exist, each sized the same way before it runs;
- operators (`+ - * / // % **` and `~`): sized before they run, integers included;
- `str.format` and `%`: every field's width and precision, resolved, counted before it is made;
- every value built is charged to the render's allowance (MAX_BUILT characters in all), and
  no single value may pass MAX_VALUE: memory stays small and time stays short, because no
  one step can be big and there can only be so many of them;
- the clock is looked at every few steps (each loop step, call, attribute, operator), so the
  time limit is a hard one: no single step runs long enough to miss it by much.

Each render gets its own frozen copy of the context (dicts and lists become read-only views),
in an immutable sandbox that refuses `append`, `update`, `setdefault` and the like. A broken
limit is a `TemplateProblem` saying what went wrong; never a crash, never a hung process.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache, update_wrapper
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
from jinja2.runtime import BlockReference, Context, LoopContext, Macro
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedFormatter,
    SecurityError,
    safe_range,
)
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

# A text message is at most 1,600 characters at Twilio; ten thousand is room for any spoken
# prompt or preview and far below anything that hurts.
MAX_OUTPUT = 10_000
# Any one value a template builds (a string, a list) and any number it passes to a call.
MAX_VALUE = 100_000
# Everything one render builds, added up: ten of the largest values. A real message builds a
# few hundred characters.
MAX_BUILT = 10 * MAX_VALUE
# A template's own text: prompts and messages are a few hundred characters.
MAX_SOURCE = 20_000
# Seconds one render may take. A normal message renders in microseconds.
TIME_LIMIT = 1.0
# Bits an integer may have: 2**4096 is already a 1,234-digit number.
MAX_POWER_BITS = 4096
# How many steps between looking at the clock. Every step is small (nothing above may build
# more than MAX_VALUE at once), so a few dozen of them take well under a millisecond.
CLOCK_EVERY = 32
# Lists nested in lists share their parts, so `[l, l]` thirty times over is a small object
# whose text is a gigabyte; turning it into text is one uninterruptible C call. So any value
# about to be used is measured first, visiting at most this many parts.
MAX_PARTS = 10_000


class TemplateProblem(ValueError):
    """A template cannot be compiled or rendered; `line` is 1-based where known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message if line is None else f"line {line}: {message}")
        self.line = line
        self.problem = message


class _Budget:
    """One render's allowance of time and of characters built; per thread, as renders run in
    web and worker threads."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds
        self.steps = 0
        self.built = 0

    def tick(self) -> None:
        self.steps += 1
        if self.steps % CLOCK_EVERY == 0 and time.monotonic() > self.deadline:
            raise TemplateProblem(
                f"the template took too long (over {TIME_LIMIT:g} s): look for loops inside loops"
            )

    def charge(self, size: int) -> None:
        self.built += size
        if self.built > MAX_BUILT:
            raise TemplateProblem(
                f"the template builds too much (over {MAX_BUILT:,} characters in all)"
            )


_current = threading.local()


def _tick() -> None:
    budget: _Budget | None = getattr(_current, "budget", None)
    if budget is not None:
        budget.tick()


def _refuse(what: str = "that would make too long a value") -> None:
    raise TemplateProblem(what)


def _build(size: int) -> None:
    """About to build a value of (at most) `size` characters: refused if that is too big for
    one value or for what this render may build in all."""
    if size > MAX_VALUE:
        _refuse()
    budget: _Budget | None = getattr(_current, "budget", None)
    if budget is not None:
        budget.charge(size)


def _size(value: Any) -> int:
    """About how many characters `value` stands for as text, measured without making that
    text: refused when it is over MAX_VALUE or has more than MAX_PARTS parts."""
    if isinstance(value, str):
        if len(value) > MAX_VALUE:
            _refuse()
        return len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        if value.bit_length() > MAX_POWER_BITS:
            _refuse(f"a number of over {MAX_POWER_BITS} bits is too large to use")
        return value.bit_length() * 3 // 10 + 2
    if isinstance(value, float):
        return 330  # the widest float %f prints (1e308) has 309 digits
    if not isinstance(value, list | tuple | set | frozenset | Mapping):
        return 16
    total, seen, stack = 0, 0, [value]
    while stack:
        item = stack.pop()
        seen += 1
        if seen > MAX_PARTS:
            _refuse("that value is too large to use")
        if isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
            total += 4
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
            total += 4
        else:
            total += _size(item) + 2
        if total > MAX_VALUE:
            _refuse("that value is too large to use")
    return total


def _sizes(values: Iterable[Any]) -> int:
    return sum(_size(value) for value in values)


def _whole(value: Any, what: str) -> int:
    """A count or width argument: a whole number no bigger than MAX_VALUE."""
    if isinstance(value, bool) or not isinstance(value, int):
        return 0  # not a number: the call itself says what is wrong
    if abs(value) > MAX_VALUE:
        _refuse(f"the number {value} is too large to use as {what}")
    return abs(value)


# --- calls ---------------------------------------------------------------------------------

# str methods whose result is no longer than about three times their string (upper() of
# "ß" is "SS"), plus their arguments.
_STR_SMALL = frozenset(
    {
        "capitalize", "casefold", "count", "endswith", "find", "index", "isalnum", "isalpha",
        "isdecimal", "isdigit", "islower", "isnumeric", "isspace", "istitle", "isupper",
        "lower", "lstrip", "partition", "removeprefix", "removesuffix", "rfind", "rindex",
        "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip",
        "swapcase", "title", "upper",
    }
)  # fmt: skip
_MAPPING_READS = frozenset({"get", "keys", "values", "items"})
_SEQUENCE_READS = frozenset({"count", "index"})


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], at: int, name: str, default: Any) -> Any:
    if len(args) > at:
        return args[at]
    return kwargs.get(name, default)


def _str_method_size(text: str, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    given = _sizes((*args, *kwargs.values()))
    if name in _STR_SMALL:
        return 3 * len(text) + given
    if name in ("center", "ljust", "rjust", "zfill"):
        return max(len(text), _whole(_arg(args, kwargs, 0, "width", 0), "a width")) + given
    if name == "expandtabs":
        tab = _whole(_arg(args, kwargs, 0, "tabsize", 8), "a tab size")
        return len(text) + text.count("\t") * tab
    if name == "replace":
        old, new = _arg(args, kwargs, 0, "old", ""), _arg(args, kwargs, 1, "new", "")
        if not (isinstance(old, str) and isinstance(new, str)):
            return given
        times = text.count(old) if old else len(text) + 1
        limit = _arg(args, kwargs, 2, "count", -1)
        if isinstance(limit, int) and limit >= 0:
            times = min(times, limit)
        return len(text) + times * len(new)
    if name == "join":
        items = _arg(args, kwargs, 0, "iterable", ())
        count = len(items) if isinstance(items, list | tuple | str | Mapping) else MAX_VALUE
        return given + len(text) * max(count - 1, 0)
    _refuse(f"calling str.{name}() is not allowed in a template")
    return 0


def _call_size(obj: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    """What calling `obj` will build, worked out before it runs; refused if it is not one of
    the things a template may call."""
    if isinstance(obj, Undefined) or getattr(obj, "_involve_bounded", False):
        return 0  # an undefined name says so itself; str.format sizes itself, field by field
    if isinstance(obj, Macro | BlockReference | LoopContext) or obj in (safe_range, Namespace):
        return 0  # the template's own code, each step of it bounded, or a lazy range
    if obj is dict:
        return _sizes(kwargs.values()) + 4 * len(kwargs)
    owner, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
    if isinstance(owner, str):
        return _str_method_size(owner, name, args, kwargs)
    if isinstance(owner, Mapping) and name in _MAPPING_READS:
        return _sizes((*args, *kwargs.values()))
    if isinstance(owner, list | tuple) and name in _SEQUENCE_READS:
        return 0
    if isinstance(owner, LoopContext) and name in ("cycle", "changed"):
        return 0
    _refuse(f"calling {name or type(obj).__name__}() is not allowed in a template")
    return 0


# --- printf-style % and str.format -----------------------------------------------------------

_PRINTF = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[-#0 +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d*))?[hlL]?(?P<kind>.)",
    re.DOTALL,
)


def _printf_size(form: str, values: Any) -> int:
    """How long `form % values` will be, at most, from the widths and precisions it asks for
    (`%*d` takes its width from the values) and the values themselves."""
    positional = list(values) if isinstance(values, tuple) else [values]
    size, index = len(form), 0

    def take() -> Any:
        nonlocal index
        index += 1
        return positional[index - 1] if index <= len(positional) else 0

    for field in _PRINTF.finditer(form):
        if field["kind"] == "%":
            continue
        width = take() if field["width"] == "*" else int(field["width"] or 0)
        precision = take() if field["precision"] == "*" else int(field["precision"] or 0)
        size += _whole(width, "a width") + _whole(precision, "a precision")
        if field["key"] is not None and isinstance(values, Mapping):
            size += _size(values.get(field["key"]))
        else:
            size += _size(take())
        if size > MAX_VALUE:
            _refuse("a format's widths or precisions are too large")
    return size


_SPEC_NUMBERS = re.compile(r"\d+")


class _BoundedFormatter(SandboxedFormatter):
    """str.format's own formatter, with every field's resolved width and precision (nested
    ones like `{:>{w}}` included) and the running length counted before the field is made."""

    def __init__(self, env: Environment) -> None:
        super().__init__(env)
        self.length = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        _tick()
        widest = max((int(n) for n in _SPEC_NUMBERS.findall(format_spec)[:4]), default=0)
        size = _whole(widest, "a width or precision") + _size(value)
        self.length += size
        if self.length > MAX_VALUE:
            _refuse("a format's widths or precisions are too large")
        _build(size)
        return super().format_field(value, format_spec)


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


def _binop_size(operator: str, left: Any, right: Any) -> int:
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right))
    if numbers:
        if isinstance(left, int) and isinstance(right, int):
            if operator == "**" and right > 0:
                if max(abs(left).bit_length(), 1) * right > MAX_POWER_BITS:
                    _refuse(f"{left} ** {right} is too large a number")
            elif operator == "*" and left.bit_length() + right.bit_length() > MAX_POWER_BITS:
                _refuse("that product is too large a number")
        return 0
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | bytes | list | tuple) and isinstance(times, int):
                size = _size(seq) * max(times, 0)
                if size > MAX_VALUE:
                    _refuse("that repetition would make too long a value")
                return size
    if operator == "%" and isinstance(left, str):
        return _printf_size(left, right)
    return _size(left) + _size(right)


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

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
        _build(_sizes(parts))
        return "".join(str(part) for part in parts)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        _build(_binop_size(operator, left, right))
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        _build(_call_size(__obj, args, kwargs))
        result = super().call(__context, __obj, *args, **kwargs)
        _size(result)  # what came back is measured too (a list from a lazy range)
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` and `str.format_map` through a formatter that sizes each field."""
        if super().wrap_str_format(value) is None:
            return None
        text: str = value.__self__
        if isinstance(text, Markup):
            _refuse("formatting marked-up text is not allowed in a template")
        is_map = value.__name__ == "format_map"
        env = self

        def bounded_format(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                args, kwargs = (), args[0]
            return str(_BoundedFormatter(env).vformat(text, args, kwargs))

        wrapped = update_wrapper(bounded_format, value)
        wrapped._involve_bounded = True  # type: ignore[attr-defined]
        return wrapped


# --- filters -------------------------------------------------------------------------------

FilterSize = Callable[[Any, tuple[Any, ...], Mapping[str, Any]], int]


def _linear(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    return 3 * _size(value) + _sizes((*args, *kwargs.values()))


def _text_of(value: Any) -> str:
    _size(value)  # measured before it is made text
    return value if isinstance(value, str) else str(value)


def _replace_size(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    return _str_method_size(_text_of(value), "replace", args, kwargs)


def _center_size(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    width = _whole(_arg(args, kwargs, 0, "width", 80), "a width")
    return max(_size(value), width)


def _indent_size(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    text = _text_of(value)
    width = _arg(args, kwargs, 0, "width", 4)
    each = len(width) if isinstance(width, str) else _whole(width, "a width")
    return len(text) + (text.count("\n") + 1) * each


def _wordwrap_size(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    text = _text_of(value)
    width = max(_whole(_arg(args, kwargs, 0, "width", 79), "a width"), 1)
    between = _arg(args, kwargs, 2, "wrapstring", None)
    joint = len(between) if isinstance(between, str) else 1
    return len(text) + (len(text) // width + text.count("\n") + 1) * joint


def _truncate_size(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    _whole(_arg(args, kwargs, 0, "length", 255), "a length")
    return _size(value) + _sizes((*args, *kwargs.values()))


def _join_size(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    between = _arg(args, kwargs, 0, "d", "")
    count = len(value) if isinstance(value, list | tuple | str | Mapping) else MAX_VALUE
    joint = len(between) if isinstance(between, str) else 16
    return _size(value) + joint * max(count - 1, 0)


def _format_size(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    return _printf_size(_text_of(value), MappingProxyType(dict(kwargs)) if kwargs else args)


def _batch_size(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    count = _whole(_arg(args, kwargs, 0, "linecount", 1), "a batch size")
    return _size(value) + 4 * count


def _slice_size(value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> int:
    count = _whole(_arg(args, kwargs, 0, "slices", 1), "a number of slices")
    return _size(value) + 4 * count


# The filters a template may use, each with what it builds worked out before it runs. Jinja's
# others (urlize, xmlattr, tojson, pprint, escaping: nothing a text message needs) are absent.
_LINEAR_FILTERS = frozenset(
    {
        "abs", "attr", "capitalize", "count", "d", "default", "dictsort",
        "filesizeformat", "first", "float", "groupby", "int", "items", "last", "length",
        "list", "lower", "map", "max", "min", "random", "reject", "rejectattr",
        "reverse", "round", "select", "selectattr", "sort", "string", "striptags",
        "sum", "title", "trim", "unique", "upper", "wordcount",
    }
)  # fmt: skip
_FILTER_SIZES: dict[str, FilterSize] = {
    **dict.fromkeys(_LINEAR_FILTERS, _linear),
    "replace": _replace_size,
    "center": _center_size,
    "indent": _indent_size,
    "wordwrap": _wordwrap_size,
    "truncate": _truncate_size,
    "join": _join_size,
    "format": _format_size,
    "batch": _batch_size,
    "slice": _slice_size,
}


def _bounded_filter(function: Callable[..., Any], size_of: FilterSize) -> Callable[..., Any]:
    """Filters run outside `call`: sized before they run, measured after."""

    def bounded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        passed = 0
        while passed < len(args) and isinstance(args[passed], Context | Environment | EvalContext):
            passed += 1
        value, rest = (args[passed], args[passed + 1 :]) if len(args) > passed else (None, ())
        if not isinstance(value, str | list | tuple | Mapping | int | float | None):
            # A lazy range or generator: made a tuple here, a step at a time, so that its
            # size is known before the filter runs.
            if isinstance(value, range) and len(value) > MAX_PARTS:
                _refuse("that value is too large to use")
            value = tuple(_BoundedEnvironment.bounded_iter(value))
            args = (*args[:passed], value, *rest)
        _build(size_of(value, rest, kwargs))
        result = function(*args, **kwargs)
        if isinstance(result, str | list | tuple | Mapping):
            _size(result)
        return result

    # Jinja passes the context, environment or eval context according to these markers.
    if hasattr(function, "jinja_pass_arg"):
        bounded.jinja_pass_arg = function.jinja_pass_arg  # type: ignore[attr-defined]
    return bounded


def _finalize(value: Any) -> Any:
    """What `{{ ... }}` prints is measured before it becomes text."""
    _size(value)
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
# The guard's own helpers are called like any function the template calls.
_BoundedEnvironment.bounded_iter._involve_bounded = True  # type: ignore[attr-defined]
_BoundedEnvironment.bounded_concat._involve_bounded = True  # type: ignore[attr-defined]
_env.filters = {
    name: _bounded_filter(_env.filters[name], size_of) for name, size_of in _FILTER_SIZES.items()
}
# What a template may call by name. lipsum() builds its text in one uninterruptible call,
# cycler and joiner are for web pages: not here.
_env.globals = {"range": safe_range, "dict": dict, "namespace": Namespace}


def _check_length(source: str) -> None:
    if len(source) > MAX_SOURCE:
        raise TemplateProblem(f"the template is too long (over {MAX_SOURCE:,} characters)")


def check(source: str, allowed_names: Iterable[str]) -> None:
    """Raise TemplateProblem for a syntax error or a name outside `allowed_names`."""
    _check_length(source)
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
    _check_length(source)
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
