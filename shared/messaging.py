"""RabbitMQ plumbing: topology, publishing with confirms, and a consumer loop with dead-lettering.

Every queue is a durable quorum queue with a delivery limit and its own dead-letter queue. A
message is acked only after the handler (and so its database transaction) returned. What a
failure means for the message is one table (:func:`disposition`):

- *poison* — an undecodable body or :class:`PermanentFailure`: it can never be handled, so it
  goes straight to the dead-letter queue with the reason in ``x-dead-letter-reason``;
- *transient* — a dependency is unavailable (the database, the broker; :class:`Transient` or
  one of :data:`TRANSIENT_ERRORS`): the consumer keeps the message and tries again in place,
  with capped backoff, for as long as the outage lasts. Holding it also stops new deliveries
  once the prefetch window is full, so a long outage uses up no delivery limit. Before the
  broker's consumer timeout could take the message away, it is re-published to its own queue
  (a copy with a fresh delivery count) and the original acked;
- anything else (a bug) — requeued with backoff, counted: the consumer dead-letters the last
  delivery the limit allows itself, with the exception as the reason; should it not get the
  chance (a crash), the broker does (``x-death`` reason ``delivery_limit``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq
import asyncpg
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from shared import tracing
from shared.events import Event, UndecodableEvent, decode
from shared.logging import order_context
from shared.metrics import MESSAGES_HANDLED

log = logging.getLogger(__name__)

DEAD_LETTER_REASON = "x-dead-letter-reason"
ORIGINAL_ROUTING_KEY = "x-original-routing-key"
# How many times a message was handed back to its queue after waiting out a long outage.
HANDED_BACK = "x-handed-back"


class PermanentFailure(Exception):
    """The message can never be handled; it goes to the dead-letter queue with this reason."""


class Transient(Exception):
    """A dependency is unavailable (or a row moved under us): the message waits and is handled
    again in place, without using up its delivery limit."""


# Failures of the infrastructure rather than of the message: the database refusing or losing
# connections, shutting down, out of connections, a serialization conflict; a broken network.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    Transient,
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
    aiormq.exceptions.AMQPConnectionError,
)


class Disposition(enum.Enum):
    DEAD_LETTER = "dead-letter"  # poison: can never be handled; a person must look
    WAIT = "wait"  # transient: handled again in place, uncounted
    REQUEUE = "requeue"  # unexpected: requeued, counted against the delivery limit


def disposition(exc: BaseException) -> Disposition:
    """What a handler's exception means for its message (see the module docstring)."""
    if isinstance(exc, PermanentFailure | UndecodableEvent):
        return Disposition.DEAD_LETTER
    cause: BaseException | None = exc
    while cause is not None:  # a wrapped connection error is still a connection error
        if isinstance(cause, TRANSIENT_ERRORS):
            return Disposition.WAIT
        cause = cause.__cause__ or cause.__context__
    return Disposition.REQUEUE


@dataclass(frozen=True)
class Patience:
    """How a consumer waits out a transient failure: retry every ``retry_cap`` seconds at most,
    and hand the message back to its queue (a fresh copy) after holding it ``hold`` seconds,
    well inside the broker's consumer timeout (30 minutes by default)."""

    hold: float = 300.0
    retry_cap: float = 5.0


class NotProvisioned(RuntimeError):
    """A role's exchanges or queues do not exist, and its own broker user may not declare them."""


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
    # PermanentFailure) is dead-lettered at once by the consumer, and an outage (a transient
    # failure) is waited out in place without counting, so only bugs and crashes count here.
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
    # Overrides every subscription's delivery limit (tests shorten it; all roles must agree).
    delivery_limit: int | None = None

    def limit(self, subscription: Subscription) -> int:
        return self.delivery_limit or subscription.delivery_limit

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.exchange}.dlx"

    @property
    def return_exchange(self) -> str:
        """Where a consumer puts a message back into its own queue or dead-letter queue (routing
        key: the queue's name). A topic exchange, so that a role's broker user can be allowed
        exactly its own queues' names: the default exchange would reach every queue."""
        return f"{self.exchange}.return"

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
    """Declare the exchange and every queue, so no event is published before its queue exists.
    Provisioning does this as an admin; a role with its own user only checks (:func:`attach`)."""
    await declare_exchange(channel, topology)
    return {s.name: await declare_queue(channel, topology, s) for s in topology.subscriptions}


async def attach(
    channel: AbstractChannel,
    topology: Topology,
    own: Iterable[Subscription],
    *,
    declare: bool,
) -> AbstractExchange:
    """The events exchange to publish to, once every queue exists.

    With ``declare`` (a role on the shared admin user: a sandbox without per-role users) the
    whole topology is declared, as provisioning would. A role's own user may not declare
    anything: it checks (passively, which needs no permission) that its exchanges and queues
    exist, and fails at start, naming what is missing, if provisioning has not run.
    """
    if declare:
        await declare_all(channel, topology)
        return await declare_exchange(channel, topology)
    names = [topology.exchange, topology.return_exchange]
    queues = [topology.queue(subscription) for subscription in own]
    try:
        for name in names:
            await channel.get_exchange(name, ensure=True)
        for queue in queues:
            await channel.declare_queue(queue, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity as exc:
        raise NotProvisioned(f"run python -m shared.provision first: {exc}") from exc
    return await channel.get_exchange(topology.exchange, ensure=False)


async def declare_queue(
    channel: AbstractChannel, topology: Topology, subscription: Subscription
) -> AbstractQueue:
    name = topology.queue(subscription)
    dlx = await channel.declare_exchange(
        topology.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    back = await channel.declare_exchange(
        topology.return_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    dlq = await channel.declare_queue(
        topology.dead_letter_queue(subscription),
        durable=True,
        arguments={"x-queue-type": "quorum"},
    )
    await dlq.bind(dlx, routing_key=name)
    await dlq.bind(back, routing_key=topology.dead_letter_queue(subscription))
    queue = await channel.declare_queue(
        name,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": topology.limit(subscription),
            "x-dead-letter-exchange": topology.dead_letter_exchange,
            "x-dead-letter-routing-key": name,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )
    for routing_key in subscription.routing_keys:
        await queue.bind(topology.exchange, routing_key=routing_key)
    await queue.bind(back, routing_key=name)
    return queue


class Publisher:
    """Publishes persistent messages and returns only once the broker confirmed each one.

    The exchange's channel must have publisher confirms on (aio-pika's default). A message no
    queue takes is an error, not a success: the topology is declared before anything publishes.
    """

    def __init__(self, exchange: AbstractExchange) -> None:
        self._exchange = exchange

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        message_id: str,
        trace: tracing.TraceContext = tracing.NO_CONTEXT,
    ) -> None:
        """Publish one event; ``trace`` (where it was written) goes on in its headers."""
        with tracing.publishing(routing_key, message_id, trace) as headers:
            message = aio_pika.Message(
                body,
                headers=dict(headers) if headers else None,
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
    """Feeds one queue's messages to a handler, with the policy of the module docstring."""

    def __init__(
        self,
        channel: AbstractChannel,
        topology: Topology,
        subscription: Subscription,
        handler: Handler,
        patience: Patience | None = None,
    ) -> None:
        self._channel = channel
        self._topology = topology
        self._subscription = subscription
        self._handler = handler
        self._patience = patience or Patience()
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._handling: set[asyncio.Task[Any]] = set()

    @property
    def _name(self) -> str:
        return self._topology.queue(self._subscription)

    async def start(self, prefetch: int) -> None:
        """Consume the queue, which must exist (provisioning or :func:`attach` declared it)."""
        await self._channel.set_qos(prefetch_count=prefetch)
        queue = await self._channel.declare_queue(self._name, passive=True)
        self._queue = queue
        self._consumer_tag = await queue.consume(self.on_message)

    async def stop(self) -> None:
        """Take no new deliveries; messages already being handled still finish (or requeue)."""
        if self._queue is not None and self._consumer_tag is not None:
            tag, self._consumer_tag = self._consumer_tag, None
            await self._queue.cancel(tag)

    async def drain(self, within: float) -> bool:
        """After :meth:`stop`: wait up to ``within`` seconds for the messages being handled to be
        settled (acked, dead-lettered, requeued); cancel the rest, whose messages, unacked, go
        back to the queue when the channel closes. True if none had to be cancelled."""
        handling = set(self._handling)
        if not handling:
            return True
        _, pending = await asyncio.wait(handling, timeout=within)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
        return not pending

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        # Each delivery runs in a task of its own (aiormq): remembered so a drain can wait on it.
        task = asyncio.current_task()
        assert task is not None
        self._handling.add(task)
        try:
            await self._on_message(message)
        finally:
            self._handling.discard(task)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        """Handle one delivery under a consumer span that continues the trace in its headers;
        every line logged meanwhile names the event's order."""
        routing_key = message.routing_key or ""
        with tracing.consuming(message.headers, self._name, routing_key, message.message_id or ""):
            try:
                event = decode(message.body)
            except UndecodableEvent as exc:
                await self._dead_letter_or_requeue(message, _describe(exc))
                return
            with order_context(event.correlation_id):
                await self._handle(message, event)

    async def _handle(self, message: AbstractIncomingMessage, event: Event) -> None:
        held_since = time.monotonic()
        waits = 0
        while True:
            try:
                await self._handler(event)
            except Exception as exc:
                outcome = disposition(exc)
                if outcome is not Disposition.WAIT:
                    await self._failed(message, exc, outcome)
                    return
                waits += 1
                if time.monotonic() - held_since >= self._patience.hold:
                    await self._hand_back(message, exc)
                    return
                await self._wait(exc, waits)
            else:
                if waits:
                    log.info("handled after waiting out a failure", extra=self._extra(waits))
                await message.ack()
                self._count("acked")
                log.info("event handled", extra={"event": event.type, "queue": self._name})
                return

    async def _failed(
        self, message: AbstractIncomingMessage, exc: Exception, outcome: Disposition
    ) -> None:
        if outcome is Disposition.DEAD_LETTER:
            await self._dead_letter_or_requeue(message, _describe(exc))
        else:
            await self._retry_later(message, exc)

    async def _wait(self, exc: Exception, waits: int) -> None:
        """Back off (capped, jittered) before trying the same message again."""
        if waits == 1 or waits % 20 == 0:
            log.warning(
                "a dependency is unavailable; the message waits and is tried again",
                extra={**self._extra(waits), "error": _describe(exc)[:300]},
            )
        delay = min(self._patience.retry_cap, 0.1 * 2.0 ** min(waits, 10))
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _hand_back(self, message: AbstractIncomingMessage, exc: Exception) -> None:
        """Held long enough: re-publish a fresh copy to this queue (its delivery count starts
        again) and ack the original, before the broker's consumer timeout takes it. A crash
        between the two leaves both: consumers deduplicate by eventId."""
        log.warning(
            "still failing after holding the message; handing it back to its queue",
            extra={**self._extra(0), "error": _describe(exc)[:300]},
        )
        headers: dict[str, Any] = dict(message.headers or {})
        headers.pop("x-delivery-count", None)
        headers[HANDED_BACK] = int(headers.get(HANDED_BACK, 0) or 0) + 1
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            message_id=message.message_id,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await publish_confirmed(await self._return_exchange(), copy, self._name)
        except Exception:
            log.exception("handing the message back failed; requeueing it")
            await message.nack(requeue=True)
            return
        await message.ack()
        self._count("handed_back")

    def _count(self, outcome: str) -> None:
        MESSAGES_HANDLED.labels(self._subscription.name, outcome).inc()

    async def _return_exchange(self) -> AbstractExchange:
        return await self._channel.get_exchange(self._topology.return_exchange, ensure=False)

    def _extra(self, waits: int) -> dict[str, object]:
        return {"queue": self._name, "waits": waits}

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
            extra={"queue": self._name, "reason": reason[:500]},
        )
        headers: dict[str, Any] = dict(message.headers or {})
        headers[DEAD_LETTER_REASON] = reason[:1000]
        headers[ORIGINAL_ROUTING_KEY] = message.routing_key or ""
        copy = aio_pika.Message(
            message.body,
            headers=headers,
            message_id=message.message_id,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        dead_letters = self._topology.dead_letter_queue(self._subscription)
        await publish_confirmed(await self._return_exchange(), copy, dead_letters)
        await message.ack()
        self._count("dead_lettered")

    async def _retry_later(self, message: AbstractIncomingMessage, exc: Exception) -> None:
        deliveries = _delivery_count(message) + 1  # this one included
        if deliveries > self._topology.limit(self._subscription):
            # The broker would drop the exception on the floor and say only "delivery_limit".
            reason = f"gave up after {deliveries} deliveries: {_describe(exc)}"
            await self._dead_letter_or_requeue(message, reason)
            return
        log.exception(
            "handler failed; message will be redelivered",
            extra={"queue": self._name, "deliveries": deliveries},
        )
        await asyncio.sleep(retry_delay(deliveries))
        await message.nack(requeue=True)
        self._count("requeued")


async def start_consumers(
    connection: AbstractRobustConnection,
    topology: Topology,
    handlers: Iterable[tuple[str, Handler]],
    prefetch: int = 32,
    patience: Patience | None = None,
) -> list[AbstractChannel]:
    """One channel per subscription (own prefetch); returns the channels to close at shutdown."""
    channels: list[AbstractChannel] = []
    for name, handler in handlers:
        channel = await connection.channel()
        subscription = topology.subscription(name)
        await Consumer(channel, topology, subscription, handler, patience).start(prefetch)
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
