"""The inbox: a consumer's effect and its record of the event commit together, once."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from shared import inbox
from shared.db import Connection
from tests.integration.shared.helpers import order_placed

CONSUMER = "approval.order-intents"


@pytest.fixture
async def effects(pool: asyncpg.Pool) -> asyncpg.Pool:
    await pool.execute("CREATE TABLE effects (event_id uuid NOT NULL)")
    return pool


async def test_five_concurrent_copies_of_an_event_apply_the_effect_once(
    effects: asyncpg.Pool,
) -> None:
    event = order_placed()

    async def effect(conn: Connection) -> None:
        await conn.execute("INSERT INTO effects (event_id) VALUES ($1)", event.event_id)
        await asyncio.sleep(0.05)  # keep the transaction open while the copies arrive

    ran = await asyncio.gather(
        *(inbox.apply_once(effects, CONSUMER, event, effect) for _ in range(5))
    )
    assert sorted(ran) == [False, False, False, False, True]
    assert await effects.fetchval("SELECT count(*) FROM effects") == 1


async def test_a_failed_effect_rolls_back_its_claim_so_a_retry_applies_it(
    effects: asyncpg.Pool,
) -> None:
    event = order_placed()
    attempts = 0

    async def effect(conn: Connection) -> None:
        nonlocal attempts
        attempts += 1
        await conn.execute("INSERT INTO effects (event_id) VALUES ($1)", event.event_id)
        if attempts == 1:
            raise ConnectionError("the PG timed out")

    with pytest.raises(ConnectionError):
        await inbox.apply_once(effects, CONSUMER, event, effect)
    assert await effects.fetchval("SELECT count(*) FROM inbox") == 0
    assert await effects.fetchval("SELECT count(*) FROM effects") == 0

    assert await inbox.apply_once(effects, CONSUMER, event, effect)
    assert await effects.fetchval("SELECT count(*) FROM effects") == 1
    assert not await inbox.apply_once(effects, CONSUMER, event, effect)
    assert attempts == 2


async def test_each_consumer_claims_an_event_for_itself(pool: asyncpg.Pool) -> None:
    event = order_placed()

    async def nothing(conn: Connection) -> None:
        return None

    assert await inbox.apply_once(pool, "approval.payments", event, nothing)
    assert await inbox.apply_once(pool, "order.payment-results", event, nothing)
    assert not await inbox.apply_once(pool, "order.payment-results", event, nothing)
