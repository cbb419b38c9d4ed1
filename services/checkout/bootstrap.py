"""Composition root: builds the pool, the broker connection and the outbox relay on the
lifespan's runtime (``shared.runner``), which drains and closes them."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.checkout import api
from services.checkout.config import Settings
from shared import db, runner
from shared.http import add_request_id
from shared.retention import Janitor
from shared.runner import Runtime

MIGRATIONS = Path(__file__).parent / "migrations"


async def migrate(settings: Settings) -> list[str]:
    """Apply checkout's migrations (and the outbox/inbox plumbing) to its schema."""
    return await db.migrate(settings.database_url, settings.db_schema, MIGRATIONS)


def create_app(settings: Settings) -> FastAPI:
    """The checkout app; the database must be migrated (see :func:`migrate`)."""

    async def start(rt: Runtime, app: FastAPI) -> None:
        pool = await rt.pool(settings.db_schema)
        clock = await rt.clock(pool)
        publisher = await rt.broker()
        handoff = rt.relay(pool, publisher, settings.db_schema, settings.outbox_poll_interval)
        rt.loop(Janitor(pool, settings.retention()).run(), "retention")
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
    add_request_id(app)
    runner.install_health(app)
    return app
