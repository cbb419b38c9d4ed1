"""Retention: old bookkeeping rows go, in small batches; nothing still needed goes with them."""

from __future__ import annotations

import uuid

import asyncpg

from shared import outbox
from shared.retention import Janitor, Retention
from tests.integration.shared.helpers import order_placed


async def enqueue(pool: asyncpg.Pool, count: int) -> list[uuid.UUID]:
    events = [order_placed() for _ in range(count)]
    async with pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(conn, *events)
    return [e.event_id for e in events]


async def age(pool: asyncpg.Pool, table: str, column: str, days: int, where: str) -> None:
    await pool.execute(
        f"UPDATE {table} SET {column} = now() - make_interval(days => $1) WHERE {where}", days
    )


async def test_only_published_outbox_rows_older_than_the_retention_are_purged(
    pool: asyncpg.Pool,
) -> None:
    old, recent, old_unpublished = await enqueue(pool, 3)
    await pool.execute(
        "UPDATE outbox SET published_at = now() WHERE event_id <> $1", old_unpublished
    )
    await age(pool, "outbox", "created_at", 31, f"event_id IN ('{old}', '{old_unpublished}')")

    deleted = await Janitor(pool, Retention(days=30)).purge_all()

    left = {row["event_id"] for row in await pool.fetch("SELECT event_id FROM outbox")}
    assert deleted["outbox"] == 1
    assert left == {recent, old_unpublished}


async def test_inbox_rows_older_than_the_retention_are_purged_in_batches(
    pool: asyncpg.Pool,
) -> None:
    await pool.execute(
        "INSERT INTO inbox (consumer, event_id, processed_at)"
        " SELECT 'c', gen_random_uuid(), now() - interval '40 days' FROM generate_series(1, 25)"
    )
    await pool.execute("INSERT INTO inbox (consumer, event_id) VALUES ('c', gen_random_uuid())")

    deleted = await Janitor(pool, Retention(days=30, batch=10, pause=0)).purge_all()

    assert deleted["inbox"] == 25
    assert await pool.fetchval("SELECT count(*) FROM inbox") == 1
