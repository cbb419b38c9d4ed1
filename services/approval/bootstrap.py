"""Composition root: :func:`build` wires the use cases around a pool and a PaymentGateway (tests
pass a fake); :func:`running` owns every resource of a live worker and releases it in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from services.approval.config import ConfigurationError, Settings
from services.approval.consumer import Handlers
from services.approval.domain import Window
from services.approval.payments import Clock, Payments, Policy
from services.approval.pg_client import (
    MeteredGateway,
    PaymentGateway,
    TossClient,
    build_http_client,
)
from services.approval.pg_sync import PgSync
from services.approval.reconciler import ReconcilePolicy, Reconciler
from services.approval.reconciliation import Daily, Reconciliation
from services.approval.refunds import Refunds
from shared import db, metrics
from shared.clock import DatabaseClock
from shared.events import Event, utcnow
from shared.messaging import Consumer, Handler, Publisher, attach, connect
from shared.outbox import Handoff, OutboxRelay
from shared.retention import Janitor
from shared.topology import CONSUMES

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


class InFlight:
    """The handler tasks running now, so that shutdown can let them finish or abandon them."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def track(self, handler: Handler) -> Handler:
        async def handle(event: Event) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            self._idle.clear()
            try:
                await handler(event)
            finally:
                self._tasks.discard(task)
                if not self._tasks:
                    self._idle.set()

        return handle

    async def wait_idle(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def abandon(self) -> None:
        """Cancel what is still running: a driver hands its lease back, and the unacked message
        is redelivered once the channel closes."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)


class Background:
    """Jobs run beside the handlers (drives kicked by an OrderPlaced); cancelled at shutdown,
    which the leases make safe."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()

    def spawn(self, job: Awaitable[object]) -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(job)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background job failed", exc_info=task.exception())

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


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
    background: Background
    handoff: Handoff
    in_flight: InFlight = field(default_factory=InFlight)


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
    owner: str | None = None,
    clock: Clock = utcnow,
) -> Worker:
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
    background = Background()
    sync = PgSync(pool, gateway, payments, refunds, handoff)
    handlers = Handlers(payments, refunds, sync, background.spawn, failpoints)
    return Worker(
        settings,
        pool,
        gateway,
        owner,
        payments,
        refunds,
        sync,
        reconciler,
        handlers,
        background,
        handoff,
    )


async def migrate(settings: Settings) -> list[str]:
    return await db.migrate(settings.db_url, settings.db_schema, MIGRATIONS, settings.role)


def http_client(settings: Settings) -> httpx.AsyncClient:
    """The process's PG client: the pool fits every handler and reconcile job at once."""
    return build_http_client(
        settings.toss_api_base,
        settings.secret_key(),
        connect_timeout=settings.pg_connect_timeout_seconds,
        read_timeout=settings.pg_read_timeout_seconds,
        max_connections=3 * settings.approval_prefetch + 16,
    )


@contextlib.asynccontextmanager
async def running(
    settings: Settings, gateway: PaymentGateway | None = None
) -> AsyncIterator[Worker]:
    """A live worker: migrated schema, pool, PG client, consumers, outbox relay, reconciler."""
    policy(settings)  # refuse bad settings before touching anything
    http = http_client(settings) if gateway is None else None
    metrics.serve(settings.metrics_port, settings.metrics_host)
    await migrate(settings)
    pool = await db.create_pool(
        settings.db_url,
        settings.db_schema,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        application_name=settings.role,
    )
    try:
        pg = gateway or TossClient(_require(http), settings.pg_call_deadline_seconds)
        async with DatabaseClock(pool).running() as clock:
            worker = build(settings, pool, pg, clock=clock.now)
            async with _serving(worker):
                yield worker
    finally:
        await _close_pool(pool)
        if http is not None:
            await http.aclose()


@contextlib.asynccontextmanager
async def _serving(worker: Worker) -> AsyncIterator[None]:
    settings = worker.settings
    topo = settings.topology()
    connection = await connect(settings.broker_url)
    tasks: list[asyncio.Task[None]] = []
    consumers: list[Consumer] = []
    try:
        channel = await connection.channel()
        own = CONSUMES[settings.role]
        exchange = await attach(channel, topo, own, declare=settings.role_amqp_url is None)
        relay = OutboxRelay(
            worker.pool,
            Publisher(exchange),
            dsn=settings.db_url,
            schema=settings.db_schema,
            application_name=settings.role,
            poll_interval=settings.outbox_poll_seconds,
            handoff=worker.handoff,
        )
        tasks.append(asyncio.create_task(worker.reconciler.run(), name="reconciler"))
        if settings.reconcile_daily:
            daily = Daily(
                worker.pool,
                Reconciliation(worker.pool, worker.gateway, worker.sync),
                settings.reconcile_at,
                settings.reconcile_report_dir,
            )
            tasks.append(asyncio.create_task(daily.run(), name="daily-reconciliation"))
        janitor = Janitor(worker.pool, settings.retention())
        tasks.append(asyncio.create_task(janitor.run(), name="retention"))
        for name, handler in worker.handlers.table():
            consumer = Consumer(
                await connection.channel(),
                topo,
                topo.subscription(name),
                worker.in_flight.track(handler),
                settings.patience(),
            )
            await consumer.start(settings.approval_prefetch)
            consumers.append(consumer)
        tasks.append(asyncio.create_task(relay.run(), name="outbox-relay"))
        yield
    finally:
        await _stop(worker, consumers, tasks)
        await connection.close()


async def _stop(worker: Worker, consumers: list[Consumer], tasks: list[asyncio.Task[None]]) -> None:
    """Stop taking messages, let in-flight ones finish for a while, then cancel the rest (an
    abandoned attempt keeps its lease state and is picked up again by any worker)."""
    for consumer in consumers:
        with contextlib.suppress(Exception):
            await consumer.stop()
    if not await worker.in_flight.wait_idle(worker.settings.shutdown_grace_seconds):
        log.warning("abandoning handlers still running at shutdown")
        await worker.in_flight.abandon()
    await worker.background.cancel_all()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), 5)
    except TimeoutError:
        pool.terminate()


def _require(http: httpx.AsyncClient | None) -> httpx.AsyncClient:
    assert http is not None
    return http
