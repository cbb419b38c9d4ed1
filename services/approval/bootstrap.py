"""Composition root: :func:`build` wires the use cases around a pool and a PaymentGateway (tests
pass a fake); :func:`running` builds a live worker on a ``shared.runner`` runtime, which drains
and releases it in order."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from services.approval.config import ConfigurationError, Settings
from services.approval.consumer import Handlers
from services.approval.domain import Window
from services.approval.pg_client import (
    MeteredGateway,
    PaymentGateway,
    TossClient,
    build_http_client,
)
from services.approval.pg_sync import PgSync
from services.approval.reconciler import ReconcilePolicy, Reconciler
from services.approval.reconciliation import Daily, Reconciliation, latest_run_probe
from services.approval.refunds import Refunds
from services.approval.service import Clock, Payments, Policy
from shared import db, runner, tracing
from shared.events import utcnow
from shared.outbox import Handoff
from shared.retention import Janitor
from shared.runner import Runtime, Shutdown

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def policy(settings: Settings) -> Policy:
    if settings.lease_seconds < 1:
        raise ConfigurationError("LEASE_SECONDS must be at least 1")
    if 2 * settings.pg_call_deadline_seconds > settings.confirm_safety_margin_seconds:
        raise ConfigurationError(
            "PG_CALL_DEADLINE_SECONDS must fit twice into CONFIRM_SAFETY_MARGIN_SECONDS"
        )
    if settings.pg_read_timeout_seconds > settings.pg_call_deadline_seconds:
        raise ConfigurationError("PG_READ_TIMEOUT_SECONDS exceeds PG_CALL_DEADLINE_SECONDS")
    return Policy(
        window=Window(settings.confirm_window_seconds, settings.confirm_safety_margin_seconds),
        lease_seconds=settings.lease_seconds,
        confirm_attempts=settings.confirm_attempts,
        confirm_retry_base=settings.confirm_retry_base_seconds,
        call_deadline=settings.pg_call_deadline_seconds,
        backoff_base=settings.unknown_backoff_base_seconds,
        backoff_max=settings.unknown_backoff_max_seconds,
        awaiting_timeout=settings.awaiting_order_timeout_seconds,
    )


def reconcile_policy(settings: Settings) -> ReconcilePolicy:
    return ReconcilePolicy(
        interval=settings.reconcile_interval_seconds,
        batch=settings.reconcile_batch,
        concurrency=settings.approval_prefetch,
        verified_grace=settings.verified_grace_seconds,
        awaiting_timeout=settings.awaiting_order_timeout_seconds,
        window=settings.confirm_window_seconds,
    )


@dataclass
class Worker:
    """One approval worker's parts. ``owner`` is its name in leases."""

    settings: Settings
    pool: asyncpg.Pool
    gateway: PaymentGateway
    owner: str
    payments: Payments
    refunds: Refunds
    sync: PgSync
    reconciler: Reconciler
    handlers: Handlers
    handoff: Handoff


def heartbeat(path: Path | None) -> Callable[[], None]:
    """Mark the worker alive (for ``python -m services.approval healthcheck``)."""

    def beat() -> None:
        if path is not None:
            with contextlib.suppress(OSError):
                path.touch()

    return beat


def healthy(settings: Settings) -> bool:
    """The worker's reconciler completed a round recently."""
    path = settings.heartbeat_file
    if path is None:
        return True
    limit = max(15.0, 5 * settings.reconcile_interval_seconds)
    try:
        return time.time() - path.stat().st_mtime < limit
    except OSError:
        return False


def build(
    settings: Settings,
    pool: asyncpg.Pool,
    gateway: PaymentGateway,
    *,
    spawn: Callable[[Awaitable[object]], None],
    owner: str | None = None,
    clock: Clock = utcnow,
) -> Worker:
    """The worker's use cases; ``spawn`` runs the drives an event kicks off (work in flight)."""
    owner = owner or f"approval-{uuid.uuid4().hex[:12]}"
    rules = policy(settings)
    failpoints = settings.failpoints()
    if failpoints:
        log.warning("failpoints armed (test-only fault injection)", extra={"owner": owner})
    handoff = Handoff()
    gateway = MeteredGateway(gateway)
    payments = Payments(pool, gateway, rules, owner, handoff, clock, failpoints)
    refunds = Refunds(pool, gateway, rules, owner)
    reconciler = Reconciler(
        pool, payments, refunds, reconcile_policy(settings), heartbeat(settings.heartbeat_file)
    )
    sync = PgSync(pool, gateway, payments, refunds, handoff)
    handlers = Handlers(payments, refunds, sync, spawn, failpoints)
    return Worker(
        settings, pool, gateway, owner, payments, refunds, sync, reconciler, handlers, handoff
    )


async def migrate(settings: Settings) -> list[str]:
    return await db.migrate(settings.db_url, settings.db_schema, MIGRATIONS, settings.role)


def http_client(settings: Settings) -> httpx.AsyncClient:
    """The process's PG client: the pool fits every handler and reconcile job at once."""
    client = build_http_client(
        settings.toss_api_base,
        settings.secret_key(),
        connect_timeout=settings.pg_connect_timeout_seconds,
        read_timeout=settings.pg_read_timeout_seconds,
        max_connections=3 * settings.approval_prefetch + 16,
    )
    tracing.instrument_client(client)
    return client


@contextlib.asynccontextmanager
async def running(
    settings: Settings, gateway: PaymentGateway | None = None, shutdown: Shutdown | None = None
) -> AsyncIterator[Worker]:
    """A live worker on a :class:`shared.runner.Runtime`: migrated schema, pool, PG client,
    consumers, outbox relay, reconciler; drained on the way out (``shared.runner``)."""
    policy(settings)  # refuse bad settings before touching anything
    if gateway is None:
        settings.secret_key()
    if settings.migrate_on_start:
        await migrate(settings)
    async with runner.runtime(settings, "approval", shutdown) as rt:
        pool = await rt.pool(settings.db_schema)
        clock = await rt.clock(pool)
        worker = build(settings, pool, gateway or _toss(rt, settings), spawn=rt.spawn, clock=clock)
        publisher = await rt.broker()
        rt.relay(pool, publisher, settings.db_schema, settings.outbox_poll_seconds, worker.handoff)
        rt.loop(worker.reconciler.run(), "reconciler")
        if settings.reconcile_daily:
            reconciliation = Reconciliation(pool, worker.gateway, worker.sync)
            daily = Daily(
                pool, reconciliation, settings.reconcile_at, settings.reconcile_report_dir
            )
            rt.loop(daily.run(), "daily-reconciliation")
        rt.sampler.add("reconciliation", latest_run_probe(pool))  # runs by hand count too
        rt.loop(Janitor(pool, settings.retention()).run(), "retention")
        await rt.consume(worker.handlers.table(), settings.approval_prefetch)
        rt.heartbeat(settings.health_dir)
        yield worker


def _toss(rt: Runtime, settings: Settings) -> PaymentGateway:
    http = http_client(settings)
    rt.closing(http.aclose)
    return TossClient(http, settings.pg_call_deadline_seconds)
