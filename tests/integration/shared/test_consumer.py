"""The consumer: ack on success, dead-letter with a reason, retry up to the delivery limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from shared import messaging
from shared.events import Event, OrderPlaced
from shared.messaging import PermanentFailure, Subscription, Topology
from shared.topology import APPROVAL_ORDER_INTENTS
from tests.infra import Broker
from tests.integration.shared.helpers import eventually, order_placed, ready_count, take

Handled = list[Event]


@pytest.fixture
async def flaky_topology(broker: Broker, channel: AbstractChannel) -> AsyncIterator[Topology]:
    """One subscription with a delivery limit of 2, on the test's exchange."""
    subscription = Subscription("test.flaky", (OrderPlaced,), delivery_limit=2)
    topology = Topology(broker.exchange, broker.prefix, (subscription,))
    await messaging.declare_all(channel, topology)
    try:
        yield topology
    finally:
        await channel.queue_delete(topology.queue(subscription))
        await channel.queue_delete(topology.dead_letter_queue(subscription))


async def consume(
    connection: AbstractRobustConnection,
    topology: Topology,
    name: str,
    handler: messaging.Handler,
) -> list[AbstractChannel]:
    return await messaging.start_consumers(connection, topology, [(name, handler)], prefetch=4)


async def close(channels: list[AbstractChannel]) -> None:
    for channel in channels:
        await channel.close()


async def test_a_handled_message_is_acked(
    connection: AbstractRobustConnection,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
) -> None:
    handled: Handled = []

    async def handler(event: Event) -> None:
        handled.append(event)

    channels = await consume(connection, broker.topology, APPROVAL_ORDER_INTENTS.name, handler)
    event = order_placed()
    await messaging.Publisher(declared).publish_event(event)
    await eventually(lambda: _true(handled))
    await close(channels)  # an unacked message would now be ready again
    assert handled == [event]
    queue = broker.topology.queue(APPROVAL_ORDER_INTENTS)
    assert await ready_count(channel, queue) == 0
    assert (
        await ready_count(channel, broker.topology.dead_letter_queue(APPROVAL_ORDER_INTENTS)) == 0
    )


async def test_a_permanent_failure_is_dead_lettered_with_its_reason_and_routing_key(
    connection: AbstractRobustConnection,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
) -> None:
    async def handler(event: Event) -> None:
        raise PermanentFailure("amount does not match the order")

    channels = await consume(connection, broker.topology, APPROVAL_ORDER_INTENTS.name, handler)
    event = order_placed()
    await messaging.Publisher(declared).publish_event(event)
    [dead] = await take(channel, broker.topology.dead_letter_queue(APPROVAL_ORDER_INTENTS), 1)
    await close(channels)
    assert dead.message_id == str(event.event_id)
    assert dead.body == event.to_bytes()
    assert dead.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    headers = dead.headers
    assert headers[messaging.DEAD_LETTER_REASON] == (
        "PermanentFailure: amount does not match the order"
    )
    assert headers[messaging.ORIGINAL_ROUTING_KEY] == OrderPlaced.routing_key
    assert await ready_count(channel, broker.topology.queue(APPROVAL_ORDER_INTENTS)) == 0


async def test_an_undecodable_body_is_dead_lettered_without_reaching_the_handler(
    connection: AbstractRobustConnection,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
) -> None:
    handled: Handled = []

    async def handler(event: Event) -> None:
        handled.append(event)

    channels = await consume(connection, broker.topology, APPROVAL_ORDER_INTENTS.name, handler)
    await messaging.Publisher(declared).publish(OrderPlaced.routing_key, b"{oops", "m-1")
    [dead] = await take(channel, broker.topology.dead_letter_queue(APPROVAL_ORDER_INTENTS), 1)
    await close(channels)
    assert handled == []
    assert dead.message_id == "m-1"
    assert str(dead.headers[messaging.DEAD_LETTER_REASON]).startswith("UndecodableEvent: not JSON")
    assert dead.headers[messaging.ORIGINAL_ROUTING_KEY] == OrderPlaced.routing_key


async def test_a_handler_that_keeps_failing_for_a_bug_is_retried_then_dead_lettered(
    connection: AbstractRobustConnection,
    channel: AbstractChannel,
    declared: AbstractExchange,
    flaky_topology: Topology,
) -> None:
    deliveries: list[Any] = []
    [subscription] = flaky_topology.subscriptions

    async def handler(event: Event) -> None:
        deliveries.append(event)
        raise KeyError("a bug")

    channels = await consume(connection, flaky_topology, subscription.name, handler)
    await messaging.Publisher(declared).publish_event(order_placed())
    [dead] = await take(channel, flaky_topology.dead_letter_queue(subscription), 1, within=10)
    await close(channels)
    # The delivery limit counts redeliveries: 1 + limit attempts in all, as the broker would.
    assert len(deliveries) == 1 + subscription.delivery_limit
    assert dead.headers[messaging.DEAD_LETTER_REASON] == (
        "gave up after 3 deliveries: KeyError: 'a bug'"
    )
    assert dead.headers[messaging.ORIGINAL_ROUTING_KEY] == OrderPlaced.routing_key
    assert await ready_count(channel, flaky_topology.queue(subscription)) == 0


async def test_an_outage_longer_than_the_delivery_limit_is_waited_out_without_dead_letters(
    connection: AbstractRobustConnection,
    channel: AbstractChannel,
    declared: AbstractExchange,
    flaky_topology: Topology,
) -> None:
    [subscription] = flaky_topology.subscriptions
    tries: list[int] = []
    handled: Handled = []

    async def handler(event: Event) -> None:
        tries.append(1)
        if len(tries) <= 5 * subscription.delivery_limit:
            raise ConnectionRefusedError("database is down")
        handled.append(event)

    patience = messaging.Patience(hold=60, retry_cap=0.05)
    channels = await messaging.start_consumers(
        connection, flaky_topology, [(subscription.name, handler)], prefetch=4, patience=patience
    )
    event = order_placed()
    await messaging.Publisher(declared).publish_event(event)
    await eventually(lambda: _true(handled), within=20)
    await close(channels)
    assert handled == [event]
    assert len(tries) == 5 * subscription.delivery_limit + 1
    assert await ready_count(channel, flaky_topology.dead_letter_queue(subscription)) == 0
    assert await ready_count(channel, flaky_topology.queue(subscription)) == 0


async def test_a_message_held_through_a_long_outage_is_handed_back_as_a_fresh_copy(
    connection: AbstractRobustConnection,
    channel: AbstractChannel,
    declared: AbstractExchange,
    flaky_topology: Topology,
) -> None:
    [subscription] = flaky_topology.subscriptions
    down_until = asyncio.get_running_loop().time() + 1.5
    handled: Handled = []

    async def handler(event: Event) -> None:
        if asyncio.get_running_loop().time() < down_until:
            raise ConnectionRefusedError("database is down")
        handled.append(event)

    queue = await channel.get_queue(flaky_topology.queue(subscription))
    patience = messaging.Patience(hold=0.3, retry_cap=0.05)
    channels = await messaging.start_consumers(
        connection, flaky_topology, [(subscription.name, handler)], prefetch=4, patience=patience
    )
    event = order_placed()
    await messaging.Publisher(declared).publish_event(event)
    await eventually(lambda: _true(handled), within=20)
    await close(channels)
    # Held 0.3 s at a time through 1.5 s: handed back more often than the delivery limit of 2
    # would allow, had each hand-back counted. Never dead-lettered, nothing left behind.
    assert handled == [event]
    assert await ready_count(channel, flaky_topology.dead_letter_queue(subscription)) == 0
    assert await queue.get(fail=False) is None


async def test_the_broker_dead_letters_after_the_delivery_limit_when_the_consumer_cannot(
    channel: AbstractChannel, declared: AbstractExchange, flaky_topology: Topology
) -> None:
    """What a crash loop looks like: every delivery ends without ack (here: nack+requeue)."""
    [subscription] = flaky_topology.subscriptions
    await messaging.Publisher(declared).publish_event(order_placed())
    queue = await channel.get_queue(flaky_topology.queue(subscription))
    counts = []
    for _ in range(1 + subscription.delivery_limit):
        message = await queue.get(timeout=5)
        counts.append((message.headers or {}).get("x-delivery-count"))
        await message.nack(requeue=True)
    [dead] = await take(channel, flaky_topology.dead_letter_queue(subscription), 1)
    assert counts == [0, 1, 2]
    deaths: Any = dead.headers["x-death"]
    [death] = deaths
    assert death["reason"] == "delivery_limit"
    assert death["queue"] == flaky_topology.queue(subscription)
    assert death["routing-keys"] == [OrderPlaced.routing_key]


async def test_retry_delays_grow_and_stay_bounded() -> None:
    delays = [messaging.retry_delay(n) for n in range(1, 2000)]
    assert delays[:4] == pytest.approx([0.2, 0.4, 0.8, 1.6])
    assert max(delays) == 5.0
    assert delays == sorted(delays)


async def _true(items: list[Any]) -> bool:
    await asyncio.sleep(0)
    return bool(items)


async def test_a_message_is_not_acked_away_when_its_dead_letter_queue_is_unreachable(
    connection: AbstractRobustConnection,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
) -> None:
    topology = broker.topology
    dlq = await channel.get_queue(topology.dead_letter_queue(APPROVAL_ORDER_INTENTS))
    queue_name = topology.queue(APPROVAL_ORDER_INTENTS)
    calls: Handled = []

    async def handler(event: Event) -> None:
        calls.append(event)
        raise PermanentFailure("no such order")

    channels = await consume(connection, topology, APPROVAL_ORDER_INTENTS.name, handler)
    await dlq.unbind(topology.return_exchange, routing_key=dlq.name)
    await messaging.Publisher(declared).publish_event(order_placed())
    await eventually(lambda: _true(calls[1:]))  # requeued, then delivered again
    await close(channels)
    await eventually(lambda: _ready(channel, queue_name, 1))

    # Provisioning declares the topology again, binding included.
    await messaging.declare_all(channel, topology)
    channels = await consume(connection, topology, APPROVAL_ORDER_INTENTS.name, handler)
    [dead] = await take(channel, dlq.name, 1)
    await close(channels)
    assert dead.headers[messaging.DEAD_LETTER_REASON] == "PermanentFailure: no such order"


async def _ready(channel: AbstractChannel, queue: str, expected: int) -> bool:
    return await ready_count(channel, queue) == expected
