"""Composition root: the pool, the HTTP client and the background loops live on the lifespan's
runtime (``shared.runner``), which drains and closes them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from pathlib import Path

import httpx
from fastapi import FastAPI

from services.sandbox import api, repository, service, window
from services.sandbox.config import Settings
from services.sandbox.service import Sandbox
from services.sandbox.webhooks import WebhookSender
from shared import db, runner
from shared.http import add_input_guard
from shared.logging import register_secret
from shared.retention import OLDER_THAN, Janitor, Purge
from shared.runner import Runtime

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

    async def start(rt: Runtime, app: FastAPI) -> None:
        pool = await rt.pool(settings.db_schema)
        client = httpx.AsyncClient(timeout=httpx.Timeout(10.0))
        rt.closing(client.aclose)
        sandbox = Sandbox(pool, settings.sandbox_mid)
        await sandbox.refresh_knobs()
        await _apply_environment(sandbox, settings)
        app.state.sandbox = sandbox
        sender = WebhookSender(sandbox, client, settings.sandbox_webhook_poll_s)
        rt.loop(sender.run(), "sandbox-webhooks")
        rt.loop(_sweep(sandbox, settings.sandbox_sweep_interval_s), "sandbox-sweeper")
        rt.loop(_refresh(sandbox, settings.sandbox_faults_cache_s), "sandbox-knobs")
        rt.loop(Janitor(pool, settings.retention(), PURGES).run(), "retention")

    app = FastAPI(
        title="Toss Payments sandbox",
        lifespan=runner.lifespan(settings, "sandbox", start),
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
    runner.install_operations(app)
    api.quiet_dropped_responses()
    return app


async def _apply_environment(sandbox: Sandbox, settings: Settings) -> None:
    """Knobs the environment sets are written to the shared row at start."""
    initial = settings.initial_faults()
    if initial:
        await service.update_faults(sandbox, initial)
    if settings.sandbox_webhook_url:
        await sandbox.set_webhook_url(settings.sandbox_webhook_url)


async def _sweep(sandbox: Sandbox, interval: float) -> None:
    """Free the idempotency slots failed requests left, apply due pending completions, expire
    overdue payments (with their webhooks) and purge old idempotent answers."""
    last_purge = 0.0
    while True:
        await _guarded(service.free_stranded_slots(sandbox))
        await _guarded(service.complete_due(sandbox))
        await _guarded(service.expire_due(sandbox))
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
