"""Long outages park nothing: PostgreSQL or RabbitMQ stopped while payments are in flight.

Each test runs a private stack on private servers (``deploy.servers``) that it stops and starts
for real, so the machine's own servers are never touched. The outages in the first two tests are
shortened by shortening what they used to exhaust: a delivery limit of 3 and 5 s of holding per
delivery make a minute of outage many times what once sent a message to a dead-letter queue.
The last test stops PostgreSQL for longer than the old budget itself (100 deliveries, backoff up
to 5 s each: about 8 minutes) with the production settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.servers import PostgresServer, RabbitServer, private_postgres, private_rabbitmq
from tests.e2e import faults
from tests.e2e.buyer import Buyer
from tests.e2e.faults import Expect, FaultStack

pytestmark = pytest.mark.e2e

SHORTENED = {
    "QUEUE_DELIVERY_LIMIT": "3",
    "CONSUMER_HOLD_SECONDS": "5",
    "CONSUMER_RETRY_CAP_SECONDS": "1",
}
PAYMENTS = 10


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[PostgresServer, RabbitServer]]:
    # Not under pytest's tmp_path: another pytest session on the machine prunes old basetemps,
    # and the servers' data must outlive a ten-minute outage.
    with tempfile.TemporaryDirectory(prefix="outage-servers-") as base:
        home = Path(base)
        with private_postgres(home) as postgres, private_rabbitmq(home) as rabbit:
            yield postgres, rabbit


@contextlib.asynccontextmanager
async def stack_on(
    servers: tuple[PostgresServer, RabbitServer], env: dict[str, str]
) -> AsyncIterator[FaultStack]:
    postgres, rabbit = servers
    async with faults.fault_stack(postgres.admin_dsn, rabbit.url, workers=2, env=env) as fs:
        yield fs


async def redirects_in_flight(fs: FaultStack, count: int) -> list[dict[str, Any]]:
    """Orders authenticated at the PG whose success redirects checkout has just recorded: their
    events are on their way through outboxes, queues and workers."""
    async with Buyer.for_stack(fs.config) as buyer:
        orders = await faults.place_orders(buyer, count, points=100)
        locations = [await buyer.authenticate(order) for order in orders]
        answers = await asyncio.gather(*(buyer.follow_redirect(loc) for loc in locations))
    assert all(answer.status_code in (200, 303) for answer in answers)
    return orders


async def down_for(seconds: float, stop: Any, start: Any) -> float:
    started = time.monotonic()
    await asyncio.to_thread(stop)
    try:
        await asyncio.sleep(seconds)
    finally:
        await asyncio.to_thread(start)
    return time.monotonic() - started


async def test_postgresql_stopped_with_payments_in_flight_parks_nothing(
    servers: tuple[PostgresServer, RabbitServer],
) -> None:
    postgres, _ = servers
    async with stack_on(servers, SHORTENED) as fs:
        orders = await redirects_in_flight(fs, PAYMENTS)

        outage = await down_for(60, postgres.stop, postgres.start)

        assert outage >= 60
        await faults.assert_money_is_right(fs, orders, Expect.PAID, within=120)


async def test_rabbitmq_stopped_with_payments_in_flight_parks_nothing(
    servers: tuple[PostgresServer, RabbitServer],
) -> None:
    _, rabbit = servers
    async with stack_on(servers, SHORTENED) as fs:
        orders = await redirects_in_flight(fs, PAYMENTS)

        outage = await down_for(60, rabbit.stop, rabbit.start)

        assert outage >= 60
        await faults.assert_money_is_right(fs, orders, Expect.PAID, within=120)


# Longer than 100 deliveries at up to 5 s each, with every production default; the PG's window
# (and ours) doubled by the sandbox's clock so that the payments can still be confirmed after.
OLD_BUDGET_SECONDS = 0.2 + 0.4 + 0.8 + 1.6 + 3.2 + 95 * 5.0
LONG_WINDOW = {
    "SANDBOX_CLOCK_SCALE": "0.5",
    "CONFIRM_WINDOW_SECONDS": "1200",
    "CONSUMER_HOLD_SECONDS": "300",
}


@pytest.mark.slow
@pytest.mark.timeout(OLD_BUDGET_SECONDS + 600)
async def test_postgresql_stopped_longer_than_the_old_delivery_budget_parks_nothing(
    servers: tuple[PostgresServer, RabbitServer],
) -> None:
    postgres, _ = servers
    async with stack_on(servers, LONG_WINDOW) as fs:
        orders = await redirects_in_flight(fs, PAYMENTS)

        outage = await down_for(OLD_BUDGET_SECONDS + 60, postgres.stop, postgres.start)

        assert outage > OLD_BUDGET_SECONDS
        await faults.assert_money_is_right(fs, orders, Expect.PAID, within=180)
