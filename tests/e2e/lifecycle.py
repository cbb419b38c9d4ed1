"""One role as a real process (``python -m services.<role>``), for the lifecycle tests.

Each process carries a tag in its environment; whatever the test's outcome, :func:`role`
SIGKILLs its process group and anything else with the tag on the way out, so a failing test
leaves nothing running either. Every wait is on a condition (the role answers ``/readyz`` or
touched its ready file, a backend waits on a lock, a port refuses), never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import asyncpg
import httpx
from aio_pika.abc import AbstractQueue

from deploy.scratch import Broker
from deploy.stack import ROOT, free_port
from shared import messaging, runner
from shared.events import Event, decode
from tests import leftovers

SERVER_VARIABLES = ("DATABASE_URL", "AMQP_URL", "TEST_DATABASE_URL", "TEST_AMQP_URL")
PORT_VARIABLES = {"order": "ORDER_PORT", "checkout": "CHECKOUT_PORT", "sandbox": "SANDBOX_PORT"}


async def until(check: Callable[[], Awaitable[bool]], what: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(0.05)


@dataclass
class Role:
    name: str
    process: subprocess.Popen[bytes]
    tag: str
    directory: Path
    port: int | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return (self.directory / f"{self.name}.log").read_text(errors="replace")[-4000:]

    async def ready(self) -> None:
        """The HTTP role answers /readyz, or the worker touched its ready file."""

        async def answers() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.process.returncode}:\n{self.log}")
            if self.port is None:
                return runner.fresh(
                    runner.health_file(self.directory / "health", "approval", "ready")
                )
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    return (await client.get(f"{self.url}/readyz")).status_code == 200
            except httpx.HTTPError:
                return False

        await until(answers, f"{self.name} ready")

    def sigterm(self) -> float:
        self.process.send_signal(signal.SIGTERM)
        return time.monotonic()

    async def exit_status(self, within: float) -> int:
        async def exited() -> bool:
            return self.process.poll() is not None

        await until(exited, f"{self.name} exit after SIGTERM", within)
        return self.process.returncode

    async def stopped_listening(self) -> None:
        async def refused() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port or 0)) != 0

        await until(refused, f"{self.name} closing its listener")


def environment(database_url: str, broker: Broker, directory: Path, **extra: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if k not in SERVER_VARIABLES}
    return inherited | {
        "DATABASE_URL": database_url,
        "AMQP_URL": broker.url,
        "EVENTS_EXCHANGE": broker.exchange,
        "QUEUE_PREFIX": broker.prefix,
        "DB_POOL_MIN": "1",
        "DB_POOL_MAX": "4",
        "HEALTH_DIR": str(directory / "health"),
        "HEARTBEAT_FILE": str(directory / "heartbeat"),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


@contextlib.contextmanager
def role(name: str, env: dict[str, str], directory: Path) -> Iterator[Role]:
    """``python -m services.<name>`` on a free port (HTTP roles), killed with anything of it
    that is left when the block ends, however it ends."""
    tag = uuid.uuid4().hex
    port = free_port() if name in PORT_VARIABLES else None
    ports = {PORT_VARIABLES[name]: str(port)} if port else {}
    with (directory / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            cwd=ROOT,
            env=env | ports | {leftovers.TAG_VARIABLE: tag},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Role(name, process, tag, directory, port)
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        leftovers.kill_all(directory, tag)


class Lock:
    """A lock the test holds in a transaction of its own, until :meth:`release`."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self._open = True

    async def release(self) -> None:
        if self._open:
            self._open = False
            await self._conn.execute("ROLLBACK")


@contextlib.asynccontextmanager
async def holding(database_url: str, statement: str) -> AsyncIterator[Lock]:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("BEGIN")
        await conn.execute(statement)
        lock = Lock(conn)
        yield lock
        await lock.release()
    finally:
        await conn.close()


async def waiting_on_a_lock(database_url: str, application: str) -> None:
    """Until a backend of ``application`` (a role's ``application_name``) waits on a lock."""
    conn = await asyncpg.connect(database_url)
    try:

        async def blocked() -> bool:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = $1 AND wait_event_type = 'Lock'",
                application,
            )
            return count > 0

        await until(blocked, f"a backend of {application} waiting on the lock")
    finally:
        await conn.close()


@dataclass
class Tap:
    """Every event published on the broker's exchange, as it comes."""

    queue: AbstractQueue
    publisher: messaging.Publisher

    async def publish(self, *events: Event) -> None:
        for event in events:
            await self.publisher.publish_event(event)

    async def next(self, kind: type[Event], within: float = 15) -> Event:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            message = await self.queue.get(fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            await message.ack()
            event = decode(message.body)
            if isinstance(event, kind):
                return event
        raise AssertionError(f"no {kind.__name__} published within {within} s")


@contextlib.asynccontextmanager
async def tapped(broker: Broker) -> AsyncIterator[Tap]:
    """The broker's topology declared (as a role would) and a tap on its exchange."""
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        await messaging.declare_all(channel, broker.topology)
        exchange = await messaging.declare_exchange(channel, broker.topology)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(broker.exchange, routing_key="#")
        yield Tap(queue, messaging.Publisher(exchange))


async def queued(broker: Broker, subscription: messaging.Subscription) -> int:
    """Messages waiting in a subscription's queue (unacked ones come back once their
    consumer's channel is gone, so after the consumer exits this counts them too)."""
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        name = broker.topology.queue(subscription)
        queue = await channel.declare_queue(name, passive=True)
        count = queue.declaration_result.message_count
        return int(count or 0)


async def unpublished(database_url: str, schema: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        count: int = await conn.fetchval(
            f'SELECT count(*) FROM "{schema}".outbox WHERE published_at IS NULL'
        )
        return count
    finally:
        await conn.close()
