"""Statements the one writer runs for every message: built and typed by SQLAlchemy, compiled
once per database, run straight on the driver's cursor.

What this skips is SQLAlchemy's per-execution bookkeeping (an execution context, parameter
sets, result metadata), which on the webhook path cost more than the database did
(`./dev bench webhooks`, README "Benchmarks"). What it keeps: the SQL is SQLAlchemy's for
each dialect; every value goes through its column type's own bind and result processors, so a
time or a JSON state is stored and read exactly as the ORM stores and reads it; a driver error
becomes SQLAlchemy's (`DBAPIError`, parameters hidden, a lost connection invalidated), so
`is_transient` and the pool see it as they see any other.

Only for statements whose every value is given by the caller: Python-side column defaults are
not run here (a missing value fails loudly instead of being stored as NULL).
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable

Processor = Callable[[Any], Any] | None
# A row a prepared statement returns: a named tuple of its columns' processed values (its class
# is made per statement, so the type checker knows it only as this).
Record = Any


_REQUIRED = object()  # no value of its own: the caller must give one

# psycopg takes `%(name)s` (SQLAlchemy's style for it) or `%s`; named, it maps the caller's
# dict onto positions again at every execution. Compiled once here into `%s` and a tuple.
# A literal % is written %% (so a literal "%(x)s" is "%%(x)s"): read pair by pair, it is kept.
_NAMED = re.compile(r"%%|%\(([^)]+)\)s")
_CURSOR_KEY = "involve.cursor"


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # bind names, in the order a positional driver wants them
    positional: bool
    # Per bind, in `names`' order: its type's processor, and the value the statement carries
    # itself (a LIMIT, a literal, None included) or _REQUIRED.
    binds: tuple[tuple[str, Processor, Any], ...]
    row: Any  # a namedtuple class for result rows, or None
    results: tuple[Processor, ...]
    processed_results: bool  # some column's values go through a processor
    # `binds` taken apart for `_values`, which runs for every statement of every message:
    # the values are looked up by one C-level `map` over names and defaults, and only the
    # binds with a processor (times, JSON, booleans: a few of a dozen) go through Python.
    defaults: tuple[Any, ...] = ()
    processors: tuple[tuple[int, Callable[[Any], Any]], ...] = ()
    # (position, processor) of the result columns that have one, for `_row`.
    result_processors: tuple[tuple[int, Callable[[Any], Any]], ...] = ()


# A time's bind processor, one per type and kind of database, shared by every statement: a
# message binds its one `now` a dozen times (created, updated, sent, answered...), and each
# bind formatted it again.
_times: dict[tuple[Any, ...], Processor] = {}


def _processor(type_: Any, dialect: Dialect) -> Processor:
    process = type_.dialect_impl(dialect).bind_processor(dialect)
    # A TypeDecorator (UTCDateTime) is a time by what it decorates.
    if process is None or not isinstance(getattr(type_, "impl_instance", type_), DateTime):
        return process
    key = (dialect.name, dialect.driver, type(type_), repr(type_))
    found = _times.get(key)
    if found is None:
        found = _times[key] = _remembering(process)
    return found


def _remembering(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`process`, remembering its last two values (immutable: datetimes) and what it made of
    them: a message's `now`, and the one other time its statements bind (a contact point's
    `verified_at`, a person's `updated_at`), which came between its `now`s and made each of
    them formatted again. Each pair is read and replaced whole, so threads sharing them never
    mix two. None (a time not set: an inbound message's `sent_at`, `claimed_at`,
    `send_after`) is stored as NULL without going through `process` or being remembered."""
    last: list[tuple[Any, Any]] = [(_REQUIRED, None), (_REQUIRED, None)]

    def remembered(value: Any) -> Any:
        if value is None:
            return None
        seen = last[0]
        if seen[0] is value:
            return seen[1]
        before = last[1]
        if before[0] is value:
            return before[1]
        made = process(value)
        last[1] = seen
        last[0] = (value, made)
        return made

    return remembered


class Prepared:
    """One statement. An INSERT or UPDATE sets the columns its values name, so it is compiled
    once per database and set of names, as SQLAlchemy itself would compile it."""

    def __init__(self, statement: Executable):
        self.statement = statement
        self._by_keys = bool(getattr(statement, "is_dml", False))
        self._compiled: dict[tuple[Any, ...], _Compiled] = {}
        # The same, found by the names in the order a caller gives them (each call site gives
        # them in its own order, every time): no sorting per message.
        self._by_order: dict[tuple[Any, ...], _Compiled] = {}

    def _for(self, dialect: Dialect, params: Mapping[str, Any]) -> _Compiled:
        # Per kind of database and driver (not per engine: tests make many engines).
        names = tuple(params) if self._by_keys else None
        found = self._by_order.get((dialect.name, dialect.driver, dialect.paramstyle, names))
        if found is None:
            kind = (dialect.name, dialect.driver, dialect.paramstyle)
            key = (*kind, tuple(sorted(params)) if self._by_keys else None)
            found = self._compiled.get(key)
            if found is None:
                found = self._compiled[key] = self._compile(dialect, key[-1])
            self._by_order[(*kind, names)] = found
        return found

    def _compile(self, dialect: Dialect, keys: tuple[str, ...] | None) -> _Compiled:
        compiled = self.statement.compile(
            dialect=dialect, column_keys=list(keys) if keys is not None else None
        )
        if (
            compiled.post_compile_params
            or compiled.literal_execute_params
            or getattr(compiled, "escaped_bind_names", None)
        ):
            # An IN list or an odd bind name is rewritten per execution by SQLAlchemy itself.
            raise ValueError("a statement SQLAlchemy must rewrite per execution; run it as usual")
        sql, positional = compiled.string, dialect.positional
        if positional:
            names = tuple(compiled.positiontup or ())
        elif dialect.paramstyle == "pyformat":
            # In order, a name used twice twice; a literal %% left as it is.
            names = tuple(m[1] for m in _NAMED.finditer(sql) if m[1] is not None)
            sql, positional = _NAMED.sub(lambda m: m[0] if m[1] is None else "%s", sql), True
        else:
            names = tuple(dict.fromkeys(compiled.bind_names.values()))
        # Columns whose Python-side default SQLAlchemy would run: the caller must give them.
        defaulted = {c.key for c in (*compiled.insert_prefetch, *compiled.update_prefetch)}
        binds = tuple(
            (
                name,
                _processor(compiled.binds[name].type, dialect),
                _REQUIRED
                if compiled.binds[name].required or name in defaulted
                else compiled.binds[name].effective_value,
            )
            for name in names
        )
        columns = list(getattr(self.statement, "exported_columns", ()))
        row = namedtuple("Row", [c.key for c in columns]) if columns else None
        try:
            results = tuple(
                c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
            )
        except TypeError as exc:  # a type whose processor needs the driver's type code
            raise ValueError(f"a column type prepared statements do not read: {exc}") from exc
        return _Compiled(
            sql,
            names,
            positional,
            binds,
            row,
            results,
            any(process is not None for process in results),
            defaults=tuple(default for _name, _process, default in binds),
            processors=tuple(
                (i, process) for i, (_name, process, _d) in enumerate(binds) if process is not None
            ),
            result_processors=tuple(
                (i, process) for i, process in enumerate(results) if process is not None
            ),
        )

    @staticmethod
    def _values(compiled: _Compiled, params: Mapping[str, Any]) -> Any:
        # Every message runs this for each of its statements: no dict merged, and the lookups
        # in one `map` (each name's value, else what the statement carries, else _REQUIRED).
        values = list(map(params.get, compiled.names, compiled.defaults))
        if _REQUIRED in values:  # `in` is true for the very object; found, it is checked
            missing = [n for n, v in zip(compiled.names, values, strict=True) if v is _REQUIRED]
            if missing:
                raise KeyError(f"no value for {', '.join(missing)}")
        for i, process in compiled.processors:
            values[i] = process(values[i])  # None too
        if compiled.positional:
            return tuple(values)
        return dict(zip(compiled.names, values, strict=True))

    def _execute(
        self, connection: Connection, params: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    ) -> tuple[_Compiled, Any]:
        dialect = connection.dialect
        # A dict first: `isinstance(..., Mapping)` is an ABC's check, in Python, each time.
        one_row = type(params) is dict or isinstance(params, Mapping)
        if not one_row and len(params) == 1:
            # One row (a reply, an answer): a plain execute. psycopg's executemany goes through
            # its pipeline mode, which for one row costs more than the row.
            params, one_row = params[0], True
        first = params if one_row else params[0]
        # `_for`'s lookup, here: a Python call costs about as much as the lookup itself, and
        # every statement of every message makes it.
        compiled = self._by_order.get(
            (
                dialect.name,
                dialect.driver,
                dialect.paramstyle,
                tuple(first) if self._by_keys else None,
            )
        )
        if compiled is None:
            compiled = self._for(dialect, first)
        if one_row:
            one, many = self._values(compiled, params), None
        else:
            one, many = None, [self._values(compiled, p) for p in params]
        cursor = _cursor(connection)
        try:
            if many is None:
                cursor.execute(compiled.sql, one)
            else:
                cursor.executemany(compiled.sql, many)
        except dialect.loaded_dbapi.Error as exc:
            _drop_cursor(connection, cursor)
            raise driver_error(connection, exc, compiled.sql, cursor) from exc
        except BaseException as exc:
            # Interrupted mid-statement (a timeout, a signal): the connection's state is unknown.
            _drop_cursor(connection, cursor)
            if not isinstance(exc, Exception):
                connection.invalidate(exc)
            raise
        return compiled, cursor

    def run(
        self, connection: Connection, params: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    ) -> int:
        """Execute (for many rows, a list of them); how many rows it changed."""
        _compiled, cursor = self._execute(connection, params)
        return cursor.rowcount

    def rows(self, connection: Connection, params: Mapping[str, Any]) -> list[Record]:
        """Its rows, each a named tuple of processed values (`row.state` is a dict)."""
        compiled, cursor = self._execute(connection, params)
        return [self._row(compiled, raw) for raw in cursor.fetchall()]

    def first(self, connection: Connection, params: Mapping[str, Any]) -> Record | None:
        compiled, cursor = self._execute(connection, params)
        found = cursor.fetchall()  # all of them: the cursor is free for the next statement
        return self._row(compiled, found[0]) if found else None

    @staticmethod
    def _row(compiled: _Compiled, raw: Sequence[Any]) -> Any:
        # `tuple.__new__`, not the named tuple's `_make` (a Python classmethod that counts
        # the values again): a row has its statement's columns.
        if not compiled.processed_results:
            return _new_row(compiled.row, raw)
        values = list(raw)
        for i, process in compiled.result_processors:  # only the columns that have one
            values[i] = process(values[i])
        return _new_row(compiled.row, values)


_new_row = tuple.__new__


def driver_error(
    connection: Connection, exc: Exception, statement: str, cursor: Any = None
) -> DBAPIError:
    """The driver's error `exc` as SQLAlchemy would raise it (parameters hidden). On a lost
    connection, as SQLAlchemy does: this one is dropped, and the pool's others too (the server
    probably restarted), so a retry opens a fresh one."""
    dialect = connection.dialect
    lost = dialect.is_disconnect(exc, connection.connection.dbapi_connection, cursor)
    if lost:
        connection.invalidate(exc)
        connection.engine.dispose()
    return DBAPIError.instance(
        statement,
        None,
        exc,
        dialect.loaded_dbapi.Error,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=dialect,
    )


def _cursor(connection: Connection) -> Any:
    """The driver connection's one cursor for prepared statements, made once and kept with it
    in the pool (a new cursor per statement cost psycopg more than binding the statement).
    Every statement's rows are fetched before the next runs, so one cursor serves them all;
    the connection a unit of work holds is used by one thread at a time."""
    pooled = connection.connection
    # Known by the pooled connection's own attribute (`driver_connection` is two properties
    # deep, asked for every statement); for the synchronous drivers used here they are one.
    dbapi = pooled.dbapi_connection
    kept = pooled.info.get(_CURSOR_KEY)
    if kept is not None and kept[0] is dbapi:
        return kept[1]
    cursor = pooled.driver_connection.cursor()
    pooled.info[_CURSOR_KEY] = (dbapi, cursor)
    return cursor


def _drop_cursor(connection: Connection, cursor: Any) -> None:
    """After a failed statement: a new cursor next time."""
    try:
        cursor.close()
    finally:
        pooled = connection.connection
        if pooled.info.get(_CURSOR_KEY, (None, None))[1] is cursor:
            del pooled.info[_CURSOR_KEY]
