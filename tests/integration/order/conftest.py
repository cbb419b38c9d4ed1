"""The order service against real PostgreSQL and RabbitMQ: the app with its lifespan (relay,
consumer, sweeper), a client, a queue bound to every event on the exchange, and a publisher."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import aio_pika
import asyncpg
import httpx
import pytest
from aio_pika.abc import AbstractQueue

from services.order.bootstrap import create_app, migrate
from services.order.config import Settings
from shared import messaging
from shared.events import Event, PaymentApproved, decode, utcnow
from tests.infra import Broker

TOKEN = "first-customer-token"
TOKEN_2 = "second-customer-token"
BEANS, KETTLE, GRINDER = "COFFEE-BEANS", "DRIP-KETTLE", "HAND-GRINDER"  # 12,000 / 25,000 / 39,000
COUPON = "WELCOME3000"  # 3,000 off from 10,000, the first customer's
COUPON_2 = "FRIEND3000"  # the second customer's
START_POINTS = 5_000

E = TypeVar("E", bound=Event)


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.05)


@dataclass
class OrderService:
    """The running service and what a test needs to poke at it."""

    client: httpx.AsyncClient
    pool: asyncpg.Pool
    tap: AbstractQueue
    publisher: messaging.Publisher
    seen: list[Event] = field(default_factory=list)
    transport: httpx.AsyncBaseTransport | None = None

    def browser(self, origin: str = "http://order.test") -> httpx.AsyncClient:
        """A fresh visitor: its own cookie jar, sending the shop's Origin like a browser's
        fetch from the shop's page does (``origin=""``: none)."""
        headers = {"Origin": origin} if origin else {}
        return httpx.AsyncClient(
            transport=self.transport, base_url="http://order.test", headers=headers
        )

    async def place(self, token: str = TOKEN, **body: Any) -> httpx.Response:
        """POST /api/orders with one coffee unless ``items`` is given."""
        return await self.post_order({"items": [{"sku": BEANS, "quantity": 1}], **body}, token)

    async def post_order(self, body: dict[str, Any], token: str = TOKEN) -> httpx.Response:
        return await self.client.post("/api/orders", json=body, headers=bearer(token))

    async def placed(self, token: str = TOKEN, **body: Any) -> dict[str, Any]:
        response = await self.place(token, **body)
        assert response.status_code == 201, response.text
        order: dict[str, Any] = response.json()
        return order

    async def order(self, order_id: str, token: str = TOKEN) -> dict[str, Any]:
        response = await self.client.get(f"/api/orders/{order_id}", headers=bearer(token))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def order_when(
        self, order_id: str, predicate: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        latest: dict[str, Any] = {}

        async def holds() -> bool:
            nonlocal latest
            latest = await self.order(order_id)
            return predicate(latest)

        await eventually(holds)
        return latest

    async def points(self, token: str = TOKEN) -> int:
        response = await self.client.get("/api/me", headers=bearer(token))
        assert response.status_code == 200, response.text
        balance: int = response.json()["pointsBalance"]
        return balance

    async def coupon_status(self, code: str) -> str:
        status: str = await self.pool.fetchval("SELECT status FROM coupons WHERE code = $1", code)
        return status

    async def add_coupon(self, code: str, **columns: Any) -> None:
        """Give the first customer another coupon (fixed 1,000 off unless told otherwise)."""
        values = {
            "kind": "FIXED",
            "amount_off": 1_000,
            "min_order_amount": 0,
            "expires_at": utcnow() + timedelta(days=1),
        } | columns
        names = ", ".join(values)
        params = ", ".join(f"${i}" for i in range(3, len(values) + 3))
        await self.pool.execute(
            f"INSERT INTO coupons (code, customer_id, {names})"
            f" SELECT $1, customer_id, {params} FROM customers WHERE customer_key = $2",
            code,
            await self.customer_key(),
            *values.values(),
        )

    async def customer_key(self, token: str = TOKEN) -> str:
        response = await self.client.get("/api/me", headers=bearer(token))
        key: str = response.json()["customerKey"]
        return key

    async def publish(self, event: Event) -> None:
        await self.publisher.publish_event(event)

    async def handled(self, event: Event) -> None:
        """Wait until the consumer recorded the event in its inbox."""

        async def recorded() -> bool:
            found = await self.pool.fetchval(
                "SELECT count(*) FROM inbox WHERE event_id = $1", event.event_id
            )
            return bool(found)

        await eventually(recorded)

    async def next_event(self, kind: type[E]) -> E:
        """The first event of ``kind`` published (waiting for it); others are kept in ``seen``."""
        found: list[E] = []

        async def arrived() -> bool:
            while (message := await self.tap.get(no_ack=True, fail=False)) is not None:
                self.seen.append(decode(message.body))
            found.extend(e for e in self.seen if isinstance(e, kind))
            return bool(found)

        await eventually(arrived)
        self.seen.remove(found[0])
        return found[0]

    async def published(self, kind: type[E]) -> list[E]:
        """Every event of ``kind`` published so far (once the outbox is drained)."""

        async def drained() -> bool:
            left = await self.pool.fetchval(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            )
            return bool(left == 0)

        await eventually(drained)
        while (message := await self.tap.get(no_ack=True, fail=False)) is not None:
            self.seen.append(decode(message.body))
        return [e for e in self.seen if isinstance(e, kind)]

    async def approve(self, order: dict[str, Any], payment_key: str = "pk_1") -> PaymentApproved:
        event = approval(order, payment_key)
        await self.publish(event)
        return event

    async def expire(self, order_id: str) -> None:
        """Move the order's expiry into the past; the sweeper does the rest."""
        await self.pool.execute(
            "UPDATE orders SET expires_at = now() - interval '1 minute' WHERE order_id = $1",
            order_id,
        )


def approval(order: dict[str, Any], payment_key: str = "pk_1") -> PaymentApproved:
    return PaymentApproved(
        correlation_id=order["orderId"],
        order_id=order["orderId"],
        payment_key=payment_key,
        amount=order["amount"],
        method="카드",
        approved_at=utcnow(),
    )


@pytest.fixture
async def service(database_url: str, broker: Broker) -> AsyncIterator[OrderService]:
    settings = Settings(
        database_url=database_url,
        amqp_url=broker.url,
        events_exchange=broker.exchange,
        queue_prefix=broker.prefix,
        demo_customer_token=TOKEN,
        demo_customer_token_2=TOKEN_2,
        order_expiry_grace_seconds=0,
        expiry_sweep_interval_seconds=0.1,
        db_pool_min=1,
        db_pool_max=5,
    )
    await migrate(settings)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        connection = await aio_pika.connect(broker.url)
        async with connection:
            channel = await connection.channel()
            tap = await channel.declare_queue(exclusive=True, auto_delete=True)
            await tap.bind(broker.exchange, routing_key="#")
            exchange = await messaging.declare_exchange(channel, broker.topology)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://order.test"
            ) as client:
                yield OrderService(
                    client, app.state.pool, tap, messaging.Publisher(exchange), transport=transport
                )
