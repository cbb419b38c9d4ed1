"""Transactional outbox: write events in the state change's transaction; a relay publishes them.

A change made in one statement (:func:`announcing`) hands its row to its own process's relay
(:class:`Handoff`), which publishes it at once: no NOTIFY and no SELECT. It marks such rows
published a little later (``mark_interval``), many in one statement, with the time each was
confirmed: a statement per payment and role saved.
Everything else, and a handed-off row its relay never published, is found by the relays' polls.
The relay wakes on LISTEN/NOTIFY (sent at commit by :func:`enqueue`) and polls as a fallback,
so a lost notification or a dropped LISTEN connection only delays publishing. Several relays may
run against one schema: each batch is claimed with ``FOR UPDATE SKIP LOCKED``. A crash between the
broker's confirm and the ``published_at`` update publishes the batch again, so consumers
deduplicate by ``eventId`` (see :mod:`shared.inbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from shared import tracing
from shared.db import Connection, connect
from shared.events import Event
from shared.messaging import Publisher
from shared.metrics import OUTBOX_PUBLISHED
from shared.tracing import TraceContext

log = logging.getLogger(__name__)


def notify_channel(schema: str) -> str:
    return f"outbox_{schema}"


# One round trip: the rows, in the given order, and the relay's wake-up call (sent at commit).
_ENQUEUE = (
    "WITH added AS (INSERT INTO outbox (event_id, routing_key, body, traceparent, tracestate)"
    " SELECT event_id, routing_key, body, $4::text, $5::text"
    "  FROM unnest($1::uuid[], $2::text[], $3::bytea[]) WITH ORDINALITY"
    "  AS e(event_id, routing_key, body, n) ORDER BY n RETURNING 1)"
    " SELECT pg_notify('outbox_' || current_schema(), '') FROM (SELECT count(*) FROM added) c"
)


async def enqueue(conn: Connection, *events: Event) -> None:
    """Add events to the outbox inside the caller's transaction, with the trace they are
    written in (:func:`shared.tracing.current`)."""
    await conn.execute(
        _ENQUEUE,
        [e.event_id for e in events],
        [e.routing_key for e in events],
        [e.to_bytes() for e in events],
        *tracing.current(),
    )


# How long a row handed to its writer's relay is left to that relay before pollers take it too
# (its process may have died): far above a publish's milliseconds, short for crash recovery.
HANDOFF_GRACE = "interval '5 seconds'"


def enqueue_from(source: str) -> str:
    """A common table expression, ``outbox_added``, that adds one event to the outbox per row of
    the CTE ``source`` and returns its ``id``, for :class:`Handoff`. The event is the named
    parameters of :attr:`Outgoing.parameters` (``:outbox_event_id`` and the like; see
    :mod:`shared.sql`). No NOTIFY: the writer hands the row to its own relay after the commit;
    pollers take it after :data:`HANDOFF_GRACE` if that relay never published it."""
    return (
        "outbox_added AS (INSERT INTO outbox (event_id, routing_key, body, traceparent,"
        " tracestate, not_before)"
        " SELECT :outbox_event_id::uuid, :outbox_routing_key::text, :outbox_body::bytea,"
        " :outbox_traceparent::text, :outbox_tracestate::text,"
        f" now() + {HANDOFF_GRACE} FROM {source} RETURNING id)"
    )


def announcing(change: str) -> str:
    """One statement that makes a state change and, only if it happened, enqueues its event.

    ``change`` is a data-modifying statement with ``RETURNING`` that returns at most one row;
    the event's parameters are as in :func:`enqueue_from`. The statement returns the outbox
    row's id (hand it to :meth:`Handoff.put` once it returned), or NULL if nothing changed. As a
    single statement it is atomic without ``BEGIN``/``COMMIT``: one round trip instead of four.
    """
    return f"WITH changed AS ({change}), {enqueue_from('changed')} SELECT id FROM outbox_added"


@dataclass(frozen=True)
class Outgoing:
    """An event as the outbox stores it, encoded once, with the trace it is written in: the
    parameters of :func:`enqueue_from`, then (with the row's id) what is handed to the relay."""

    event_id: uuid.UUID
    routing_key: str
    body: bytes
    trace: TraceContext = tracing.NO_CONTEXT

    @classmethod
    def of(cls, event: Event) -> Outgoing:
        return cls(event.event_id, event.routing_key, event.to_bytes(), tracing.current())

    @property
    def parameters(self) -> dict[str, object]:
        """The named parameters of :func:`enqueue_from` (run it with :mod:`shared.sql`)."""
        return {
            "outbox_event_id": self.event_id,
            "outbox_routing_key": self.routing_key,
            "outbox_body": self.body,
            "outbox_traceparent": self.trace[0],
            "outbox_tracestate": self.trace[1],
        }

    def committed(self, outbox_id: int) -> Committed:
        return Committed(outbox_id, self.event_id, self.routing_key, self.body, self.trace)


@dataclass(frozen=True)
class Committed:
    """An outbox row its writer has committed, as the writer knows it without reading it."""

    id: int
    event_id: uuid.UUID
    routing_key: str
    body: bytes
    trace: TraceContext = tracing.NO_CONTEXT


class Handoff:
    """Rows written by this process's one-statement changes (:func:`announcing`), for its own
    relay to publish at once: no NOTIFY, no SELECT, and no other relay woken for nothing."""

    def __init__(self) -> None:
        self._rows: list[Committed] = []
        self._wake: asyncio.Event | None = None

    def put(self, row: Committed) -> None:
        """Call only after the row's statement returned (committed)."""
        self._rows.append(row)
        if self._wake is not None:
            self._wake.set()

    def take(self) -> list[Committed]:
        rows, self._rows = self._rows, []
        return rows

    def attach(self, wake: asyncio.Event) -> None:
        self._wake = wake
        if self._rows:
            wake.set()


def _committed(row: asyncpg.Record) -> Committed:
    trace = (row["traceparent"], row["tracestate"])
    return Committed(row["id"], row["event_id"], row["routing_key"], row["body"], trace)


_MARK_PUBLISHED = "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])"
_MARK_PUBLISHED_AT = (
    "UPDATE outbox o SET published_at = p.at"
    " FROM unnest($1::bigint[], $2::timestamptz[]) AS p(id, at) WHERE o.id = p.id"
)


class OutboxRelay:
    """Publishes unpublished outbox rows in id order, a batch at a time, with publisher confirms."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        publisher: Publisher,
        *,
        dsn: str,
        schema: str,
        batch_size: int = 200,
        poll_interval: float = 1.0,
        publish_timeout: float = 30.0,
        handoff: Handoff | None = None,
        application_name: str | None = None,
        mark_interval: float = 0.2,
    ) -> None:
        self._pool = pool
        self._publisher = publisher
        self._dsn = dsn
        self._schema = schema
        self._application_name = application_name  # of the LISTEN connection
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        # A robust connection makes publish wait for the broker to come back; meanwhile the
        # batch's rows stay locked. Give up after a while and retry the batch from scratch.
        self._publish_timeout = publish_timeout
        self._wake = asyncio.Event()
        self._listener: asyncpg.Connection | None = None
        self._handoff = handoff or Handoff()
        self._handoff.attach(self._wake)
        self._poll_now = True
        self._last_poll = float("-inf")
        self._stopping = False
        # Handed-off rows published but not yet marked, with when the broker confirmed them.
        # Far inside the hand-off grace: pollers leave them alone meanwhile.
        self._mark_interval = mark_interval
        self._unmarked: list[tuple[int, datetime]] = []
        self._mark_due = float("inf")

    def stop(self) -> None:
        """Let :meth:`run` return after the round under way (a cancel could land between a
        publish and marking its rows, and leave them to be published again)."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Publish until stopped or cancelled; survives database and broker outages by retrying."""
        try:
            while not self._stopping:
                backlog = False
                try:
                    await self._ensure_listening()
                    await self.publish_handed_off()
                    await self.mark_published()
                    if self._poll_due():
                        self._poll_now = False  # a NOTIFY during the poll sets it again
                        self._last_poll = time.monotonic()
                        backlog = await self.publish_batch() >= self._batch_size
                except Exception:
                    log.exception("outbox relay failed; retrying")
                    self._poll_now = True
                if not backlog and not self._stopping:
                    await self._sleep_until_woken()
        finally:
            await self._stop_listening()

    async def publish_handed_off(self) -> int:
        """Publish the rows handed over since the last round; returns how many. Rows that fail
        to go out are dropped from memory: pollers publish them after their grace. Those that
        went out are marked by :meth:`mark_published`."""
        rows = self._handoff.take()
        if not rows:
            return 0
        try:
            await self._publish_all(rows)
        except Exception:
            log.warning("handed-off events left to the pollers", exc_info=True)
            return 0
        confirmed = datetime.now(UTC)
        if not self._unmarked:
            self._mark_due = time.monotonic() + self._mark_interval
        self._unmarked.extend((r.id, confirmed) for r in rows)
        OUTBOX_PUBLISHED.labels(self._schema).inc(len(rows))
        return len(rows)

    async def mark_published(self, *, now: bool = False) -> int:
        """Mark the published hand-offs once the first has waited ``mark_interval`` (or a batch
        is full, or ``now``); returns how many. Unmarked after a crash, they are published
        again by a poller after their grace, and consumers drop the copies."""
        due = now or len(self._unmarked) >= self._batch_size
        if not self._unmarked or not (due or time.monotonic() >= self._mark_due):
            return 0
        rows = self._unmarked
        # Should the statement fail, try again a poll interval on, not at once.
        self._mark_due = time.monotonic() + max(self._mark_interval, self._poll_interval)
        await self._pool.execute(_MARK_PUBLISHED_AT, [r[0] for r in rows], [r[1] for r in rows])
        self._unmarked, self._mark_due = [], float("inf")
        return len(rows)

    async def flush(self) -> int:
        """Publish what this process handed over and every row a poll finds, until none is
        left (the last round at shutdown, once :meth:`run` was cancelled); returns how many."""
        published = await self.publish_handed_off()
        await self.mark_published(now=True)
        while (batch := await self.publish_batch()) > 0:
            published += batch
            if batch < self._batch_size:
                break
        return published

    async def publish_batch(self) -> int:
        """Publish one batch; returns how many events it published."""
        async with self._pool.acquire() as conn, conn.transaction():
            found = await conn.fetch(
                "SELECT id, event_id, routing_key, body, traceparent, tracestate FROM outbox"
                " WHERE published_at IS NULL AND (not_before IS NULL OR not_before <= now())"
                " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch_size,
            )
            rows = [_committed(row) for row in found]
            if not rows:
                return 0
            await self._publish_all(rows)
            await conn.execute(_MARK_PUBLISHED, [r.id for r in rows])
        OUTBOX_PUBLISHED.labels(self._schema).inc(len(rows))
        return len(rows)

    async def _publish_all(self, rows: list[Committed]) -> None:
        """Publish concurrently (in order on the channel); each one confirmed, or raise."""
        async with asyncio.timeout(self._publish_timeout):
            await asyncio.gather(
                *(
                    self._publisher.publish(r.routing_key, r.body, str(r.event_id), r.trace)
                    for r in rows
                )
            )

    async def _sleep_until_woken(self) -> None:
        """Until a NOTIFY or a hand-off, or the next poll is due (a full interval after a
        failure)."""
        now = time.monotonic()
        until_poll = self._last_poll + self._poll_interval - now
        timeout = self._poll_interval if self._poll_now else max(until_poll, 0.0)
        timeout = min(timeout, max(self._mark_due - now, 0.0))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    def _on_notify(self, *_: Any) -> None:
        self._poll_now = True
        self._wake.set()

    def _poll_due(self) -> bool:
        """Poll when notified, when the last batch was full, or every ``poll_interval``; a
        hand-off alone wakes the relay without a poll (its rows need no SELECT)."""
        return self._poll_now or time.monotonic() - self._last_poll >= self._poll_interval

    async def _ensure_listening(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        await self._stop_listening()
        try:
            async with asyncio.timeout(max(self._poll_interval, 1.0)):
                self._listener = await connect(self._dsn, self._schema, self._application_name)
                await self._listener.add_listener(notify_channel(self._schema), self._on_notify)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await self._stop_listening()  # polling carries on; we try again next round

    async def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None and not listener.is_closed():
            with contextlib.suppress(Exception):
                await listener.close()
