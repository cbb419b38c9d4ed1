"""Composition root: builds the broker connection, pool, relay, consumer and sweeper in the
lifespan, and closes them in ``finally``. Nothing connects at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from fastapi import FastAPI

from services.order import api, consumer, service
from services.order.config import Settings
from shared import db, messaging, problems
from shared.clock import Clock, DatabaseClock
from shared.http import add_input_guard, add_request_id
from shared.logging import register_secret
from shared.outbox import OutboxRelay
from shared.retention import OLDER_THAN, PLUMBING, Janitor, Purge
from shared.topology import CONSUMES, ORDER_PAYMENT_RESULTS

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


async def migrate(settings: Settings) -> list[str]:
    return await db.migrate(settings.db_url, settings.db_schema, MIGRATIONS, settings.role)


def create_app(settings: Settings) -> FastAPI:
    """The order service's ASGI app; its lifespan runs the relay, consumer and sweeper."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with running(settings) as (pool, clock):
            app.state.pool = pool
            app.state.clock = clock
            app.state.settings = settings
            yield

    app = FastAPI(title="order", lifespan=lifespan, docs_url=None, redoc_url=None)
    problems.install(app)
    api.install_error_table(app)
    add_input_guard(app, problems.refusal)
    add_request_id(app)
    app.include_router(api.router)
    return app


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[asyncpg.Pool, Clock]]:
    """Everything the service runs besides HTTP, torn down in reverse order; yields the pool
    and the clock (the database's) that orders are stamped and expired on."""
    register_secret(settings.demo_customer_token)
    register_secret(settings.demo_customer_token_2)
    topo = settings.topology()
    async with contextlib.AsyncExitStack() as stack:
        connection = await messaging.connect(settings.broker_url)
        stack.push_async_callback(connection.close)
        channel = await connection.channel(publisher_confirms=True)
        # Before anything can publish: every queue exists (declared, or checked with our user).
        exchange = await messaging.attach(
            channel, topo, CONSUMES[settings.role], declare=settings.role_amqp_url is None
        )
        publisher = messaging.Publisher(exchange)

        pool = await db.create_pool(
            settings.db_url,
            settings.db_schema,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            application_name=settings.role,
        )
        stack.push_async_callback(_close_pool, pool)
        clock = (await stack.enter_async_context(DatabaseClock(pool).running())).now
        if settings.seeds_demo_data:
            await seed(pool, settings)

        relay = OutboxRelay(
            pool,
            publisher,
            dsn=settings.db_url,
            schema=settings.db_schema,
            application_name=settings.role,
        )
        _background(stack, relay.run(), "outbox-relay")
        _background(stack, sweep_forever(pool, settings, clock), "expiry-sweeper")
        janitor = Janitor(pool, settings.retention(), (*PLUMBING, SETTLED_HOLDS, ENDED_SESSIONS))
        _background(stack, janitor.run(), "retention")
        channels = await messaging.start_consumers(
            connection,
            topo,
            [(ORDER_PAYMENT_RESULTS.name, consumer.handler(pool))],
            prefetch=settings.consumer_prefetch,
            patience=settings.patience(),
        )
        for consumer_channel in channels:
            stack.push_async_callback(consumer_channel.close)
        yield pool, clock


# A payment's hold matters only until its outcome: settled ones go with the other bookkeeping.
SETTLED_HOLDS = Purge("payment_holds", f"settled_at {OLDER_THAN}", key="payment_key")
ENDED_SESSIONS = Purge("sessions", f"expires_at {OLDER_THAN}", key="session_hash")


async def seed(pool: asyncpg.Pool, settings: Settings) -> None:
    now = datetime.now(UTC)
    demo = service.demo_customers(settings.demo_customer_token, settings.demo_customer_token_2, now)
    await service.seed_demo_data(pool, demo)


async def sweep_forever(pool: asyncpg.Pool, settings: Settings, clock: Clock) -> None:
    """Expire overdue orders every few seconds; errors are logged and the next round tries again."""
    while True:
        try:
            await service.expire_due_orders(
                pool, grace_seconds=settings.order_expiry_grace_seconds, now=clock()
            )
        except Exception:
            log.exception("expiry sweep failed; retrying")
        await asyncio.sleep(settings.expiry_sweep_interval_seconds)


def _background(
    stack: contextlib.AsyncExitStack, work: Coroutine[Any, Any, None], name: str
) -> None:
    task = asyncio.create_task(work, name=name)

    async def stop() -> None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("background task had failed", extra={"task": name})

    stack.push_async_callback(stop)


async def _close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), timeout=10)
    except TimeoutError:
        pool.terminate()
