"""Composition root: builds the pool, the broker connection and the outbox relay in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from services.checkout import api, consumer
from services.checkout.config import Settings
from shared import db, messaging
from shared.clock import DatabaseClock
from shared.http import add_input_guard, add_request_id
from shared.outbox import Handoff, OutboxRelay
from shared.retention import OLDER_THAN, PLUMBING, Janitor, Purge
from shared.topology import CHECKOUT_PLACED_ORDERS, CONSUMES

MIGRATIONS = Path(__file__).parent / "migrations"

# Orders are payable for minutes: a retention later nobody can redirect to them. A held redirect
# whose order never came is a forgery (or long dead) by then; its conflicts, if any, stay.
PURGES = (
    Purge("placed_orders", f"placed_at {OLDER_THAN}", key="order_id"),
    Purge(
        "success_redirects",
        f"event_id IS NULL AND received_at {OLDER_THAN} AND NOT EXISTS (SELECT 1 FROM"
        " conflicting_redirects c WHERE c.payment_key = success_redirects.payment_key)",
        key="payment_key",
    ),
    Purge("fail_redirects", f"event_id IS NULL AND received_at {OLDER_THAN}", key="id"),
)


async def migrate(settings: Settings) -> list[str]:
    """Apply checkout's migrations (and the outbox/inbox plumbing) to its schema."""
    return await db.migrate(settings.db_url, settings.db_schema, MIGRATIONS, settings.role)


def create_app(settings: Settings) -> FastAPI:
    """The checkout app; the database must be migrated (see :func:`migrate`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            pool = await db.create_pool(
                settings.db_url,
                settings.db_schema,
                min_size=settings.db_pool_min,
                max_size=settings.db_pool_max,
                application_name=settings.role,
            )
            stack.push_async_callback(pool.close)
            clock = await stack.enter_async_context(DatabaseClock(pool).running())
            connection = await messaging.connect(settings.broker_url)
            stack.push_async_callback(connection.close)
            channel = await connection.channel(publisher_confirms=True)
            topo = settings.topology()
            exchange = await messaging.attach(
                channel, topo, CONSUMES[settings.role], declare=settings.role_amqp_url is None
            )
            handoff = Handoff()
            relay = OutboxRelay(
                pool,
                messaging.Publisher(exchange),
                dsn=settings.db_url,
                schema=settings.db_schema,
                application_name=settings.role,
                poll_interval=settings.outbox_poll_interval,
                handoff=handoff,
            )
            relay_task = asyncio.create_task(relay.run(), name="checkout-outbox-relay")
            stack.push_async_callback(_cancel, relay_task)
            channels = await messaging.start_consumers(
                connection,
                topo,
                [(CHECKOUT_PLACED_ORDERS.name, consumer.handler(pool))],
                patience=settings.patience(),
            )
            for consumer_channel in channels:
                stack.push_async_callback(consumer_channel.close)
            janitor = Janitor(pool, settings.retention(), (*PLUMBING, *PURGES))
            stack.push_async_callback(_cancel, asyncio.create_task(janitor.run(), name="retention"))
            app.state.pool = pool
            app.state.clock = clock.now
            app.state.handoff = handoff
            app.state.settings = settings
            yield

    app = FastAPI(
        title="checkout", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    api.install(app)
    add_input_guard(app, api.refusal)
    add_request_id(app)
    return app


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
