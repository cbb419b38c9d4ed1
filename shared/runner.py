"""One process shape for every role: settings in, a :class:`Runtime` that owns what the role runs
on (pools, the broker, outbox relays, consumers, background loops, jobs in flight), signals
handled in one place, and a drain that lets work in flight finish within the grace.

A role's composition root opens a runtime (``async with runner.runtime(settings, "order") as
rt``), builds on it (``rt.pool``, ``rt.broker``, ``rt.relay``, ``rt.consume``, ``rt.loop``,
``rt.spawn``, ``rt.closing``) and yields. HTTP roles do that in their FastAPI lifespan
(:func:`lifespan`) and run under :func:`run_http` (uvicorn); the worker runs under
:func:`run_worker`. SIGTERM and SIGINT stop either the same way; leaving the runtime drains it,
in this order, whatever order things were built in:

1. readiness turns false; consumers stop taking deliveries (``basic.cancel``); HTTP stops
   accepting connections (uvicorn);
2. requests, messages being handled and spawned jobs finish, until ``SHUTDOWN_GRACE_SECONDS``
   after the signal; what is still running then is cancelled (its message, unacked, goes back to
   its queue when the channel closes; an approval attempt keeps its lease state);
3. background loops are cancelled, and each outbox relay publishes what is left (the rows handed
   to it and a last poll), within :data:`FINAL_STEP_SECONDS`;
4. channels, the broker connection, HTTP clients and pools close, last opened first.

Steps 3 and 4 are each bounded (:data:`FINAL_STEP_SECONDS`, :data:`CLOSE_SECONDS`): a process
exits a few seconds after the grace at worst (about 6 when its dependencies answer), and a
supervisor's stop timeout (supervisord's ``stopwaitsecs``, compose's ``stop_grace_period``,
Kubernetes' ``terminationGracePeriodSeconds``) must be longer than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn
import uvloop
from aio_pika.abc import AbstractRobustConnection
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from shared import db, messaging, metrics, tracing
from shared.clock import Clock, DatabaseClock
from shared.healthcheck import fresh, health_file
from shared.outbox import Handoff, OutboxRelay
from shared.settings import CommonSettings
from shared.topology import CONSUMES

log = logging.getLogger(__name__)

__all__ = ["Runtime", "Shutdown", "fresh", "health_file", "lifespan", "run_http", "run_worker"]

FINAL_STEP_SECONDS = 3.0
CLOSE_SECONDS = 3.0
HEALTH_INTERVAL_SECONDS = 2.0
READY_CHECK_SECONDS = 2.0

Lifespan = Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]


class Shutdown:
    """When the process was asked to stop; the drain waits for work until then plus the grace."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.requested = asyncio.Event()
        self._deadline: float | None = None

    def request(self) -> None:
        if self._deadline is None:
            self._deadline = time.monotonic() + self.grace
        self.requested.set()

    def remaining(self) -> float:
        """Seconds left of the grace (a drain without a signal starts the countdown itself)."""
        self.request()
        assert self._deadline is not None
        return max(self._deadline - time.monotonic(), 0.0)


class Runtime:
    """What one process of a role runs on, and the drain that releases it (module docstring)."""

    def __init__(self, settings: CommonSettings, role: str, shutdown: Shutdown) -> None:
        self.settings = settings
        self.role = role
        self.shutdown = shutdown
        self._resources = contextlib.AsyncExitStack()
        self._pools: list[asyncpg.Pool] = []
        self._connection: AbstractRobustConnection | None = None
        self._consumers: list[messaging.Consumer] = []
        self._relays: list[tuple[OutboxRelay, asyncio.Task[None]]] = []
        self._loops: list[asyncio.Task[None]] = []
        self._jobs: set[asyncio.Task[object]] = set()
        self.sampler = metrics.Sampler()

    async def pool(self, schema: str) -> asyncpg.Pool:
        """A pool on ``schema`` sized by ``DB_POOL_MIN``/``DB_POOL_MAX``, closed after the drain."""
        s = self.settings
        pool = await db.create_pool(
            s.db_url,
            schema,
            min_size=s.db_pool_min,
            max_size=s.db_pool_max,
            application_name=self.role,
        )
        self._resources.push_async_callback(close_pool, pool)
        self._pools.append(pool)
        return pool

    async def clock(self, pool: asyncpg.Pool) -> Clock:
        """The database's clock (``shared.clock``), synced now and refreshed in a loop."""
        clock = DatabaseClock(pool)
        await clock.sync()
        self.loop(clock.run(), "database-clock")
        return clock.now

    async def broker(self) -> messaging.Publisher:
        """Connect and return a confirming publisher, once every queue exists: the whole
        topology declared (on the admin's user, in sandbox mode without per-role users), or
        this role's own queues checked (its own user may declare nothing)."""
        s = self.settings
        connection = await messaging.connect(s.broker_url)
        self._resources.push_async_callback(_bounded, connection.close)
        self._connection = connection
        channel = await connection.channel(publisher_confirms=True)
        own = CONSUMES.get(self.role, ())
        exchange = await messaging.attach(
            channel, s.topology(), own, declare=s.role_amqp_url is None
        )
        return messaging.Publisher(exchange)

    def relay(
        self,
        pool: asyncpg.Pool,
        publisher: messaging.Publisher,
        schema: str,
        poll: float = 1.0,
        handoff: Handoff | None = None,
    ) -> Handoff:
        """Run an outbox relay for ``schema``; returns the handoff its one-statement writers use."""
        handoff = handoff or Handoff()
        relay = OutboxRelay(
            pool,
            publisher,
            dsn=self.settings.db_url,
            schema=schema,
            poll_interval=poll,
            handoff=handoff,
            application_name=self.role,
        )
        self._relays.append((relay, asyncio.create_task(relay.run(), name="outbox-relay")))
        self.sampler.add(f"outbox:{schema}", metrics.outbox_probe(pool, schema))
        return handoff

    async def consume(self, table: Iterable[tuple[str, messaging.Handler]], prefetch: int) -> None:
        """One consumer per subscription, each on a channel of its own (its own prefetch)."""
        topology = self.settings.topology()
        for name, handler in table:
            channel = await self._require_connection().channel()
            self._resources.push_async_callback(_bounded, channel.close)
            subscription = topology.subscription(name)
            patience = self.settings.patience()
            consumer = messaging.Consumer(channel, topology, subscription, handler, patience)
            await consumer.start(prefetch)
            self._consumers.append(consumer)
            self._watch(topology, subscription)

    def _watch(self, topology: messaging.Topology, subscription: messaging.Subscription) -> None:
        """Sample the depth of a consumed queue and of its dead-letter queue."""
        watched = metrics.WatchedQueue(
            subscription.name,
            topology.queue(subscription),
            topology.dead_letter_queue(subscription),
        )
        probe = metrics.queue_probe(self._require_connection(), watched)
        self.sampler.add(f"queue:{subscription.name}", probe)

    def loop(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """A background loop (a sweeper, a janitor): cancelled once the work in flight is done."""
        self._loops.append(asyncio.create_task(work, name=name))

    def spawn(self, job: Awaitable[object]) -> None:
        """Work in flight that is not a message (a drive an event kicked off): the drain lets it
        finish within the grace, like a handler."""
        task: asyncio.Task[object] = asyncio.ensure_future(job)
        self._jobs.add(task)
        task.add_done_callback(self._job_done)

    def closing(self, close: Callable[[], Awaitable[object]]) -> None:
        """Release something (an HTTP client) with the pools, after the drain."""
        self._resources.push_async_callback(close)

    def heartbeat(self, directory: Path | None) -> None:
        """Touch ``<role>.live`` every few seconds (the event loop turns) and ``<role>.ready``
        when :meth:`ready` holds, for a worker's ``healthcheck live|ready``."""
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self.loop(_beat(self, directory), "heartbeat")

    async def ready(self) -> bool:
        """Not stopping, the broker connected (if any) and every pool answering."""
        if self.shutdown.requested.is_set():
            return False
        if self._connection is not None and not self._connection.connected.is_set():
            return False
        try:
            async with asyncio.timeout(READY_CHECK_SECONDS):
                for pool in self._pools:
                    await pool.fetchval("SELECT 1")
        except Exception:  # whatever a dependency throws means "not ready", never a dead probe
            return False
        return True

    async def drain(self) -> None:
        """Steps 1 to 3 of the module docstring; :func:`runtime` then does step 4."""
        self.shutdown.requested.set()
        for consumer in self._consumers:
            await _bounded(consumer.stop)
        await self._settle()
        await _cancel(self._loops)
        for relay, task in self._relays:
            relay.stop()
            await _finish(task, FINAL_STEP_SECONDS)
            await _flush(relay)

    async def _settle(self) -> None:
        """Let the work in flight finish until the shutdown's deadline; cancel what is left."""
        for consumer in self._consumers:
            if not await consumer.drain(self.shutdown.remaining()):
                log.warning("abandoning messages still being handled at shutdown")
        jobs = list(self._jobs)
        if jobs:
            _, pending = await asyncio.wait(jobs, timeout=self.shutdown.remaining())
            if pending:
                log.warning("abandoning jobs still running at shutdown", extra={"n": len(pending)})
            await _cancel(list(pending))

    def _job_done(self, task: asyncio.Task[object]) -> None:
        self._jobs.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background job failed", exc_info=task.exception())

    def _require_connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise RuntimeError("call Runtime.broker() before consuming")
        return self._connection


@contextlib.asynccontextmanager
async def runtime(
    settings: CommonSettings, role: str, shutdown: Shutdown | None = None
) -> AsyncIterator[Runtime]:
    """A runtime, drained and closed on the way out (a failed start included)."""
    shutdown = shutdown or Shutdown(settings.shutdown_grace_seconds)
    rt = Runtime(settings, role, shutdown)
    async with rt._resources:
        _serve_metrics(rt)
        try:
            yield rt
        finally:
            await rt.drain()


def _serve_metrics(rt: Runtime) -> None:
    """``/metrics`` on the role's internal port (stopped last), the gauges' sampling loop, the
    event loop's lag and the garbage collector's pauses."""
    address = rt.settings.metrics_address()
    if address is not None:
        rt._resources.callback(metrics.serve(address[1], address[0]))
    rt.loop(rt.sampler.run(), "metrics-sampler")
    rt.loop(metrics.watch_loop_lag(), "loop-lag")
    metrics.time_gc_pauses()


def lifespan(
    settings: CommonSettings, role: str, start: Callable[[Runtime, FastAPI], Awaitable[None]]
) -> Lifespan:
    """A FastAPI lifespan that opens a runtime, lets ``start`` build the role on it (and put
    what routes need on ``app.state``), and drains it at shutdown."""

    @contextlib.asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        shutdown: Shutdown | None = getattr(app.state, "shutdown", None)
        async with runtime(settings, role, shutdown) as rt:
            app.state.runtime = rt
            await start(rt, app)
            yield

    return run


def install_operations(app: FastAPI) -> None:
    """What every HTTP role serves for its operators: the health probes and the HTTP metrics
    (one place, so no role goes without either)."""
    install_health(app)
    metrics.instrument_http(app)


def install_health(app: FastAPI) -> None:
    """``/livez``: the event loop answers (nothing else is asked, so a database outage never
    restarts the process); ``/readyz``: the runtime's dependencies answer and it is not
    stopping (a Service sends no traffic otherwise)."""

    async def livez() -> JSONResponse:
        return JSONResponse({"status": "alive"}, headers={"Cache-Control": "no-store"})

    async def readyz(request: Request) -> JSONResponse:
        rt: Runtime | None = getattr(request.app.state, "runtime", None)
        ok = rt is not None and await rt.ready()
        body = {"status": "ready" if ok else "not ready"}
        return JSONResponse(body, 200 if ok else 503, headers={"Cache-Control": "no-store"})

    app.add_api_route("/livez", livez, include_in_schema=False)
    app.add_api_route("/readyz", readyz, include_in_schema=False)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: :func:`run_http` stops it, and the process exits
    with the drain's status instead of uvicorn re-raising the signal (which killed it: 143)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def run_http(app: FastAPI, settings: CommonSettings, host: str, port: int) -> int:
    """Serve ``app`` (uvloop, httptools, our logging, traces if ``OTEL_*`` ask for them) until
    SIGTERM/SIGINT, then drain: 0 if it started and stopped cleanly, 1 if it never started."""
    shutdown = Shutdown(settings.shutdown_grace_seconds)
    app.state.shutdown = shutdown
    tracing.configure(settings.role)
    tracing.instrument_app(app)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="none",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds),
    )
    server = _Server(config)

    def stop() -> None:
        shutdown.request()
        server.should_exit = True

    async def serve() -> int:
        _on_signals(stop)
        await server.serve()
        return 0 if server.started else 1

    return uvloop.run(serve())


def run_worker(
    settings: CommonSettings,
    start: Callable[[Shutdown], contextlib.AbstractAsyncContextManager[object]],
) -> int:
    """Run ``start(shutdown)`` (a role's ``running``; traced if ``OTEL_*`` ask for it) until
    SIGTERM/SIGINT, then leave it (the drain); 0 when it stopped cleanly."""

    tracing.configure(settings.role)

    async def work() -> int:
        shutdown = Shutdown(settings.shutdown_grace_seconds)
        _on_signals(shutdown.request)
        async with start(shutdown):
            log.info("running")
            await shutdown.requested.wait()
            log.info("stopping", extra={"grace_seconds": shutdown.grace})
        return 0

    return uvloop.run(work())


def _on_signals(stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)


async def _beat(rt: Runtime, directory: Path) -> None:
    while True:
        _touch(health_file(directory, rt.role, "live"))
        if await rt.ready():
            _touch(health_file(directory, rt.role, "ready"))
        await asyncio.sleep(HEALTH_INTERVAL_SECONDS)


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.touch()


async def _flush(relay: OutboxRelay) -> None:
    try:
        async with asyncio.timeout(FINAL_STEP_SECONDS):
            published = await relay.flush()
    except Exception:
        log.warning("outbox not flushed at shutdown; another relay publishes it", exc_info=True)
        return
    if published:
        log.info("outbox flushed at shutdown", extra={"published": published})


async def _bounded(step: Callable[[], Awaitable[object]]) -> None:
    """A closing step that may not hold the exit up (a broker that went away): logged, skipped."""
    try:
        async with asyncio.timeout(CLOSE_SECONDS):
            await step()
    except Exception:
        log.warning("a shutdown step failed or took too long; going on", exc_info=True)


async def _finish(task: asyncio.Task[None], within: float) -> None:
    """Let ``task`` return by itself for ``within`` seconds, then cancel it."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), within)
    await _cancel([task])


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.error("background task had failed", exc_info=result)


async def close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), CLOSE_SECONDS)
    except TimeoutError:
        pool.terminate()
