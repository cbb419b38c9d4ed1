"""declare_all: durable quorum queues with a delivery limit and a dead-letter queue each."""

from __future__ import annotations

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from shared import messaging
from shared.events import EVENT_TYPES
from tests.infra import Broker
from tests.integration.shared.helpers import ready_count, take


async def test_every_subscription_gets_a_durable_quorum_queue_and_a_dead_letter_queue(
    connection: AbstractRobustConnection, declared: AbstractExchange, broker: Broker
) -> None:
    topology = broker.topology
    for subscription in topology.subscriptions:
        for name in (topology.queue(subscription), topology.dead_letter_queue(subscription)):
            channel = await connection.channel()
            # A passive declare of a quorum queue as "classic" is refused: the type is checked.
            with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
                await channel.declare_queue(
                    name, durable=True, arguments={"x-queue-type": "classic"}
                )
            channel = await connection.channel()
            assert await ready_count(channel, name) == 0


async def test_the_queue_arguments_carry_the_delivery_limit_and_the_dead_letter_route(
    channel: AbstractChannel, declared: AbstractExchange, broker: Broker
) -> None:
    topology = broker.topology
    subscription = topology.subscriptions[0]
    # Re-declaring with the same arguments is accepted; a different limit would be refused.
    queue = await messaging.declare_queue(channel, topology, subscription)
    assert queue.durable
    assert queue.arguments is not None
    assert queue.arguments["x-delivery-limit"] == subscription.delivery_limit
    assert queue.arguments["x-dead-letter-exchange"] == topology.dead_letter_exchange
    assert queue.arguments["x-dead-letter-strategy"] == "at-least-once"
    with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
        await channel.declare_queue(
            queue.name,
            durable=True,
            arguments={**queue.arguments, "x-delivery-limit": subscription.delivery_limit + 1},
        )


async def test_each_event_reaches_exactly_the_queues_that_subscribe_to_it(
    channel: AbstractChannel, declared: AbstractExchange, broker: Broker
) -> None:
    topology = broker.topology
    publisher = messaging.Publisher(declared)
    for routing_key in {event.routing_key for event in EVENT_TYPES.values()}:
        await publisher.publish(routing_key, b"{}", message_id=routing_key)
    for subscription in topology.subscriptions:
        messages = await take(channel, topology.queue(subscription), len(subscription.events))
        assert sorted(m.message_id or "" for m in messages) == sorted(subscription.routing_keys)
        assert await ready_count(channel, topology.dead_letter_queue(subscription)) == 0


async def test_every_event_type_has_a_subscriber(broker: Broker) -> None:
    subscribed = {key for s in broker.topology.subscriptions for key in s.routing_keys}
    assert {event.routing_key for event in EVENT_TYPES.values()} <= subscribed


async def test_the_dead_letter_exchange_routes_by_queue_name_to_that_queues_dlq(
    channel: AbstractChannel, declared: AbstractExchange, broker: Broker
) -> None:
    topology = broker.topology
    dlx = await channel.get_exchange(topology.dead_letter_exchange)
    for subscription in topology.subscriptions:
        message = aio_pika.Message(b"x", message_id=subscription.name)
        await messaging.publish_confirmed(dlx, message, topology.queue(subscription))
    for subscription in topology.subscriptions:
        [dead] = await take(channel, topology.dead_letter_queue(subscription), 1)
        assert dead.message_id == subscription.name


async def test_a_message_that_no_queue_takes_is_not_reported_as_published(
    declared: AbstractExchange,
) -> None:
    with pytest.raises(messaging.PublishNotConfirmed):
        await messaging.Publisher(declared).publish("nobody.listens", b"{}", "m-1")


def test_an_unknown_subscription_name_is_a_key_error(broker: Broker) -> None:
    with pytest.raises(KeyError, match="no-such"):
        broker.topology.subscription("no-such")
