"""Prometheus metrics: every process serves its default registry on an internal port.

:class:`shared.runner.Runtime` serves ``/metrics`` on ``settings.metrics_address()`` (each role
its own default port, see :data:`DEFAULT_PORTS`; ``METRICS_PORT=0`` turns it off) and samples
the gauges that come from the database or the broker in one background loop (:class:`Sampler`),
each probe bounded by :data:`PROBE_SECONDS`, never on a request's or a message's path.

Services define their own metric objects in their own ``metrics.py``; the plumbing every role
shares (HTTP, outbox, inbox, consumers, queues) is declared here. Module-level metric objects
are declarations, not connections: nothing is served until :func:`serve` is called. Labels are
bounded sets (route templates, queue names, schemas, states, PG codes): never an order id or a
payment key.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:  # settings import this module: no web framework or driver for a CLI's sake
    import asyncpg
    from aio_pika.abc import AbstractRobustConnection
    from fastapi import FastAPI

log = logging.getLogger(__name__)

# One port per role on a host; approval workers add their process number (METRICS_PORT_OFFSET).
DEFAULT_PORTS = {"order": 9101, "checkout": 9102, "ops": 9103, "sandbox": 9109, "approval": 9110}
SAMPLE_SECONDS = 5.0
PROBE_SECONDS = 2.0
HTTP_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LOOP_LAG_PROBE_SECONDS = 0.1
PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

# Everything a process does waits behind a busy event loop: these say how long, and how much of
# it was the garbage collector's.
EVENT_LOOP_LAG = Histogram(
    "event_loop_lag_seconds",
    f"How late the event loop ran a timer due every {LOOP_LAG_PROBE_SECONDS} s: the time every"
    " request and message in the process waited behind other work (code, garbage collection, or"
    " no free core).",
    buckets=PAUSE_BUCKETS,
)
GC_PAUSE = Histogram(
    "python_gc_pause_seconds",
    "How long each collection of the garbage collector stopped the process, by generation.",
    ["generation"],
    buckets=PAUSE_BUCKETS,
)

OUTBOX_PUBLISHED = Counter(
    "outbox_published_total", "Events the outbox relay published, by schema.", ["schema"]
)
OUTBOX_BACKLOG = Gauge(
    "outbox_backlog", "Outbox rows not yet published, by schema (sampled).", ["schema"]
)
OUTBOX_OLDEST_SECONDS = Gauge(
    "outbox_oldest_unpublished_seconds",
    "Age of the oldest unpublished outbox row, by schema (0 when none; sampled).",
    ["schema"],
)
INBOX_DUPLICATES = Counter(
    "inbox_duplicates_dropped_total",
    "Deliveries an inbox recognised as already handled (redeliveries, replays), by consumer.",
    ["consumer"],
)
BATCH_SIZE = Histogram(
    "consumer_batch_size",
    "Deliveries handled together in one batch (shared.batching), by batcher: 1 when the queue"
    " is quiet, more under load.",
    ["batcher"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
MESSAGES_HANDLED = Counter(
    "consumer_messages_total",
    "Deliveries a consumer settled, by queue and outcome (acked, dead_lettered, requeued, "
    "handed_back).",
    ["queue", "outcome"],
)
QUEUE_MESSAGES = Gauge(
    "queue_messages",
    "Messages ready in a queue this role consumes (its lag), sampled from the broker.",
    ["queue"],
)
DEAD_LETTER_QUEUE_MESSAGES = Gauge(
    "dead_letter_queue_messages",
    "Messages waiting in a dead-letter queue for a person (make dead-letters), by the queue "
    "they came from; sampled from the broker.",
    ["queue"],
)


def serve(port: int, host: str = "127.0.0.1") -> Callable[[], None]:
    """Expose ``/metrics`` on ``host:port`` from a daemon thread; returns what stops it. A port
    already taken fails the start, saying which setting moves it."""
    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as exc:
        raise RuntimeError(
            f"cannot serve metrics on {host}:{port} ({exc}): set METRICS_PORT (0 turns it off)"
        ) from exc
    log.info("metrics served", extra={"host": host, "port": port})

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


async def watch_loop_lag(every: float = LOOP_LAG_PROBE_SECONDS) -> None:
    """Observe :data:`EVENT_LOOP_LAG` every ``every`` seconds, until cancelled."""
    while True:
        # Not the loop's own clock: uvloop's counts whole milliseconds.
        due = time.perf_counter() + every
        await asyncio.sleep(every)
        EVENT_LOOP_LAG.observe(max(time.perf_counter() - due, 0.0))


def time_gc_pauses() -> None:
    """Observe :data:`GC_PAUSE` for every collection in this process from now on (once)."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


_gc_started: list[float] = []


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[:] = [time.perf_counter()]
    elif _gc_started:
        GC_PAUSE.labels(str(info["generation"])).observe(time.perf_counter() - _gc_started.pop())


def instrument_http(app: FastAPI) -> None:
    """Requests, errors (status class) and latency per route template and method; health
    probes left out. The route template, never the raw path, keeps the labels bounded."""
    from prometheus_fastapi_instrumentator import Instrumentator

    instrumentator = Instrumentator(
        excluded_handlers=["/livez", "/readyz", "/healthz"],
        should_group_untemplated=True,
    )
    for instrumentation in _http_instrumentations():
        instrumentator.add(instrumentation)
    instrumentator.instrument(app)


@functools.cache
def _http_instrumentations() -> tuple[Callable[[Any], None] | None, ...]:
    """Made once per process: each makes its metric in the default registry, and made again
    for a second app (tests build several) it would find the name taken and count nothing."""
    from prometheus_fastapi_instrumentator import metrics as http_metrics

    return (http_metrics.requests(), http_metrics.latency(buckets=HTTP_LATENCY_BUCKETS))


Probe = Callable[[], Awaitable[None]]


class Sampler:
    """Runs every probe each :data:`SAMPLE_SECONDS`, each within :data:`PROBE_SECONDS`: a slow
    database or broker makes a gauge stale, never a request or a message wait."""

    def __init__(self, every: float = SAMPLE_SECONDS, within: float = PROBE_SECONDS) -> None:
        self._probes: list[tuple[str, Probe]] = []
        self._every = every
        self._within = within

    def add(self, name: str, probe: Probe) -> None:
        self._probes.append((name, probe))

    async def run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self._every)

    async def sample(self) -> None:
        for name, probe in self._probes:
            try:
                async with asyncio.timeout(self._within):
                    await probe()
            except Exception:  # a gauge goes stale; the next round tries again
                log.warning("metrics probe failed", extra={"probe": name}, exc_info=True)


_OUTBOX_STATE = (
    "SELECT count(*) AS backlog,"
    " coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest"
    " FROM outbox WHERE published_at IS NULL"
)


def outbox_probe(pool: asyncpg.Pool, schema: str) -> Probe:
    """The backlog and the oldest unpublished row's age of ``schema``'s outbox (a partial index
    holds only the unpublished rows)."""

    async def probe() -> None:
        row = await pool.fetchrow(_OUTBOX_STATE)
        assert row is not None
        OUTBOX_BACKLOG.labels(schema).set(row["backlog"])
        OUTBOX_OLDEST_SECONDS.labels(schema).set(row["oldest"])

    return probe


@dataclass(frozen=True)
class WatchedQueue:
    """A queue this role consumes, and its dead-letter queue; ``label`` names both."""

    label: str
    queue: str
    dead_letter_queue: str


def queue_probe(connection: AbstractRobustConnection, watched: WatchedQueue) -> Probe:
    """Depth of a consumed queue and of its dead-letter queue (passive declares: a role's own
    broker user may do that without any permission), on a channel of the probe's own: a queue
    gone missing closes only that channel."""

    async def probe() -> None:
        async with connection.channel() as channel:
            queue = await channel.declare_queue(watched.queue, passive=True)
            dead = await channel.declare_queue(watched.dead_letter_queue, passive=True)
        QUEUE_MESSAGES.labels(watched.label).set(queue.declaration_result.message_count or 0)
        count = dead.declaration_result.message_count or 0
        DEAD_LETTER_QUEUE_MESSAGES.labels(watched.label).set(count)

    return probe
