"""Small tools for the plumbing tests: events, polling, reading queues, a TCP proxy to cut."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from shared.events import OrderPlaced, utcnow

SCHEMA = "plumbing"


def order_placed(order_id: str | None = None) -> OrderPlaced:
    order_id = order_id or f"order-{uuid.uuid4().hex[:8]}"
    return OrderPlaced(
        correlation_id=order_id,
        order_id=order_id,
        customer_key="customer-1",
        order_name="Coffee x 2",
        amount=9000,
        expires_at=utcnow() + timedelta(minutes=10),
    )


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 5.0) -> float:
    """Wait until ``check`` holds; returns the seconds it took. Fails the test on timeout."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > within:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def take(
    channel: AbstractChannel, queue: str, count: int, within: float = 5.0
) -> list[AbstractIncomingMessage]:
    """Get and ack ``count`` messages (waiting for them), then check nothing more is there."""
    taken: list[AbstractIncomingMessage] = []
    target = await channel.get_queue(queue)

    async def got_all() -> bool:
        message = await target.get(no_ack=True, fail=False)
        if message is not None:
            taken.append(message)
        return len(taken) >= count

    await eventually(got_all, within)
    assert await target.get(no_ack=True, fail=False) is None, "more messages than expected"
    return taken


async def drain(channel: AbstractChannel, queue: str) -> list[AbstractIncomingMessage]:
    """Get and ack whatever the queue holds now."""
    target = await channel.get_queue(queue)
    taken = []
    while (message := await target.get(no_ack=True, fail=False)) is not None:
        taken.append(message)
    return taken


async def ready_count(channel: AbstractChannel, queue: str) -> int:
    # Not channel.declare_queue(passive=True): a robust channel answers that from its cache.
    underlay = await channel.get_underlay_channel()
    declared = await underlay.queue_declare(queue, passive=True)
    count = declared.message_count
    assert isinstance(count, int)
    return count


class TcpProxy:
    """Forwards a local port to the broker; ``cut()`` drops every connection and refuses new ones
    until ``restore()``: a broker outage as the client sees it, without touching the broker."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5672)
        self._url = target_url
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.connections = 0

    @property
    def url(self) -> str:
        parts = urlsplit(self._url)
        netloc = f"{parts.username}:{parts.password}@127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc, query="reconnect_interval=0.2"))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        if self._server is not None:
            await self.cut()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}
            for w in (writer, up_writer):
                w.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()
