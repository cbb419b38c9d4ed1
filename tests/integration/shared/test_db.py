"""shared.db: migrations applied once under concurrency, and the JSONB codec."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from shared import db

SCHEMA = "widgets"
ROOT = Path(__file__).parents[3]


@pytest.fixture
def service_migrations(tmp_path: Path) -> Path:
    (tmp_path / "001_widgets.sql").write_text(
        "CREATE TABLE widgets (id bigserial PRIMARY KEY, name text NOT NULL);"
    )
    (tmp_path / "002_widget_colour.sql").write_text(
        "ALTER TABLE widgets ADD COLUMN colour text;"
        " INSERT INTO widgets (name, colour) VALUES ('seed', 'red');"
    )
    return tmp_path


# The plumbing's migrations first, in file-name order, then the service's own.
ALL_FILES = [
    *(f"shared/{path.name}" for path in sorted(db.PLUMBING_MIGRATIONS.glob("*.sql"))),
    "service/001_widgets.sql",
    "service/002_widget_colour.sql",
]


async def assert_migrated_once(database_url: str, schema: str) -> None:
    conn = await db.connect(database_url, schema)
    try:
        assert await conn.fetchval("SELECT count(*) FROM widgets") == 1
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        )
        assert {t["table_name"] for t in tables} == {
            "outbox",
            "inbox",
            "widgets",
            "schema_migrations",
        }
    finally:
        await conn.close()


@pytest.mark.parametrize("schema", ["widgets_a", "widgets_b", "widgets_c"])
async def test_concurrent_migrations_create_the_schema_and_apply_each_file_once(
    database_url: str, service_migrations: Path, schema: str
) -> None:
    # Each call has its own connection: to PostgreSQL these are separate processes. Several
    # schemas because the race on CREATE SCHEMA IF NOT EXISTS does not show every time.
    results = await asyncio.gather(
        *(db.migrate(database_url, schema, service_migrations) for _ in range(5))
    )
    assert sorted(results, key=len) == [[], [], [], [], ALL_FILES]
    await assert_migrated_once(database_url, schema)


async def test_processes_started_together_migrate_once(
    database_url: str, service_migrations: Path
) -> None:
    script = (
        "import asyncio, sys; from pathlib import Path; from shared.db import migrate;"
        " print(len(asyncio.run(migrate(sys.argv[1], sys.argv[2], Path(sys.argv[3])))))"
    )
    args = [database_url, SCHEMA, str(service_migrations)]
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, *args, stdout=asyncio.subprocess.PIPE, cwd=ROOT
        )
        for _ in range(3)
    ]
    outputs = [(await p.communicate())[0].decode().strip() for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0]
    assert sorted(outputs) == ["0", "0", str(len(ALL_FILES))]
    await assert_migrated_once(database_url, SCHEMA)


async def test_migrating_again_is_a_no_op(database_url: str, service_migrations: Path) -> None:
    assert await db.migrate(database_url, SCHEMA, service_migrations) == ALL_FILES
    assert await db.migrate(database_url, SCHEMA, service_migrations) == []


async def test_a_new_file_is_applied_on_the_next_run(
    database_url: str, service_migrations: Path
) -> None:
    await db.migrate(database_url, SCHEMA, service_migrations)
    (service_migrations / "003_more.sql").write_text("ALTER TABLE widgets ADD COLUMN size int;")
    assert await db.migrate(database_url, SCHEMA, service_migrations) == ["service/003_more.sql"]


async def test_a_failing_migration_leaves_nothing_behind_and_releases_the_lock(
    database_url: str, service_migrations: Path
) -> None:
    (service_migrations / "003_broken.sql").write_text(
        "ALTER TABLE widgets ADD COLUMN size int; SELECT no_such_function();"
    )
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await db.migrate(database_url, SCHEMA, service_migrations)
    (service_migrations / "003_broken.sql").write_text("ALTER TABLE widgets ADD COLUMN size int;")
    applied = await asyncio.wait_for(db.migrate(database_url, SCHEMA, service_migrations), 5)
    assert applied == ["service/003_broken.sql"]


@pytest.fixture
async def pool(database_url: str, service_migrations: Path) -> AsyncIterator[asyncpg.Pool]:
    """A one-connection pool on the migrated schema, as a role gets it."""
    await db.migrate(database_url, SCHEMA, service_migrations)
    created = await db.create_pool(database_url, SCHEMA, min_size=1, max_size=1)
    try:
        yield created
    finally:
        await created.close()


async def test_jsonb_values_round_trip_as_python_values(pool: asyncpg.Pool) -> None:
    await pool.execute("CREATE TABLE documents (id serial, body jsonb)")
    values: list[object] = [{"a": [1, None, "é"], "b": {"c": True}}, [1, 2], "text", 2.5]
    for value in values:
        await pool.execute("INSERT INTO documents (body) VALUES ($1)", value)
    rows = await pool.fetch("SELECT body FROM documents ORDER BY id")
    assert [row["body"] for row in rows] == values
    assert await pool.fetchval(
        "SELECT $1::jsonb ->> 'at'", {"at": datetime(2026, 1, 1, tzinfo=UTC)}
    ) == ("2026-01-01T00:00:00+00:00")
    assert await pool.fetchval("SELECT jsonb_typeof(body) FROM documents WHERE id = 3") == "string"


async def test_pool_statements_run_on_their_generic_plan_not_one_planned_per_execution(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        for n in range(8):
            await conn.fetchval("SELECT count(*) FROM widgets WHERE id = $1", n)
        plans = await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE 'SELECT count(*) FROM widgets%'"
        )
    assert plans is not None
    assert (plans["generic_plans"], plans["custom_plans"]) == (8, 0)
