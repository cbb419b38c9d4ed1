"""The plumbing's metrics against real PostgreSQL and RabbitMQ: inbox duplicates, dead letters,
the outbox backlog and queue depths as the sampler's probes read them, and the runtime serving
/metrics on its port only while it runs."""

from __future__ import annotations

import socket
import uuid

import asyncpg
import httpx
import pytest
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from deploy.stack import free_port
from shared import inbox, messaging, metrics, outbox, runner
from shared.db import Connection
from shared.events import Event
from shared.messaging import PermanentFailure
from shared.settings import CommonSettings
from shared.topology import APPROVAL_ORDER_INTENTS
from tests.infra import Broker
from tests.integration.shared.helpers import SCHEMA, eventually, order_placed, take


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_an_inbox_duplicate_is_counted_for_its_consumer(pool: asyncpg.Pool) -> None:
    consumer = f"test.{uuid.uuid4().hex[:8]}"
    event = order_placed()

    async def nothing(conn: Connection) -> None:
        return None

    await inbox.apply_once(pool, consumer, event, nothing)
    assert sample("inbox_duplicates_dropped_total", consumer=consumer) == 0
    await inbox.apply_once(pool, consumer, event, nothing)
    assert sample("inbox_duplicates_dropped_total", consumer=consumer) == 1


async def test_a_dead_lettered_message_is_counted_for_its_queue(
    connection: AbstractRobustConnection,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
) -> None:
    queue = APPROVAL_ORDER_INTENTS.name
    before = sample("consumer_messages_total", queue=queue, outcome="dead_lettered")

    async def handler(event: Event) -> None:
        raise PermanentFailure("never payable")

    channels = await messaging.start_consumers(
        connection, broker.topology, [(queue, handler)], prefetch=4
    )
    await messaging.Publisher(declared).publish_event(order_placed())
    await take(channel, broker.topology.dead_letter_queue(APPROVAL_ORDER_INTENTS), 1)
    for each in channels:
        await each.close()
    assert sample("consumer_messages_total", queue=queue, outcome="dead_lettered") == before + 1


async def test_the_outbox_probe_reports_the_backlog_and_the_oldest_unpublished_row(
    pool: asyncpg.Pool,
) -> None:
    probe = metrics.outbox_probe(pool, SCHEMA)
    await probe()
    assert sample("outbox_backlog", schema=SCHEMA) == 0
    async with pool.acquire() as conn:
        await outbox.enqueue(conn, order_placed(), order_placed())
        await conn.execute("UPDATE outbox SET created_at = now() - interval '90 seconds'")
    await probe()
    assert sample("outbox_backlog", schema=SCHEMA) == 2
    assert sample("outbox_oldest_unpublished_seconds", schema=SCHEMA) >= 90


async def test_the_queue_probe_reports_waiting_messages_and_dead_letters(
    connection: AbstractRobustConnection, declared: AbstractExchange, broker: Broker
) -> None:
    subscription = APPROVAL_ORDER_INTENTS
    topology = broker.topology
    watched = metrics.WatchedQueue(
        f"test.{uuid.uuid4().hex[:8]}",
        topology.queue(subscription),
        topology.dead_letter_queue(subscription),
    )
    probe = metrics.queue_probe(connection, watched)
    for _ in range(3):
        await messaging.Publisher(declared).publish_event(order_placed())

    async def three_waiting() -> bool:
        await probe()
        return sample("queue_messages", queue=watched.label) == 3

    await eventually(three_waiting)
    assert sample("dead_letter_queue_messages", queue=watched.label) == 0


async def test_a_queue_probe_of_a_missing_queue_fails_without_breaking_the_connection(
    connection: AbstractRobustConnection, declared: AbstractExchange, broker: Broker
) -> None:
    missing = metrics.WatchedQueue("test.missing", "no-such-queue", "no-such-queue.dlq")
    with pytest.raises(Exception, match="no-such-queue"):
        await metrics.queue_probe(connection, missing)()
    channel = await connection.channel()
    await channel.declare_queue(broker.topology.queue(APPROVAL_ORDER_INTENTS), passive=True)
    await channel.close()


async def test_the_runtime_serves_metrics_on_its_port_until_it_is_left() -> None:
    port = free_port()
    settings = CommonSettings(metrics_port=port)
    url = f"http://127.0.0.1:{port}/metrics"
    async with httpx.AsyncClient() as client:
        async with runner.runtime(settings, "test"):
            response = await client.get(url)
        families = {f.name for f in text_string_to_metric_families(response.text)}
        assert "outbox_published" in families
        with pytest.raises(httpx.ConnectError):
            await client.get(url, timeout=2)


def test_metrics_port_zero_serves_nothing_and_unset_takes_the_roles_default() -> None:
    assert CommonSettings(metrics_port=0).metrics_address() is None

    class Order(CommonSettings):
        role = "order"

    assert Order(metrics_port=None).metrics_address() == ("127.0.0.1", 9101)
    assert Order(metrics_port=None, metrics_port_offset=2).metrics_address() == (
        "127.0.0.1",
        9103,
    )


async def test_a_taken_metrics_port_fails_the_start_naming_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = CommonSettings(metrics_port=taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="METRICS_PORT"):
            async with runner.runtime(settings, "test"):
                pass
