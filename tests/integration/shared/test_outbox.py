"""The outbox: enqueue in the transaction, a relay publishes with confirms, once, eventually."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import cast

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractChannel, AbstractExchange
from opentelemetry.sdk.trace import TracerProvider

from shared import messaging, outbox, sql, tracing
from shared.events import OrderPlaced, decode
from shared.messaging import Publisher
from shared.outbox import OutboxRelay
from shared.topology import APPROVAL_ORDER_INTENTS
from tests.infra import Broker
from tests.integration.shared.helpers import (
    SCHEMA,
    TcpProxy,
    drain,
    eventually,
    order_placed,
    ready_count,
    take,
)

RelayFactory = Callable[..., OutboxRelay]


@pytest.fixture
async def relays() -> AsyncIterator[list[asyncio.Task[None]]]:
    """Running relay tasks, cancelled at the end of the test."""
    tasks: list[asyncio.Task[None]] = []
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def start(relay: OutboxRelay, tasks: list[asyncio.Task[None]]) -> None:
    tasks.append(asyncio.create_task(relay.run()))


def relay_for(
    pool: asyncpg.Pool,
    publisher: Publisher,
    dsn: str,
    handoff: outbox.Handoff | None = None,
    **options: float,
) -> OutboxRelay:
    options.setdefault("poll_interval", 0.1)
    return OutboxRelay(
        pool,
        publisher,
        dsn=dsn,
        schema=SCHEMA,
        handoff=handoff,
        **options,  # type: ignore[arg-type]
    )


async def start_asleep(
    relay: OutboxRelay, tasks: list[asyncio.Task[None]], pool: asyncpg.Pool
) -> None:
    """Start a relay with a long poll interval and return once it sleeps after its first
    (empty) poll: only a NOTIFY or a hand-off wakes it now."""
    start(relay, tasks)
    await eventually(lambda: _listening(pool))
    await asyncio.sleep(0.1)


async def enqueue_committed(pool: asyncpg.Pool, count: int = 1) -> list[uuid.UUID]:
    events = [order_placed() for _ in range(count)]
    async with pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(conn, *events)
    return [e.event_id for e in events]


async def unpublished(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    return count


def queue_name(broker: Broker) -> str:
    return broker.topology.queue(APPROVAL_ORDER_INTENTS)


async def test_a_committed_event_is_published_as_a_persistent_message_with_its_id(
    pool: asyncpg.Pool,
    database_url: str,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
    relays: list[asyncio.Task[None]],
) -> None:
    event = order_placed()
    async with pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(conn, event)
    start(relay_for(pool, Publisher(declared), database_url), relays)
    [message] = await take(channel, queue_name(broker), 1)
    assert message.message_id == str(event.event_id)
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.routing_key == event.routing_key
    assert decode(message.body) == event
    await eventually(lambda: _equals(unpublished(pool), 0))


TRACER = TracerProvider().get_tracer("test")


async def test_an_event_carries_the_trace_context_it_was_written_in_to_its_message(
    pool: asyncpg.Pool,
    database_url: str,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
    relays: list[asyncio.Task[None]],
) -> None:
    with TRACER.start_as_current_span("writer") as span:
        [event_id] = await enqueue_committed(pool)
    start(relay_for(pool, Publisher(declared), database_url), relays)

    [message] = await take(channel, queue_name(broker), 1)

    assert message.message_id == str(event_id)
    traceparent = str((message.headers or {})["traceparent"])
    assert traceparent.split("-")[1] == f"{span.get_span_context().trace_id:032x}"


async def test_an_announced_event_carries_its_trace_context_through_the_hand_off(
    pool: asyncpg.Pool,
    database_url: str,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
    relays: list[asyncio.Task[None]],
) -> None:
    handoff = outbox.Handoff()
    relay = relay_for(pool, Publisher(declared), database_url, handoff, poll_interval=60)
    await start_asleep(relay, relays, pool)
    with TRACER.start_as_current_span("writer") as span:
        outbox_id, event = await mark_once(pool, str(uuid.uuid4()))
        outgoing = outbox.Outgoing.of(event)
    assert outbox_id is not None
    handoff.put(outgoing.committed(outbox_id))

    [message] = await take(channel, queue_name(broker), 1, within=3)

    traceparent = str((message.headers or {})["traceparent"])
    assert traceparent.split("-")[1] == f"{span.get_span_context().trace_id:032x}"
    stored = await pool.fetchval("SELECT traceparent FROM outbox WHERE id = $1", outbox_id)
    assert stored == traceparent


async def test_an_event_of_a_rolled_back_transaction_is_never_published(
    pool: asyncpg.Pool,
    database_url: str,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
    relays: list[asyncio.Task[None]],
) -> None:
    async def failed_change() -> None:
        async with pool.acquire() as conn, conn.transaction():
            await outbox.enqueue(conn, order_placed())
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError):
        await failed_change()
    [committed] = await enqueue_committed(pool)
    start(relay_for(pool, Publisher(declared), database_url), relays)
    [message] = await take(channel, queue_name(broker), 1)
    await asyncio.sleep(0.3)  # a few more polls
    assert message.message_id == str(committed)
    assert await ready_count(channel, queue_name(broker)) == 0
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_the_relay_wakes_on_notify_long_before_its_poll_interval(
    pool: asyncpg.Pool,
    database_url: str,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
    relays: list[asyncio.Task[None]],
) -> None:
    await start_asleep(
        relay_for(pool, Publisher(declared), database_url, poll_interval=60), relays, pool
    )
    await enqueue_committed(pool)
    [_message] = await take(channel, queue_name(broker), 1, within=3)


async def test_without_a_listener_the_relay_still_publishes_by_polling(
    pool: asyncpg.Pool,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
    relays: list[asyncio.Task[None]],
) -> None:
    unreachable = "postgresql://postgres@127.0.0.1:1/nowhere"
    start(relay_for(pool, Publisher(declared), unreachable, poll_interval=0.2), relays)
    await asyncio.sleep(0.3)
    ids = await enqueue_committed(pool, 3)
    messages = await take(channel, queue_name(broker), 3, within=3)
    assert [m.message_id for m in messages] == [str(i) for i in ids]


async def test_two_relays_publish_each_event_once(
    pool: asyncpg.Pool,
    database_url: str,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
    relays: list[asyncio.Task[None]],
) -> None:
    for _ in range(2):
        start(relay_for(pool, Publisher(declared), database_url, batch_size=5), relays)
    ids: list[uuid.UUID] = []
    for _ in range(20):
        ids += await enqueue_committed(pool, 3)
    messages = await take(channel, queue_name(broker), len(ids), within=10)
    await asyncio.sleep(0.3)  # give a duplicate the time to show up
    assert sorted(m.message_id or "" for m in messages) == sorted(str(i) for i in ids)
    assert await ready_count(channel, queue_name(broker)) == 0


class FailingPublisher(Publisher):
    """Fails while ``failing`` is set, as a publisher does while the broker is unreachable."""

    def __init__(self, exchange: AbstractExchange) -> None:
        super().__init__(exchange)
        self.failing = True
        self.attempts = 0

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        message_id: str,
        trace: tracing.TraceContext = tracing.NO_CONTEXT,
    ) -> None:
        self.attempts += 1
        if self.failing:
            raise ConnectionError("broker unreachable")
        await super().publish(routing_key, body, message_id, trace)


async def test_events_wait_in_the_outbox_while_publishing_fails_and_go_out_after(
    pool: asyncpg.Pool,
    database_url: str,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
    relays: list[asyncio.Task[None]],
) -> None:
    publisher = FailingPublisher(declared)
    start(relay_for(pool, publisher, database_url), relays)
    ids = await enqueue_committed(pool, 2)
    await eventually(lambda: _true(publisher.attempts >= 4))
    assert await unpublished(pool) == 2
    publisher.failing = False
    messages = await take(channel, queue_name(broker), 2)
    assert [m.message_id for m in messages] == [str(i) for i in ids]
    await eventually(lambda: _equals(unpublished(pool), 0))


class StuckPublisher(Publisher):
    """Its first publish never gets an answer, as when a confirm is lost with the connection."""

    def __init__(self, exchange: AbstractExchange) -> None:
        super().__init__(exchange)
        self.calls = 0

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        message_id: str,
        trace: tracing.TraceContext = tracing.NO_CONTEXT,
    ) -> None:
        self.calls += 1
        if self.calls == 1:
            await asyncio.Event().wait()
        await super().publish(routing_key, body, message_id, trace)


async def test_a_publish_that_never_confirms_is_abandoned_and_retried(
    pool: asyncpg.Pool,
    database_url: str,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
    relays: list[asyncio.Task[None]],
) -> None:
    publisher = StuckPublisher(declared)
    start(relay_for(pool, publisher, database_url, publish_timeout=0.3), relays)
    [event_id] = await enqueue_committed(pool)
    await asyncio.sleep(0.1)
    assert await unpublished(pool) == 1
    [message] = await take(channel, queue_name(broker), 1, within=3)
    assert message.message_id == str(event_id)
    await eventually(lambda: _equals(unpublished(pool), 0))


async def test_a_nacked_publish_leaves_the_event_unpublished(
    pool: asyncpg.Pool,
    database_url: str,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
    relays: list[asyncio.Task[None]],
) -> None:
    # A full queue that rejects publishes makes the broker nack: a real "not confirmed".
    full = await channel.declare_queue(
        f"{broker.prefix}full",
        arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
    )
    try:
        await full.bind(declared, routing_key="order.*")
        start(relay_for(pool, Publisher(declared), database_url), relays)
        [event_id] = await enqueue_committed(pool)
        await asyncio.sleep(0.5)
        assert await unpublished(pool) == 1
    finally:
        await full.delete(if_unused=False, if_empty=False)
    await eventually(lambda: _equals(unpublished(pool), 0))
    # The other queue took a copy at every nacked attempt: at least once, never zero times.
    copies = await drain(channel, queue_name(broker))
    assert len(copies) >= 2
    assert {m.message_id for m in copies} == {str(event_id)}


async def test_the_relay_survives_a_broker_outage_without_losing_events(
    pool: asyncpg.Pool,
    database_url: str,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
    relays: list[asyncio.Task[None]],
) -> None:
    proxy = TcpProxy(broker.url)
    await proxy.start()
    connection = await messaging.connect(proxy.url)
    try:
        exchange = await messaging.declare_exchange(await connection.channel(), broker.topology)
        relay = relay_for(pool, Publisher(exchange), database_url, publish_timeout=0.5)
        start(relay, relays)
        [before] = await enqueue_committed(pool)
        [message] = await take(channel, queue_name(broker), 1)
        assert message.message_id == str(before)

        await proxy.cut()
        during = await enqueue_committed(pool, 2)
        await asyncio.sleep(0.8)  # at least one publish attempt fails or times out
        assert await unpublished(pool) == 2
        await proxy.restore()

        messages = await take(channel, queue_name(broker), 2, within=10)
        assert sorted(m.message_id or "" for m in messages) == sorted(str(i) for i in during)
        await eventually(lambda: _equals(unpublished(pool), 0))
        assert proxy.connections >= 2  # it did reconnect
    finally:
        await connection.close()
        await proxy.close()


async def _listening(pool: asyncpg.Pool) -> bool:
    count = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = $1",
        f'LISTEN "{outbox.notify_channel(SCHEMA)}"',
    )
    return bool(count)


async def _equals(value: object, expected: int) -> bool:
    assert asyncio.iscoroutine(value)
    return bool(await value == expected)


async def _true(value: bool) -> bool:
    await asyncio.sleep(0)
    return value


_MARK_ONCE = outbox.announcing(
    "INSERT INTO announced_marks (mark) VALUES (:mark) ON CONFLICT DO NOTHING RETURNING 1"
)


async def mark_once(pool: asyncpg.Pool, mark: str) -> tuple[int | None, OrderPlaced]:
    """A one-statement change: (its event's outbox id, or None if nothing changed; the event)."""
    await pool.execute("CREATE TABLE IF NOT EXISTS announced_marks (mark text PRIMARY KEY)")
    event = order_placed()
    outbox_id: int | None = await sql.fetchval(
        pool, _MARK_ONCE, mark=mark, **outbox.Outgoing.of(event).parameters
    )
    return outbox_id, event


async def hand_off_a_change(pool: asyncpg.Pool, handoff: outbox.Handoff) -> OrderPlaced:
    """A one-statement change whose event is handed to the relay, as its writer does."""
    outbox_id, event = await mark_once(pool, str(uuid.uuid4()))
    assert outbox_id is not None
    handoff.put(outbox.Outgoing.of(event).committed(outbox_id))
    return event


async def test_an_announced_change_that_happens_enqueues_its_event_in_the_same_statement(
    pool: asyncpg.Pool,
) -> None:
    outbox_id, event = await mark_once(pool, str(uuid.uuid4()))
    assert outbox_id is not None
    assert await pool.fetchval("SELECT event_id FROM outbox WHERE id = $1", outbox_id) == (
        event.event_id
    )


async def test_an_announced_change_that_does_not_happen_enqueues_nothing(
    pool: asyncpg.Pool,
) -> None:
    mark = str(uuid.uuid4())
    await mark_once(pool, mark)
    outbox_id, event = await mark_once(pool, mark)
    assert outbox_id is None
    assert (
        await pool.fetchval("SELECT count(*) FROM outbox WHERE event_id = $1", event.event_id) == 0
    )


async def test_a_handed_off_event_is_published_by_its_relay_at_once_and_marked(
    pool: asyncpg.Pool,
    database_url: str,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
    relays: list[asyncio.Task[None]],
) -> None:
    handoff = outbox.Handoff()
    relay = relay_for(pool, Publisher(declared), database_url, handoff, poll_interval=60)
    await start_asleep(relay, relays, pool)
    event = await hand_off_a_change(pool, handoff)

    [message] = await take(channel, queue_name(broker), 1, within=3)

    assert message.message_id == str(event.event_id)
    await eventually(lambda: _equals(unpublished(pool), 0))


async def test_handed_off_rows_are_marked_together_with_when_each_was_confirmed(
    pool: asyncpg.Pool,
    database_url: str,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
    relays: list[asyncio.Task[None]],
) -> None:
    handoff = outbox.Handoff()
    relay = relay_for(
        pool, Publisher(declared), database_url, handoff, poll_interval=60, mark_interval=60
    )
    await start_asleep(relay, relays, pool)
    before = await pool.fetchval("SELECT clock_timestamp()")
    for _ in range(3):
        await hand_off_a_change(pool, handoff)
        await take(channel, queue_name(broker), 1, within=3)
    assert await unpublished(pool) == 3  # published, not yet marked: the interval runs

    relay.stop()
    await relays.pop()
    await relay.flush()

    published = await pool.fetch("SELECT published_at FROM outbox ORDER BY id")
    assert await unpublished(pool) == 0
    assert all(before <= row["published_at"] <= datetime.now(UTC) for row in published)


async def test_a_full_batch_of_handed_off_rows_is_marked_without_waiting_for_the_interval(
    pool: asyncpg.Pool,
    database_url: str,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
    relays: list[asyncio.Task[None]],
) -> None:
    handoff = outbox.Handoff()
    relay = relay_for(
        pool,
        Publisher(declared),
        database_url,
        handoff,
        poll_interval=60,
        mark_interval=60,
        batch_size=2,
    )
    await start_asleep(relay, relays, pool)
    for _ in range(2):
        await hand_off_a_change(pool, handoff)
        await take(channel, queue_name(broker), 1, within=3)

    await eventually(lambda: _equals(unpublished(pool), 0))


class FailingOnce:
    """A pool whose first ``execute`` fails as a lost connection would; the rest go through."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.failed = False

    async def execute(self, query: str, *args: object) -> str:
        if not self.failed:
            self.failed = True
            raise ConnectionResetError("the database went away")
        return await self._pool.execute(query, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._pool, name)


async def test_a_failed_mark_is_tried_again_a_poll_interval_later_not_at_once(
    pool: asyncpg.Pool, database_url: str, declared: AbstractExchange
) -> None:
    handoff = outbox.Handoff()
    failing = FailingOnce(pool)
    relay = relay_for(
        cast(asyncpg.Pool, failing),
        Publisher(declared),
        database_url,
        handoff,
        poll_interval=2,
        mark_interval=0,
    )
    await hand_off_a_change(pool, handoff)
    assert await relay.publish_handed_off() == 1

    with pytest.raises(ConnectionResetError):
        await relay.mark_published()
    assert await relay.mark_published() == 0  # not again at once: the database may be down
    assert await unpublished(pool) == 1

    await asyncio.sleep(2.1)
    assert await relay.mark_published() == 1
    assert await unpublished(pool) == 0


async def test_a_hand_off_wakes_the_relay_without_a_poll(
    pool: asyncpg.Pool,
    database_url: str,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
    relays: list[asyncio.Task[None]],
) -> None:
    handoff = outbox.Handoff()
    relay = relay_for(pool, Publisher(declared), database_url, handoff, poll_interval=60)
    await start_asleep(relay, relays, pool)
    unannounced = order_placed()  # committed without a NOTIFY: only a poll would find it
    await pool.execute(
        "INSERT INTO outbox (event_id, routing_key, body) VALUES ($1, $2, $3)",
        unannounced.event_id,
        unannounced.routing_key,
        unannounced.to_bytes(),
    )
    event = await hand_off_a_change(pool, handoff)

    messages = await take(channel, queue_name(broker), 1, within=3)
    await asyncio.sleep(0.3)

    assert [m.message_id for m in messages] == [str(event.event_id)]
    assert await ready_count(channel, queue_name(broker)) == 0
    assert await unpublished(pool) == 1


async def test_pollers_leave_a_handed_off_row_to_its_relay_until_the_grace_is_over(
    pool: asyncpg.Pool,
    database_url: str,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
    relays: list[asyncio.Task[None]],
) -> None:
    # Its writer died before handing it over: no relay has it in memory.
    outbox_id, event = await mark_once(pool, str(uuid.uuid4()))
    start(relay_for(pool, Publisher(declared), database_url, poll_interval=0.1), relays)
    await asyncio.sleep(0.5)
    assert await unpublished(pool) == 1
    await pool.execute("UPDATE outbox SET not_before = now() WHERE id = $1", outbox_id)

    [message] = await take(channel, queue_name(broker), 1, within=3)

    assert message.message_id == str(event.event_id)
