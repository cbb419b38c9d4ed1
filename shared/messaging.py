"""RabbitMQ plumbing: topology, publishing with confirms, and a consumer loop with dead-lettering.

Every queue is a durable quorum queue with a delivery limit and its own dead-letter queue. A
message is acked only after the handler (and so its database transaction) returned. A handler
raising :class:`PermanentFailure` (or an undecodable body) sends the message straight to the
dead-letter queue with the reason in ``x-dead-letter-reason``; any other exception requeues it
after a short backoff. The consumer dead-letters the last allowed delivery itself, with the
exception as the reason; should it not get the chance (a crash), the broker dead-letters the
message once the delivery limit is exceeded (``x-death`` reason ``delivery_limit``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq
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


class PublishNotConfirmed(Exception):
    """The broker did not take responsibility for a message (returned as unroutable, or no
    publisher confirms on the channel). A nack raises ``aio_pika.exceptions.DeliveryError``."""


@dataclass(frozen=True)
class Subscription:
    """One consuming role's queue for one purpose, and the events it takes."""

    name: str
    events: tuple[type[Event], ...]
    # Sized for crash storms, not for poison: a consumer that dies returns every message it held
    # unacked (up to its prefetch) and a quorum queue counts each return as a delivery, so a low
    # limit dead-letters innocent messages while workers restart. Poison (undecodable, invalid,
    # PermanentFailure) is dead-lettered at once by the consumer; transient errors back off up to
    # 5 s a delivery, so this limit also means minutes of outage before a message is parked.
    delivery_limit: int = 100

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
        for subscription in self.subscriptions:
            if subscription.name == name:
                return subscription
        raise KeyError(f"no subscription named {name!r}")


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
    """Publishes persistent messages and returns only once the broker confirmed each one.

    The exchange's channel must have publisher confirms on (aio-pika's default). A message no
    queue takes is an error, not a success: the topology is declared before anything publishes.
    """

    def __init__(self, exchange: AbstractExchange) -> None:
        self._exchange = exchange

    async def publish(self, routing_key: str, body: bytes, message_id: str) -> None:
        message = aio_pika.Message(
            body,
            message_id=message_id,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await publish_confirmed(self._exchange, message, routing_key)

    async def publish_event(self, event: Event) -> None:
        await self.publish(event.routing_key, event.to_bytes(), str(event.event_id))


async def publish_confirmed(
    exchange: AbstractExchange, message: aio_pika.Message, routing_key: str
) -> None:
    """Publish (mandatory) and raise unless the broker acked it: nack, return, no confirms."""
    result = await exchange.publish(message, routing_key=routing_key, mandatory=True)
    if not isinstance(result, aiormq.spec.Basic.Ack):
        raise PublishNotConfirmed(f"{routing_key!r} on {exchange.name!r}: {type(result).__name__}")


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
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None

    async def start(self, prefetch: int) -> None:
        await self._channel.set_qos(prefetch_count=prefetch)
        queue = await declare_queue(self._channel, self._topology, self._subscription)
        self._queue = queue
        self._consumer_tag = await queue.consume(self.on_message)

    async def stop(self) -> None:
        """Take no new deliveries; messages already being handled still finish (or requeue)."""
        if self._queue is not None and self._consumer_tag is not None:
            tag, self._consumer_tag = self._consumer_tag, None
            await self._queue.cancel(tag)

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            event = decode(message.body)
            await self._handler(event)
        except (UndecodableEvent, PermanentFailure) as exc:
            await self._dead_letter_or_requeue(message, _describe(exc))
        except Exception as exc:
            await self._retry_later(message, exc)
        else:
            await message.ack()

    async def _dead_letter_or_requeue(self, message: AbstractIncomingMessage, reason: str) -> None:
        # Never leave a message unacked on a live channel: it would hold a prefetch slot for good.
        try:
            await self._dead_letter(message, reason)
        except Exception:
            log.exception("dead-lettering failed; requeueing the message")
            await asyncio.sleep(retry_delay(_delivery_count(message) + 1))
            await message.nack(requeue=True)

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
        await publish_confirmed(dlx, copy, self._topology.queue(self._subscription))
        await message.ack()

    async def _retry_later(self, message: AbstractIncomingMessage, exc: Exception) -> None:
        deliveries = _delivery_count(message) + 1  # this one included
        if deliveries > self._subscription.delivery_limit:
            # The broker would drop the exception on the floor and say only "delivery_limit".
            reason = f"gave up after {deliveries} deliveries: {_describe(exc)}"
            await self._dead_letter_or_requeue(message, reason)
            return
        log.exception(
            "handler failed; message will be redelivered",
            extra={"queue": self._topology.queue(self._subscription), "deliveries": deliveries},
        )
        await asyncio.sleep(retry_delay(deliveries))
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


def retry_delay(deliveries: int) -> float:
    """Seconds to wait before requeueing after the ``deliveries``-th failed delivery (1, 2, …)."""
    return min(0.2 * 2.0 ** min(max(deliveries - 1, 0), 5), 5.0)


def _describe(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _delivery_count(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get("x-delivery-count", 0)
    return value if isinstance(value, int) else 0
