"""Composition root: builds the broker connection, pool, relay, consumer and sweeper on the
lifespan's runtime (``shared.runner``), which drains and closes them. Nothing connects at import."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from fastapi import FastAPI

from services.order import api, consumer, service
from services.order.config import Settings
from shared import db, problems, runner
from shared.clock import Clock
from shared.http import add_input_guard, add_request_id
from shared.logging import register_secret
from shared.retention import OLDER_THAN, PLUMBING, Janitor, Purge
from shared.runner import Runtime
from shared.topology import ORDER_PAYMENT_RESULTS

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


async def migrate(settings: Settings) -> list[str]:
    return await db.migrate(settings.db_url, settings.db_schema, MIGRATIONS, settings.role)


def create_app(settings: Settings) -> FastAPI:
    """The order service's ASGI app; its lifespan (:func:`start`) runs the relay, consumer and
    sweeper on a :class:`shared.runner.Runtime`, drained at shutdown."""

    async def on_start(rt: Runtime, app: FastAPI) -> None:
        app.state.pool, app.state.clock = await start(rt, settings)
        app.state.settings = settings

    app = FastAPI(
        title="order",
        lifespan=runner.lifespan(settings, "order", on_start),
        docs_url=None,
        redoc_url=None,
    )
    problems.install(app)
    api.install_error_table(app)
    add_input_guard(app, problems.refusal)
    add_request_id(app)
    runner.install_operations(app)
    app.include_router(api.router)
    return app


async def start(rt: Runtime, settings: Settings) -> tuple[asyncpg.Pool, Clock]:
    """Everything the service runs besides HTTP; returns the pool and the clock (the
    database's) that orders are stamped and expired on."""
    register_secret(settings.demo_customer_token)
    register_secret(settings.demo_customer_token_2)
    publisher = await rt.broker()  # the topology first: nothing is published before its queue
    pool = await rt.pool(settings.db_schema)
    clock = await rt.clock(pool)
    if settings.seeds_demo_data:
        await seed(pool, settings)
    rt.relay(pool, publisher, settings.db_schema)
    rt.loop(sweep_forever(pool, settings, clock), "expiry-sweeper")
    janitor = Janitor(pool, settings.retention(), (*PLUMBING, SETTLED_HOLDS, ENDED_SESSIONS))
    rt.loop(janitor.run(), "retention")
    table = [(ORDER_PAYMENT_RESULTS.name, consumer.handler(pool))]
    await rt.consume(table, settings.consumer_prefetch)
    return pool, clock


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
