"""Two batches of OrderPlaced taking turns on some of the same orders, in opposite orders."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg

from services.checkout.repository import take_order_turn, take_order_turns

# Each batch lists the same orders, the other way round; "m" is held elsewhere at first.
FORWARD = ["order-a", "order-m", "order-z"]
BACKWARD = list(reversed(FORWARD))


async def test_two_batches_taking_the_same_turns_in_opposite_orders_do_not_deadlock(
    database_url: str,
) -> None:
    async with connections(database_url, 3) as (holder, first, second):
        async with holder.transaction():
            await take_order_turn(holder, "order-m")
            one = asyncio.create_task(turns_then_commit(first, FORWARD))
            await waiting_for_a_lock(holder, first)
            other = asyncio.create_task(turns_then_commit(second, BACKWARD))
            await waiting_for_a_lock(holder, second)
        # Unordered, each batch would now hold an end the other waits for once "m" is free.

        done = await asyncio.gather(one, other, return_exceptions=True)

    assert list(done) == [None, None]


async def turns_then_commit(conn: asyncpg.Connection, order_ids: list[str]) -> None:
    async with conn.transaction():
        await take_order_turns(conn, order_ids)


async def waiting_for_a_lock(observer: asyncpg.Connection, waiter: asyncpg.Connection) -> None:
    """Until ``waiter``'s statement waits for a lock (10 s at most)."""
    pid = waiter.get_server_pid()
    for _ in range(1000):
        waiting = await observer.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited for a lock")


@contextlib.asynccontextmanager
async def connections(dsn: str, count: int) -> AsyncIterator[list[asyncpg.Connection]]:
    opened = [await asyncpg.connect(dsn) for _ in range(count)]
    try:
        yield opened
    finally:
        for conn in opened:
            await conn.close()
