"""Look into the dead-letter queues and send chosen messages back.

    python -m shared.deadletters list [--queue NAME] [--limit N]
    python -m shared.deadletters replay --queue NAME (--message-id ID ... | --all)

``NAME`` is a subscription, its queue or its dead-letter queue. The broker and the names come
from ``AMQP_URL``, ``EVENTS_EXCHANGE`` and ``QUEUE_PREFIX``, as for every role.

Listing takes messages with ``basic.get`` and never acks them: they go back to the queue, in
their order, when the tool closes its channel. Replaying republishes a message to the events
exchange with its original routing key, waits for the broker's confirm, and only then acks it
from the dead-letter queue; a crash in between leaves a duplicate (consumers deduplicate by
``eventId``), never a loss. The routing key reaches every subscription of that event, not only
the one that dead-lettered it: the others drop the copy through their inbox.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from shared.events import UndecodableEvent, decode
from shared.messaging import (
    DEAD_LETTER_REASON,
    ORIGINAL_ROUTING_KEY,
    Subscription,
    Topology,
    publish_confirmed,
)
from shared.settings import CommonSettings

# Bookkeeping of the failed attempts; a replayed message starts afresh without it.
DEATH_HEADERS = frozenset(
    {
        DEAD_LETTER_REASON,
        ORIGINAL_ROUTING_KEY,
        "x-death",
        "x-delivery-count",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)


@dataclass(frozen=True)
class DeadLetter:
    """What an operator needs to know about one dead-lettered message."""

    message_id: str | None
    event_type: str | None
    correlation_id: str | None
    reason: str
    routing_key: str | None
    # The event's paymentKey, if it names one: a viewer masks it wherever it shows up.
    payment_key: str | None = None

    @classmethod
    def of(cls, message: AbstractIncomingMessage) -> DeadLetter:
        headers = dict(message.headers or {})
        event_type: str | None = None
        correlation_id: str | None = None
        payment_key: str | None = None
        try:
            event = decode(message.body)
            event_type, correlation_id = event.type, event.correlation_id
            payment_key = getattr(event, "payment_key", None)
        except UndecodableEvent:
            pass  # listed all the same, without type and correlationId
        why, key = reason(headers), routing_key(headers)
        return cls(message.message_id, event_type, correlation_id, why, key, payment_key)

    def line(self) -> str:
        fields = (self.message_id, self.event_type, self.correlation_id, self.routing_key)
        return "  ".join(value or "-" for value in fields) + f"  {self.reason}"


def reason(headers: dict[str, Any]) -> str:
    """Ours (the consumer's), else the broker's latest ``x-death`` entry."""
    if DEAD_LETTER_REASON in headers:
        return str(headers[DEAD_LETTER_REASON])
    deaths = headers.get("x-death") or []
    if deaths:
        death = deaths[0]
        return f"{death.get('reason')} in {death.get('queue')} (x-death count {death.get('count')})"
    return "unknown"


def routing_key(headers: dict[str, Any]) -> str | None:
    """The routing key the message was first published with."""
    if ORIGINAL_ROUTING_KEY in headers:
        return str(headers[ORIGINAL_ROUTING_KEY])
    for death in headers.get("x-death") or []:
        keys = death.get("routing-keys") or []
        if keys:
            return str(keys[0])
    return None


def find(topology: Topology, name: str) -> Subscription:
    """The subscription named ``name``, or whose queue or dead-letter queue is ``name``."""
    for subscription in topology.subscriptions:
        names = {
            subscription.name,
            topology.queue(subscription),
            topology.dead_letter_queue(subscription),
        }
        if name in names:
            return subscription
    raise KeyError(f"no subscription or queue named {name!r}")


async def browse(channel: AbstractChannel, queue: str, limit: int) -> list[AbstractIncomingMessage]:
    """Up to ``limit`` messages, unacked: they return when ``channel`` closes."""
    target = await channel.get_queue(queue)
    messages: list[AbstractIncomingMessage] = []
    while len(messages) < limit:
        message = await target.get(no_ack=False, fail=False)
        if message is None:
            break
        messages.append(message)
    return messages


async def list_dead_letters(
    connection: AbstractConnection, topology: Topology, subscription: Subscription, limit: int
) -> list[DeadLetter]:
    """The first ``limit`` messages of the subscription's dead-letter queue, left in place."""
    channel = await connection.channel()
    try:
        messages = await browse(channel, topology.dead_letter_queue(subscription), limit)
        return [DeadLetter.of(message) for message in messages]
    finally:
        await channel.close()


@dataclass(frozen=True)
class Replayed:
    replayed: list[str]
    skipped: list[str]  # no original routing key: left in the dead-letter queue


async def replay(
    connection: AbstractConnection,
    topology: Topology,
    subscription: Subscription,
    message_ids: set[str] | None,
) -> Replayed:
    """Republish the chosen messages (all when ``message_ids`` is None), then ack them."""
    channel = await connection.channel()  # publisher confirms on
    try:
        queue = topology.dead_letter_queue(subscription)
        # Only what is there now: a replayed message that fails again comes back behind these.
        declared = await (await channel.get_underlay_channel()).queue_declare(queue, passive=True)
        present = int(declared.message_count or 0)
        exchange = await channel.get_exchange(topology.exchange)
        replayed: list[str] = []
        skipped: list[str] = []
        for message in await browse(channel, queue, present):
            message_id = message.message_id or ""
            if message_ids is not None and message_id not in message_ids:
                continue
            key = routing_key(dict(message.headers or {}))
            if key is None:
                skipped.append(message_id)
                continue
            await publish_confirmed(exchange, _fresh_copy(message), key)
            await message.ack()
            replayed.append(message_id)
        return Replayed(replayed, skipped)
    finally:
        await channel.close()


def _fresh_copy(message: AbstractIncomingMessage) -> aio_pika.Message:
    headers = {k: v for k, v in (message.headers or {}).items() if k not in DEATH_HEADERS}
    return aio_pika.Message(
        message.body,
        headers=headers,
        message_id=message.message_id,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


async def _list(
    connection: AbstractConnection, topology: Topology, args: argparse.Namespace
) -> int:
    chosen = [find(topology, args.queue)] if args.queue else list(topology.subscriptions)
    for subscription in chosen:
        name = topology.dead_letter_queue(subscription)
        try:
            letters = await list_dead_letters(connection, topology, subscription, args.limit)
        except aiormq.exceptions.ChannelNotFoundEntity:
            print(f"{name}: not declared")
            continue
        print(f"{name}: {len(letters)} message(s) shown")
        for letter in letters:
            print(f"  {letter.line()}")
    return 0


async def _replay(
    connection: AbstractConnection, topology: Topology, args: argparse.Namespace
) -> int:
    ids = None if args.all else set(args.message_id)
    try:
        result = await replay(connection, topology, find(topology, args.queue), ids)
    except aiormq.exceptions.ChannelNotFoundEntity as exc:
        print(f"not declared: {exc}", file=sys.stderr)
        return 2
    for message_id in result.replayed:
        print(f"replayed {message_id}")
    for message_id in result.skipped:
        print(f"skipped {message_id}: no original routing key")
    missing = set() if ids is None else ids - set(result.replayed) - set(result.skipped)
    for message_id in sorted(missing):
        print(f"not found {message_id}")
    return 1 if result.skipped or missing else 0


def parser() -> argparse.ArgumentParser:
    tool = argparse.ArgumentParser(
        prog="python -m shared.deadletters",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = tool.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="show dead-lettered messages, leaving them")
    listing.add_argument("--queue", help="one subscription (default: all)")
    listing.add_argument("--limit", type=int, default=100, help="per queue (default 100)")
    replaying = commands.add_parser("replay", help="republish, then remove from the DLQ")
    replaying.add_argument("--queue", required=True, help="the subscription")
    which = replaying.add_mutually_exclusive_group(required=True)
    which.add_argument("--message-id", action="append", default=[], metavar="ID")
    which.add_argument("--all", action="store_true")
    return tool


async def run(args: argparse.Namespace, amqp_url: str, topology: Topology) -> int:
    connection = await aio_pika.connect(amqp_url)
    try:
        command = _list if args.command == "list" else _replay
        return await command(connection, topology, args)
    finally:
        await connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    tool = parser()
    args = tool.parse_args(argv)
    settings = CommonSettings()
    topology = settings.topology()
    if args.queue is not None:
        try:
            find(topology, args.queue)
        except KeyError as exc:
            tool.error(exc.args[0])
    return asyncio.run(run(args, settings.amqp_url, topology))


if __name__ == "__main__":
    sys.exit(main())
