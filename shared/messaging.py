"""RabbitMQ plumbing: topology, publishing with confirms, and a consumer loop with dead-lettering.

Every queue is a durable quorum queue with a delivery limit and its own dead-letter queue. A
message is acked only after the handler (and so its database transaction) returned. A handler
raising :class:`PermanentFailure` (or an undecodable body) sends the message straight to the
dead-letter queue with the reason in ``x-dead-letter-reason``; any other exception requeues it
after a short backoff, and the broker dead-letters it once the delivery limit is reached.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from shared.events import Event, UndecodableEvent, decode

log = logging.getLogger(__name__)

DEAD_LETTER_REASON = "x-dead-letter-reason"
ORIGINAL_ROUTING_KEY = "x-original-routing-key"


class PermanentFailure(Exception):
    """The message can never be handled; it goes to the dead-letter queue with this reason."""


@dataclass(frozen=True)
class Subscription:
    """One consuming role's queue for one purpose, and the events it takes."""

    name: str
    events: tuple[type[Event], ...]
    delivery_limit: int = 10

    @property
    def routing_keys(self) -> tuple[str, ...]:
        return tuple(event.routing_key for event in self.events)


@dataclass(frozen=True)
class Topology:
    """Names of everything this deployment declares; tests vary ``exchange`` and ``prefix``."""

    exchange: str
    prefix: str = ""
    subscriptions: tuple[Subscription, ...] = field(default=())

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.exchange}.dlx"

    def queue(self, subscription: Subscription) -> str:
        return f"{self.prefix}{subscription.name}"

    def dead_letter_queue(self, subscription: Subscription) -> str:
        return f"{self.queue(subscription)}.dlq"

    def subscription(self, name: str) -> Subscription:
        return next(s for s in self.subscriptions if s.name == name)


async def connect(url: str) -> AbstractRobustConnection:
    """A connection that reconnects by itself and re-declares what was declared on it."""
    return await aio_pika.connect_robust(url, client_properties={"connection_name": "payments"})


async def declare_exchange(channel: AbstractChannel, topology: Topology) -> AbstractExchange:
    return await channel.declare_exchange(
        topology.exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )


async def declare_all(channel: AbstractChannel, topology: Topology) -> dict[str, AbstractQueue]:
    """Declare the exchange and every queue, so no event is published before its queue exists."""
    await declare_exchange(channel, topology)
    return {s.name: await declare_queue(channel, topology, s) for s in topology.subscriptions}


async def declare_queue(
    channel: AbstractChannel, topology: Topology, subscription: Subscription
) -> AbstractQueue:
    name = topology.queue(subscription)
    dlx = await channel.declare_exchange(
        topology.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    dlq = await channel.declare_queue(
        topology.dead_letter_queue(subscription),
        durable=True,
        arguments={"x-queue-type": "quorum"},
    )
    await dlq.bind(dlx, routing_key=name)
    queue = await channel.declare_queue(
        name,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": subscription.delivery_limit,
            "x-dead-letter-exchange": topology.dead_letter_exchange,
            "x-dead-letter-routing-key": name,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )
    for routing_key in subscription.routing_keys:
        await queue.bind(topology.exchange, routing_key=routing_key)
    return queue


class Publisher:
    """Publishes persistent messages and returns only once the broker confirmed each one."""

    def __init__(self, exchange: AbstractExchange) -> None:
        self._exchange = exchange

    async def publish(self, routing_key: str, body: bytes, message_id: str) -> None:
        message = aio_pika.Message(
            body,
            message_id=message_id,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self._exchange.publish(message, routing_key=routing_key)

    async def publish_event(self, event: Event) -> None:
        await self.publish(event.routing_key, event.to_bytes(), str(event.event_id))


Handler = Callable[[Event], Awaitable[None]]


class Consumer:
    """Feeds one queue's messages to a handler, with the ack / dead-letter / retry policy above."""

    def __init__(
        self,
        channel: AbstractChannel,
        topology: Topology,
        subscription: Subscription,
        handler: Handler,
    ) -> None:
        self._channel = channel
        self._topology = topology
        self._subscription = subscription
        self._handler = handler

    async def start(self, prefetch: int) -> None:
        await self._channel.set_qos(prefetch_count=prefetch)
        queue = await declare_queue(self._channel, self._topology, self._subscription)
        await queue.consume(self.on_message)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            event = decode(message.body)
            await self._handler(event)
        except (UndecodableEvent, PermanentFailure) as exc:
            await self._dead_letter(message, str(exc))
        except Exception:
            await self._retry_later(message)
        else:
            await message.ack()

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        log.warning(
            "dead-lettering message",
            extra={"queue": self._topology.queue(self._subscription), "reason": reason[:500]},
        )
        headers: dict[str, Any] = dict(message.headers or {})
        headers[DEAD_LETTER_REASON] = reason[:1000]
        headers[ORIGINAL_ROUTING_KEY] = message.routing_key or ""
        dlx = await self._channel.get_exchange(self._topology.dead_letter_exchange)
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            message_id=message.message_id,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await dlx.publish(copy, routing_key=self._topology.queue(self._subscription))
        await message.ack()

    async def _retry_later(self, message: AbstractIncomingMessage) -> None:
        log.exception(
            "handler failed; message will be redelivered",
            extra={"queue": self._topology.queue(self._subscription)},
        )
        deliveries = _delivery_count(message)
        await asyncio.sleep(min(0.2 * 2**deliveries, 5.0))
        await message.nack(requeue=True)


async def start_consumers(
    connection: AbstractRobustConnection,
    topology: Topology,
    handlers: Iterable[tuple[str, Handler]],
    prefetch: int = 32,
) -> list[AbstractChannel]:
    """One channel per subscription (own prefetch); returns the channels to close at shutdown."""
    channels: list[AbstractChannel] = []
    for name, handler in handlers:
        channel = await connection.channel()
        await Consumer(channel, topology, topology.subscription(name), handler).start(prefetch)
        channels.append(channel)
    return channels


def _delivery_count(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get("x-delivery-count", 0)
    return value if isinstance(value, int) else 0
