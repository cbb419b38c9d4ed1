"""Composition root: builds the pool, the broker connection and the outbox relay on the
lifespan's runtime (``shared.runner``), which drains and closes them."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.checkout import api, consumer
from services.checkout.config import Settings
from shared import db, runner
from shared.http import add_input_guard, add_request_id
from shared.retention import OLDER_THAN, PLUMBING, Janitor, Purge
from shared.runner import Runtime
from shared.topology import CHECKOUT_PLACED_ORDERS

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

    async def start(rt: Runtime, app: FastAPI) -> None:
        pool = await rt.pool(settings.db_schema)
        clock = await rt.clock(pool)
        publisher = await rt.broker()
        handoff = rt.relay(pool, publisher, settings.db_schema, settings.outbox_poll_interval)
        rt.loop(Janitor(pool, settings.retention(), (*PLUMBING, *PURGES)).run(), "retention")
        await rt.consume([(CHECKOUT_PLACED_ORDERS.name, consumer.handler(pool))], prefetch=32)
        app.state.pool = pool
        app.state.clock = clock
        app.state.handoff = handoff
        app.state.settings = settings

    app = FastAPI(
        title="checkout",
        lifespan=runner.lifespan(settings, "checkout", start),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    api.install(app)
    add_input_guard(app, api.refusal)
    add_request_id(app)
    runner.install_operations(app)
    return app
