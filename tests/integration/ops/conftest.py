"""The console against real PostgreSQL (approval's schema, migrated) and RabbitMQ (the whole
topology declared), through its ASGI app; rows are put in place with SQL, as the worker leaves
them, and no worker runs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from services.approval.bootstrap import migrate
from services.approval.config import Settings as ApprovalSettings
from services.ops.bootstrap import create_app
from services.ops.config import Settings
from services.ops.service import Console
from shared import messaging
from shared.events import PaymentAuthenticated, utcnow
from tests.infra import Broker

USER, PASSWORD = "operator", "a-long-test-password-for-the-console"
BASE = "http://ops.test"
OPERATOR_IP = "192.0.2.7"


@dataclass
class Ops:
    client: httpx.AsyncClient
    console: Console
    channel: AbstractChannel
    broker: Broker

    @property
    def db(self) -> asyncpg.Pool:
        return self.console.pool

    async def csrf(self) -> str:
        """Open the console (which sets the CSRF cookie) and return the token of its forms."""
        assert (await self.client.get("/ops/", auth=(USER, PASSWORD))).status_code == 200
        token = self.client.cookies.get("ops_csrf")
        assert token
        return token

    async def post(self, path: str, data: dict[str, str], **headers: str) -> httpx.Response:
        return await self.client.post(
            path, data=data, auth=(USER, PASSWORD), headers={"Origin": BASE, **headers}
        )

    async def audit(self) -> list[dict[str, Any]]:
        rows = await self.db.fetch(
            "SELECT operator, action, target, result, detail, client_ip FROM operator_actions"
            " ORDER BY id"
        )
        return [dict(row) for row in rows]

    async def refund(self, refund_id: str) -> dict[str, Any]:
        row = await self.db.fetchrow(
            "SELECT state, generation, idempotency_key FROM refunds WHERE refund_id = $1",
            refund_id,
        )
        assert row is not None
        return dict(row)

    async def failed_refund(self, payment_key: str = "") -> str:
        """A refund the PG refused for good (FAILED, with its code), as the worker leaves it."""
        refund_id = f"rf_{uuid.uuid4().hex[:12]}"
        await self.db.execute(
            "INSERT INTO refunds (refund_id, order_id, payment_key, amount, reason, state,"
            " idempotency_key, event_id, pg_code, pg_message)"
            " VALUES ($1, $2, $3, 5000, 'buyer asked', 'FAILED', $4, $5,"
            " 'NOT_CANCELABLE_PAYMENT', 'cannot be canceled')",
            refund_id,
            f"order-{uuid.uuid4().hex[:8]}",
            payment_key or f"pk_{uuid.uuid4().hex}",
            f"cancel-{refund_id}",
            uuid.uuid4(),
        )
        return refund_id

    async def attempt(self, state: str, age_seconds: int, payment_key: str = "") -> str:
        """An attempt in ``state``, authenticated ``age_seconds`` ago; returns its paymentKey."""
        payment_key = payment_key or f"tpk_{uuid.uuid4().hex}{uuid.uuid4().hex}"
        await self.db.execute(
            "INSERT INTO payment_attempts (payment_key, order_id, presented_amount,"
            " expected_amount, payment_type, authenticated_at, state, idempotency_key,"
            " tries, pg_message, event_id)"
            " VALUES ($1, $2, 15000, 15000, 'NORMAL', now() - make_interval(secs => $3),"
            " $4, $5, 3, 'read timeout', $6)",
            payment_key,
            f"order-{uuid.uuid4().hex[:8]}",
            age_seconds,
            state,
            f"confirm-{payment_key}",
            uuid.uuid4(),
        )
        return payment_key

    async def dead_letter(self, event: PaymentAuthenticated, reason: str) -> None:
        """``event`` dead-lettered from order's queue with ``reason``, as a consumer does it."""
        topology = self.broker.topology
        subscription = topology.subscription("order.payment-results")
        dlx = await self.channel.get_exchange(topology.dead_letter_exchange)
        headers: dict[str, Any] = {
            messaging.DEAD_LETTER_REASON: reason,
            messaging.ORIGINAL_ROUTING_KEY: event.routing_key,
        }
        message = aio_pika.Message(
            event.to_bytes(), headers=headers, message_id=str(event.event_id)
        )
        await messaging.publish_confirmed(dlx, message, topology.queue(subscription))


def authenticated(payment_key: str) -> PaymentAuthenticated:
    order_id = f"order-{uuid.uuid4().hex[:8]}"
    return PaymentAuthenticated(
        correlation_id=order_id,
        order_id=order_id,
        payment_key=payment_key,
        amount=15000,
        payment_type="NORMAL",
        received_at=utcnow(),
        client_ip="127.0.0.1",
        user_agent="pytest",
    )


def settings_for(database_url: str, broker: Broker, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "amqp_url": broker.url,
        "events_exchange": broker.exchange,
        "queue_prefix": broker.prefix,
        "operator_user": USER,
        "operator_password": PASSWORD,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
async def connection(broker: Broker) -> AsyncIterator[AbstractRobustConnection]:
    connection = await messaging.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        await messaging.declare_all(channel, broker.topology)
        yield connection


async def console_for(
    settings: Settings, connection: AbstractRobustConnection, broker: Broker
) -> AsyncIterator[Ops]:
    await migrate(
        ApprovalSettings(
            database_url=settings.database_url,
            amqp_url=broker.url,
            events_exchange=broker.exchange,
            queue_prefix=broker.prefix,
        )
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(OPERATOR_IP, 50000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            channel = await connection.channel()
            yield Ops(client, app.state.console, channel, broker)


@pytest.fixture
async def ops(
    database_url: str, broker: Broker, connection: AbstractRobustConnection
) -> AsyncIterator[Ops]:
    async for ops in console_for(settings_for(database_url, broker), connection, broker):
        yield ops


@pytest.fixture
async def closed(
    database_url: str, broker: Broker, connection: AbstractRobustConnection
) -> AsyncIterator[Ops]:
    """A console with no operator credentials configured."""
    settings = settings_for(database_url, broker, operator_user=None, operator_password=None)
    async for ops in console_for(settings, connection, broker):
        yield ops
