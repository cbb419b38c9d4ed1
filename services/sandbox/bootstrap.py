"""Composition root: the pool, the HTTP client and the background tasks live in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import httpx
from fastapi import FastAPI

from services.sandbox import api, operations, repository, window
from services.sandbox.config import Settings
from services.sandbox.operations import Sandbox
from services.sandbox.webhooks import WebhookSender
from shared import db
from shared.http import add_input_guard
from shared.logging import register_secret
from shared.retention import OLDER_THAN, Janitor, Purge

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
PURGE_EVERY_S = 3600.0


async def migrate(settings: Settings) -> list[str]:
    return await db.migrate(settings.db_url, settings.db_schema, MIGRATIONS, settings.role)


# Idempotent answers go a retention after their 15 days expired; delivered webhooks, after it.
PURGES = (
    Purge("idempotent_requests", f"expires_at {OLDER_THAN}"),
    Purge("webhook_deliveries", f"delivered_at {OLDER_THAN}", key="id"),
)


def create_app(settings: Settings) -> FastAPI:
    """The sandbox as an ASGI app; its lifespan connects, applies env faults and starts workers."""
    for key in settings.secret_keys:
        register_secret(key)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await db.create_pool(
            settings.db_url,
            settings.db_schema,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            application_name=settings.role,
        )
        client = httpx.AsyncClient(timeout=httpx.Timeout(10.0))
        sandbox = Sandbox(pool, settings.sandbox_mid)
        tasks: list[asyncio.Task[None]] = []
        try:
            await sandbox.refresh_knobs()
            await _apply_environment(sandbox, settings)
            app.state.sandbox = sandbox
            sender = WebhookSender(sandbox, client, settings.sandbox_webhook_poll_s)
            tasks = [
                asyncio.create_task(sender.run(), name="sandbox-webhooks"),
                asyncio.create_task(_sweep(sandbox, settings.sandbox_sweep_interval_s)),
                asyncio.create_task(_refresh(sandbox, settings.sandbox_faults_cache_s)),
                asyncio.create_task(Janitor(pool, settings.retention(), PURGES).run()),
            ]
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.aclose()
            await pool.close()

    app = FastAPI(
        title="Toss Payments sandbox",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.secret_keys = settings.secret_keys
    app.state.client_keys = settings.client_keys
    app.state.public_url = settings.sandbox_public_url
    app.include_router(api.router)
    app.include_router(window.router)
    api.install_error_handlers(app)
    app.add_middleware(api.DropResponseMiddleware)
    add_input_guard(app, api.refusal)
    api.quiet_dropped_responses()
    return app


async def _apply_environment(sandbox: Sandbox, settings: Settings) -> None:
    """Knobs the environment sets are written to the shared row at start."""
    initial = settings.initial_faults()
    if initial:
        await operations.update_faults(sandbox, initial)
    if settings.sandbox_webhook_url:
        await sandbox.set_webhook_url(settings.sandbox_webhook_url)


async def _sweep(sandbox: Sandbox, interval: float) -> None:
    """Apply due pending completions, expire overdue payments (with their webhooks) and purge
    old idempotent answers."""
    last_purge = 0.0
    while True:
        await _guarded(operations.complete_due(sandbox))
        await _guarded(operations.expire_due(sandbox))
        now = asyncio.get_running_loop().time()
        if now - last_purge > PURGE_EVERY_S:
            await _guarded(_purge(sandbox))
            last_purge = now
        await asyncio.sleep(interval)


async def _refresh(sandbox: Sandbox, interval: float) -> None:
    """Follow the knobs other sandbox processes set."""
    while True:
        await asyncio.sleep(interval)
        await _guarded(sandbox.refresh_knobs())


async def _purge(sandbox: Sandbox) -> None:
    async with sandbox.pool.acquire() as conn:
        await repository.purge_idempotency(conn)


async def _guarded(work: Awaitable[object]) -> None:
    try:
        await work
    except Exception:
        log.exception("sandbox background work failed; retrying")


__all__: list[str] = ["create_app", "migrate"]
