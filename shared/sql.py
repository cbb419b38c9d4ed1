"""SQL with named parameters: ``:name`` in the text, asyncpg's ``$1``, ``$2``, … when run.

A statement assembled from fragments (an outbox insert, an inbox claim, a SET list of the
columns that changed) names its parameters instead of numbering them, so no fragment needs an
offset and no caller counts. ``::`` casts are left alone (``:event_id::uuid`` is the parameter
``event_id`` cast to uuid), as is a colon after a letter or digit (``'12:30'``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.db import Connection

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Statement:
    """A statement as asyncpg takes it, and the names of its parameters in ``$n`` order."""

    text: str
    names: tuple[str, ...]

    def arguments(self, values: Mapping[str, object]) -> list[object]:
        """The values in parameter order; every parameter needs one and every value a use."""
        missing = [name for name in self.names if name not in values]
        unused = sorted(set(values) - set(self.names))
        if missing or unused:
            raise ValueError(f"parameters missing: {missing}; values unused: {unused}")
        return [values[name] for name in self.names]


@functools.lru_cache(maxsize=1024)
def compiled(text: str) -> Statement:
    """``text`` with each ``:name`` replaced by its ``$n`` (the same name, the same number)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match[1]
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return Statement(_NAMED.sub(number, text), tuple(names))


def literals(values: Iterable[str]) -> str:
    """``'a', 'b'`` (sorted, quotes doubled) for an ``IN (…)`` list written into the SQL: a
    generic plan (``shared.db``) can use a partial index only for a condition it can read."""
    return ", ".join("'" + value.replace("'", "''") + "'" for value in sorted(values))


def rows_from(columns: Mapping[str, str], alias: str) -> str:
    """A FROM item ``alias`` with one row per element of the array parameters named after
    ``columns`` (name → PostgreSQL type), in their order (column ``n``, from 1): how a
    multi-row statement takes its rows, one array per column (see :func:`arrays`)."""
    parameters = ", ".join(f":{name}::{kind}[]" for name, kind in columns.items())
    return f"unnest({parameters}) WITH ORDINALITY AS {alias}({', '.join(columns)}, n)"


def arrays(rows: Iterable[Mapping[str, object]], columns: Iterable[str]) -> dict[str, list[object]]:
    """The parameters of :func:`rows_from`: each column's values, row by row."""
    names = list(columns)
    values: dict[str, list[object]] = {name: [] for name in names}
    for row in rows:
        for name in names:
            values[name].append(row[name])
    return values


async def execute(conn: Connection | asyncpg.Pool, text: str, **values: object) -> str:
    statement = compiled(text)
    status: str = await conn.execute(statement.text, *statement.arguments(values))
    return status


async def fetch(conn: Connection | asyncpg.Pool, text: str, **values: object) -> list[Any]:
    statement = compiled(text)
    return list(await conn.fetch(statement.text, *statement.arguments(values)))


async def fetchrow(conn: Connection | asyncpg.Pool, text: str, **values: object) -> Any:
    statement = compiled(text)
    return await conn.fetchrow(statement.text, *statement.arguments(values))


async def fetchval(conn: Connection | asyncpg.Pool, text: str, **values: object) -> Any:
    statement = compiled(text)
    return await conn.fetchval(statement.text, *statement.arguments(values))
