"""The approval worker against real PostgreSQL and RabbitMQ, with a fake PG.

Events go in through the exchange (``Publisher``); what the worker publishes is read from a
queue of the test's own bound to the exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from services.approval.bootstrap import Worker, migrate, running
from services.approval.config import Settings
from services.approval.repository import IntentRead, read_intent_for_judging
from shared import messaging
from shared.events import (
    Event,
    OrderPlaced,
    PaymentApproved,
    PaymentAuthenticated,
    PaymentRefunded,
    PaymentRejected,
    RefundFailed,
    decode,
    utcnow,
)
from shared.messaging import Topology
from shared.topology import topology
from tests.infra import Broker
from tests.integration.approval.fakes import FakePG

E = TypeVar("E", bound=Event)
OUTPUTS = (PaymentApproved, PaymentRejected, PaymentRefunded, RefundFailed)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.05)


def order_placed(
    amount: int = 50_000, expires_in: timedelta = timedelta(minutes=30)
) -> OrderPlaced:
    order_id = f"order-{uuid.uuid4().hex[:12]}"
    return OrderPlaced(
        correlation_id=order_id,
        order_id=order_id,
        customer_key=f"ck-{uuid.uuid4().hex[:12]}",
        order_name="Coffee beans",
        amount=amount,
        expires_at=utcnow() + expires_in,
    )


@dataclass
class Approval:
    """What a test drives and looks at: the exchange, the fake PG, the worker's output, its DB."""

    settings: Settings
    pg: FakePG
    db: asyncpg.Pool
    publisher: messaging.Publisher
    connection: AbstractRobustConnection
    stack: contextlib.AsyncExitStack
    outputs: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    seen: list[Event] = field(default_factory=list)

    @property
    def topology(self) -> Topology:
        return topology(self.settings.events_exchange, self.settings.queue_prefix)

    async def start_worker(self, **overrides: Any) -> Worker:
        """A worker that runs until the end of the test."""
        return await self.stack.enter_async_context(self.worker(**overrides))

    def worker(self, **overrides: Any) -> contextlib.AbstractAsyncContextManager[Worker]:
        """A worker the test stops itself (``async with``)."""
        return running(self.settings.model_copy(update=overrides), self.pg)

    async def publish(self, *events: Event) -> None:
        for event in events:
            await self.publisher.publish_event(event)

    def authenticated(
        self, order: OrderPlaced, amount: int | None = None, payment_key: str | None = None
    ) -> PaymentAuthenticated:
        """The PG authenticated ``amount`` (the order's unless tampered) and checkout saw it."""
        payment_key = payment_key or f"pk_{uuid.uuid4().hex}"
        presented = order.amount if amount is None else amount
        self.pg.authenticate(payment_key, order.order_id, presented)
        return PaymentAuthenticated(
            correlation_id=order.order_id,
            order_id=order.order_id,
            payment_key=payment_key,
            amount=presented,
            payment_type="NORMAL",
            received_at=utcnow(),
            client_ip="127.0.0.1",
            user_agent="pytest",
        )

    async def next_output(self, kind: type[E], within: float = 10.0) -> E:
        """The next event the worker published (it must be of ``kind``)."""
        event = await asyncio.wait_for(self.outputs.get(), within)
        assert isinstance(event, kind), f"expected {kind.__name__}, got {event!r}"
        return event

    async def no_more_outputs(self, wait: float = 0.5) -> None:
        await asyncio.sleep(wait)
        assert self.outputs.empty(), f"unexpected output {self.outputs.get_nowait()!r}"

    async def intent_status(self, order_id: str) -> str | None:
        status: str | None = await self.db.fetchval(
            "SELECT status FROM order_intents WHERE order_id = $1", order_id
        )
        return status

    async def attempt(self, payment_key: str) -> dict[str, Any]:
        row = await self.db.fetchrow(
            "SELECT * FROM payment_attempts WHERE payment_key = $1", payment_key
        )
        return dict(row) if row else {}

    async def placed_intent(self) -> OrderPlaced:
        """An order whose intent is in the database already (no worker needed)."""
        order = order_placed()
        await self.db.execute(
            "INSERT INTO order_intents (order_id, amount, currency, customer_key, expires_at,"
            " status) VALUES ($1, $2, 'KRW', $3, $4, 'PAYABLE')",
            order.order_id,
            order.amount,
            order.customer_key,
            order.expires_at,
        )
        return order

    async def intent_as_read(self, event: PaymentAuthenticated) -> IntentRead:
        """The intent as receiving reads it to judge ``event``."""
        async with self.db.acquire() as conn:
            found = await read_intent_for_judging(conn, event.order_id, event.payment_key)
        assert found is not None
        return found

    async def intent_known(self, order_id: str, status: str = "PAYABLE") -> None:
        async def known() -> bool:
            return await self.intent_status(order_id) == status

        await eventually(known)

    async def on_output(self, message: AbstractIncomingMessage) -> None:
        event = decode(message.body)
        self.seen.append(event)
        self.outputs.put_nowait(event)


def settings_for(database_url: str, broker: Broker) -> Settings:
    """Short leases and intervals so that recovery paths finish in test time."""
    return Settings(
        database_url=database_url,
        amqp_url=broker.url,
        events_exchange=broker.exchange,
        queue_prefix=broker.prefix,
        db_pool_min=1,
        db_pool_max=6,
        approval_prefetch=16,
        pg_read_timeout_seconds=1.0,
        lease_seconds=3.0,
        confirm_attempts=3,
        confirm_retry_base_seconds=0.01,
        unknown_backoff_base_seconds=0.2,
        unknown_backoff_max_seconds=1.0,
        reconcile_interval_seconds=0.2,
        verified_grace_seconds=1.0,
        awaiting_order_timeout_seconds=30.0,
        shutdown_grace_seconds=2.0,
        outbox_poll_seconds=0.2,
        reconcile_daily=False,  # a test runs reconciliation itself when it wants one
    )


@pytest.fixture
async def approval(database_url: str, broker: Broker) -> AsyncIterator[Approval]:
    settings = settings_for(database_url, broker)
    await migrate(settings)
    async with contextlib.AsyncExitStack() as stack:
        connection = await messaging.connect(broker.url)
        stack.push_async_callback(connection.close)
        channel = await connection.channel()
        await messaging.declare_all(channel, broker.topology)
        exchange = await messaging.declare_exchange(channel, broker.topology)
        db = await asyncpg.create_pool(
            database_url, min_size=1, max_size=2, server_settings={"search_path": "approval"}
        )
        assert db is not None
        stack.push_async_callback(db.close)
        harness = Approval(settings, FakePG(), db, messaging.Publisher(exchange), connection, stack)
        tap = await channel.declare_queue(exclusive=True, auto_delete=True)
        for kind in OUTPUTS:
            await tap.bind(exchange, routing_key=kind.routing_key)
        await tap.consume(harness.on_output, no_ack=True)
        yield harness
