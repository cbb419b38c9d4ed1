"""Composition root: builds the pool, the broker connection and the outbox relay in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from services.checkout import api
from services.checkout.config import Settings
from shared import db, messaging
from shared.clock import DatabaseClock
from shared.http import add_request_id
from shared.outbox import Handoff, OutboxRelay
from shared.retention import Janitor

MIGRATIONS = Path(__file__).parent / "migrations"


async def migrate(settings: Settings) -> list[str]:
    """Apply checkout's migrations (and the outbox/inbox plumbing) to its schema."""
    return await db.migrate(settings.database_url, settings.db_schema, MIGRATIONS)


def create_app(settings: Settings) -> FastAPI:
    """The checkout app; the database must be migrated (see :func:`migrate`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            pool = await db.create_pool(
                settings.database_url,
                settings.db_schema,
                min_size=settings.db_pool_min,
                max_size=settings.db_pool_max,
            )
            stack.push_async_callback(pool.close)
            clock = await stack.enter_async_context(DatabaseClock(pool).running())
            connection = await messaging.connect(settings.amqp_url)
            stack.push_async_callback(connection.close)
            channel = await connection.channel(publisher_confirms=True)
            topo = settings.topology()
            await messaging.declare_all(channel, topo)
            exchange = await messaging.declare_exchange(channel, topo)
            handoff = Handoff()
            relay = OutboxRelay(
                pool,
                messaging.Publisher(exchange),
                dsn=settings.database_url,
                schema=settings.db_schema,
                poll_interval=settings.outbox_poll_interval,
                handoff=handoff,
            )
            relay_task = asyncio.create_task(relay.run(), name="checkout-outbox-relay")
            stack.push_async_callback(_cancel, relay_task)
            janitor = Janitor(pool, settings.retention())
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
    add_request_id(app)
    return app


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
