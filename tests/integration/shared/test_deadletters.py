"""The dead-letter tool: list leaves messages where they are; replay sends them back, then acks."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from shared import deadletters, messaging
from shared.events import OrderPlaced, PaymentAuthenticated
from shared.topology import APPROVAL_ORDER_INTENTS, APPROVAL_PAYMENTS, ORDER_PAYMENT_RESULTS
from tests.infra import Broker
from tests.integration.shared.helpers import eventually, order_placed, ready_count, take

ROOT = Path(__file__).parents[3]
SUBSCRIPTION = APPROVAL_ORDER_INTENTS


async def reject(
    channel: AbstractChannel, declared: AbstractExchange, broker: Broker, reason: str
) -> OrderPlaced:
    """An OrderPlaced that the consumer dead-lettered with ``reason`` (as Consumer does it)."""
    event = order_placed()
    dlx = await channel.get_exchange(broker.topology.dead_letter_exchange)
    headers: dict[str, Any] = {
        messaging.DEAD_LETTER_REASON: reason,
        messaging.ORIGINAL_ROUTING_KEY: event.routing_key,
    }
    message = aio_pika.Message(event.to_bytes(), headers=headers, message_id=str(event.event_id))
    await messaging.publish_confirmed(dlx, message, broker.topology.queue(SUBSCRIPTION))
    return event


async def exhaust(
    channel: AbstractChannel, declared: AbstractExchange, broker: Broker
) -> OrderPlaced:
    """An OrderPlaced that the broker dead-lettered after the delivery limit."""
    event = order_placed()
    await messaging.Publisher(declared).publish_event(event)
    queue = await channel.get_queue(broker.topology.queue(SUBSCRIPTION))
    for _ in range(SUBSCRIPTION.delivery_limit + 1):
        message = await queue.get(timeout=5)
        await message.nack(requeue=True)
    return event


async def test_listing_shows_why_and_leaves_the_messages_in_order(
    connection: AbstractRobustConnection,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
) -> None:
    topology = broker.topology
    first = await reject(channel, declared, broker, "PermanentFailure: unknown order")
    second = await exhaust(channel, declared, broker)
    # At-least-once dead-lettering is asynchronous.
    await eventually(lambda: _counts(channel, topology.dead_letter_queue(SUBSCRIPTION), 2))
    listed = await deadletters.list_dead_letters(connection, topology, SUBSCRIPTION, 10)
    assert listed == [
        deadletters.DeadLetter(
            str(first.event_id),
            "OrderPlaced",
            first.correlation_id,
            "PermanentFailure: unknown order",
            "order.placed",
        ),
        deadletters.DeadLetter(
            str(second.event_id),
            "OrderPlaced",
            second.correlation_id,
            f"delivery_limit in {topology.queue(SUBSCRIPTION)} (x-death count 1)",
            "order.placed",
        ),
    ]
    assert await deadletters.list_dead_letters(connection, topology, SUBSCRIPTION, 10) == listed
    assert await deadletters.list_dead_letters(connection, topology, SUBSCRIPTION, 1) == listed[:1]
    # Back in the queue once the broker has processed the returns (asynchronously).
    await eventually(lambda: _counts(channel, topology.dead_letter_queue(SUBSCRIPTION), 2))


async def _counts(channel: AbstractChannel, queue: str, expected: int) -> bool:
    return await ready_count(channel, queue) == expected


async def test_an_undecodable_message_is_listed_without_type(
    connection: AbstractRobustConnection,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
) -> None:
    dlx = await channel.get_exchange(broker.topology.dead_letter_exchange)
    message = aio_pika.Message(
        b"{oops", message_id="m-1", headers={messaging.DEAD_LETTER_REASON: "not JSON"}
    )
    await messaging.publish_confirmed(dlx, message, broker.topology.queue(SUBSCRIPTION))
    [letter] = await deadletters.list_dead_letters(connection, broker.topology, SUBSCRIPTION, 10)
    assert letter == deadletters.DeadLetter("m-1", None, None, "not JSON", None)
    assert letter.line() == "m-1  -  -  -  not JSON"


async def test_replay_republishes_the_chosen_message_and_only_then_removes_it(
    connection: AbstractRobustConnection,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
) -> None:
    topology = broker.topology
    events = [await reject(channel, declared, broker, f"reason {i}") for i in range(3)]
    chosen = str(events[1].event_id)
    result = await deadletters.replay(connection, topology, SUBSCRIPTION, {chosen})
    assert result == deadletters.Replayed([chosen], [])
    [back] = await take(channel, topology.queue(SUBSCRIPTION), 1)
    assert back.message_id == chosen
    assert back.routing_key == OrderPlaced.routing_key
    assert back.body == events[1].to_bytes()
    assert back.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert not set(back.headers) & deadletters.DEATH_HEADERS - {"x-delivery-count"}
    left = await deadletters.list_dead_letters(connection, topology, SUBSCRIPTION, 10)
    assert [letter.message_id for letter in left] == [
        str(events[0].event_id),
        str(events[2].event_id),
    ]


async def test_replay_all_empties_the_dead_letter_queue_into_every_subscriber(
    connection: AbstractRobustConnection,
    channel: AbstractChannel,
    declared: AbstractExchange,
    broker: Broker,
) -> None:
    topology = broker.topology
    dlx = await channel.get_exchange(topology.dead_letter_exchange)
    message = aio_pika.Message(
        b"{}",
        message_id="auth-1",
        headers={messaging.ORIGINAL_ROUTING_KEY: PaymentAuthenticated.routing_key},
    )
    await messaging.publish_confirmed(dlx, message, topology.queue(APPROVAL_PAYMENTS))
    unroutable = aio_pika.Message(b"{}", message_id="lost-key")
    await messaging.publish_confirmed(dlx, unroutable, topology.queue(APPROVAL_PAYMENTS))

    result = await deadletters.replay(connection, topology, APPROVAL_PAYMENTS, None)
    assert result == deadletters.Replayed(["auth-1"], ["lost-key"])
    for subscription in (APPROVAL_PAYMENTS, ORDER_PAYMENT_RESULTS):
        [copy] = await take(channel, topology.queue(subscription), 1)
        assert copy.message_id == "auth-1"
    left = await deadletters.list_dead_letters(connection, topology, APPROVAL_PAYMENTS, 10)
    assert [letter.message_id for letter in left] == ["lost-key"]


def test_queues_are_found_by_subscription_queue_or_dead_letter_queue_name(broker: Broker) -> None:
    topology = broker.topology
    for name in (
        SUBSCRIPTION.name,
        topology.queue(SUBSCRIPTION),
        topology.dead_letter_queue(SUBSCRIPTION),
    ):
        assert deadletters.find(topology, name) == SUBSCRIPTION
    with pytest.raises(KeyError):
        deadletters.find(topology, "nope")


async def cli(broker: Broker, *args: str) -> tuple[int, str]:
    env = {
        **os.environ,
        "AMQP_URL": broker.url,
        "EVENTS_EXCHANGE": broker.exchange,
        "QUEUE_PREFIX": broker.prefix,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.deadletters",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_the_command_line_lists_then_replays(
    channel: AbstractChannel, declared: AbstractExchange, broker: Broker
) -> None:
    event = await reject(channel, declared, broker, "PermanentFailure: no such order")
    code, out = await cli(broker, "list")
    assert code == 0
    dlq = broker.topology.dead_letter_queue(SUBSCRIPTION)
    assert f"{dlq}: 1 message(s) shown" in out
    assert (
        f"  {event.event_id}  OrderPlaced  {event.correlation_id}  order.placed"
        "  PermanentFailure: no such order"
    ) in out.splitlines()

    code, out = await cli(broker, "replay", "--queue", SUBSCRIPTION.name, "--message-id", "nope")
    assert (code, out) == (1, "not found nope\n")
    code, out = await cli(broker, "replay", "--queue", dlq, "--all")
    assert (code, out) == (0, f"replayed {event.event_id}\n")
    [back] = await take(channel, broker.topology.queue(SUBSCRIPTION), 1)
    assert back.message_id == str(event.event_id)
