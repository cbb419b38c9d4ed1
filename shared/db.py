"""PostgreSQL plumbing: pools bound to a role's schema, and a forward-only SQL migration runner."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

# What a pool hands out and what connect() returns; repositories accept either.
Connection = asyncpg.Connection | PoolConnectionProxy

PLUMBING_MIGRATIONS = Path(__file__).parent / "migrations"


async def _init_connection(conn: Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda value: orjson.dumps(value).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query (UNLISTEN, RESET ALL, …: a round trip per
    acquire). Pool connections never LISTEN, SET, lock advisorily or keep cursors; an open
    transaction is still rolled back by the pool before this runs."""


def _session(schema: str, application_name: str | None) -> dict[str, str]:
    """application_name names the role in pg_stat_activity (who holds which connection).

    Every statement is a prepared one (asyncpg caches them per connection) and the hot ones
    find their rows by key, where a plan made for the parameters is the generic plan again:
    left to choose, PostgreSQL plans many of them afresh on every execution, which cost
    about a sixth of its CPU per payment in ``make bench``. A condition that must meet a
    partial index's predicate is written as a literal, which a generic plan can match."""
    return {
        "search_path": schema,
        "application_name": application_name or f"payments-{schema}",
        "plan_cache_mode": "force_generic_plan",
    }


async def create_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int = 2,
    max_size: int = 10,
    application_name: str | None = None,
) -> asyncpg.Pool:
    """A pool whose connections see ``schema`` first, with JSONB mapped to Python values."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        server_settings=_session(schema, application_name),
    )
    assert pool is not None
    return pool


async def connect(dsn: str, schema: str, application_name: str | None = None) -> asyncpg.Connection:
    """A single connection with the same settings as ``create_pool`` (for LISTEN and tools)."""
    conn: asyncpg.Connection = await asyncpg.connect(
        dsn, server_settings=_session(schema, application_name)
    )
    await _init_connection(conn)
    return conn


def _lock_key(schema: str) -> int:
    digest = hashlib.sha256(f"migrate:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def migrate(
    dsn: str, schema: str, service_migrations: Path, application_name: str | None = None
) -> list[str]:
    """Apply the plumbing migrations, then the service's, each once, in file-name order.

    ``dsn`` is the schema's owner (a role's own user, whose schema provisioning created: see
    :mod:`shared.provision`) or an admin. Several processes may start at once: an advisory lock
    makes them apply one after another, and each file runs in its own transaction with its
    bookkeeping row. Returns the names applied by this call.
    """
    conn = await connect(dsn, schema, application_name)
    try:
        # Lock first: concurrent "CREATE SCHEMA IF NOT EXISTS" can fail with a unique violation.
        # The lock is the session's, so closing the connection releases it on every path.
        await conn.execute("SELECT pg_advisory_lock($1)", _lock_key(schema))
        # An owner without CREATE on the database may not even ask for an existing schema.
        if not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema):
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        return await _apply_pending(conn, _migration_files(service_migrations))
    finally:
        await conn.close()


async def pending(dsn: str, schema: str, service_migrations: Path) -> list[str]:
    """The migrations :func:`migrate` would apply to ``schema`` now (all of them if it has none)."""
    conn = await connect(dsn, schema)
    try:
        applied: set[str] = set()
        if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
            applied = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
    finally:
        await conn.close()
    return [name for name, _ in _migration_files(service_migrations) if name not in applied]


def _migration_files(service_migrations: Path) -> list[tuple[str, Path]]:
    plumbing = [(f"shared/{p.name}", p) for p in sorted(PLUMBING_MIGRATIONS.glob("*.sql"))]
    own = [(f"service/{p.name}", p) for p in sorted(service_migrations.glob("*.sql"))]
    return plumbing + own


async def _apply_pending(conn: asyncpg.Connection, files: list[tuple[str, Path]]) -> list[str]:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    done = {row["name"] for row in await conn.fetch("SELECT name FROM schema_migrations")}
    applied = []
    for name, path in files:
        if name in done:
            continue
        async with conn.transaction():
            await conn.execute(path.read_text())
            await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
        applied.append(name)
    return applied


def record(row: asyncpg.Record | None) -> dict[str, Any] | None:
    """A record as a plain dict (None stays None)."""
    return dict(row) if row is not None else None
