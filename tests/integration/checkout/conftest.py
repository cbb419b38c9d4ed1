"""Checkout against real PostgreSQL and RabbitMQ: the app with its lifespan, and a test queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aio_pika
import asyncpg
import httpx
import pytest
from aio_pika.abc import AbstractQueue

from services.checkout.bootstrap import create_app, migrate
from services.checkout.config import Settings
from services.checkout.service import record_placed_orders
from shared import messaging
from shared.events import Event, OrderPlaced, decode
from shared.topology import CHECKOUT_PLACED_ORDERS
from tests.infra import Broker

BUYER_IP = "203.0.113.7"
PLACED = ("order-2026-0001", "order-2026-0002")
NEVER_PLACED = "order-2026-0009"
# A well-formed success redirect, as the PG sends it.
SUCCESS = {
    "paymentKey": "tpk_20260101_abcdef",
    "orderId": "order-2026-0001",
    "amount": "15000",
    "paymentType": "NORMAL",
}


@dataclass
class Checkout:
    """The running app, a client for it, its pool, and a queue bound to every event published."""

    client: httpx.AsyncClient
    pool: asyncpg.Pool
    events: AbstractQueue

    async def place(self, order_id: str, amount: int = 15000) -> int:
        """The order service placed this order (its OrderPlaced reached checkout); returns how
        many held redirects that released."""
        [released] = await self.place_together([order_placed(order_id, amount)])
        return released

    async def place_together(self, events: list[OrderPlaced]) -> list[int]:
        """These OrderPlaced reached checkout in one batch; how many redirects each released."""
        return await record_placed_orders(self.pool, CHECKOUT_PLACED_ORDERS.name, events)

    async def count(self, table: str) -> int:
        value = await self.pool.fetchval(f"SELECT count(*) FROM {table}")
        assert isinstance(value, int)
        return value

    async def relay_drained(self) -> None:
        """Wait until the outbox relay published everything enqueued so far."""

        async def drained() -> bool:
            unpublished = await self.pool.fetchval(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            )
            return bool(unpublished == 0)

        await eventually(drained)

    async def published(self) -> list[Event]:
        """Every event published so far (after the relay drained), each read once."""
        await self.relay_drained()
        events: list[Event] = []
        # Publisher confirms come after routing, so a drained outbox means the messages are here.
        while (message := await self.events.get(no_ack=True, fail=False)) is not None:
            events.append(decode(message.body))
        return events


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.02)


@pytest.fixture
async def checkout(database_url: str, broker: Broker) -> AsyncIterator[Checkout]:
    settings = Settings(
        database_url=database_url,
        amqp_url=broker.url,
        events_exchange=broker.exchange,
        queue_prefix=broker.prefix,
        outbox_poll_interval=0.2,
        db_pool_min=1,
        db_pool_max=4,
    )
    await migrate(settings)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        connection = await aio_pika.connect(broker.url)
        async with connection:
            channel = await connection.channel()
            await messaging.declare_exchange(channel, broker.topology)
            events = await channel.declare_queue(exclusive=True, auto_delete=True)
            await events.bind(broker.exchange, routing_key="#")
            transport = httpx.ASGITransport(app=app, client=(BUYER_IP, 50000))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://checkout.test"
            ) as client:
                placed = Checkout(client, app.state.pool, events)
                # The orders the tests redirect to were placed (order-2026-0009 never is).
                for order_id in PLACED:
                    await placed.place(order_id)
                yield placed


def order_placed(order_id: str, amount: int = 15000) -> OrderPlaced:
    return OrderPlaced(
        correlation_id=order_id,
        order_id=order_id,
        customer_key="cus_test",
        order_name="Test order",
        amount=amount,
        expires_at=datetime.now(UTC) + timedelta(minutes=30),
    )
