"""Where the tests' PostgreSQL and RabbitMQ come from, and how each test gets its own share.

Order of preference: ``TEST_DATABASE_URL`` / ``TEST_AMQP_URL`` from the environment, else the
local services on their default ports, else containers started with testcontainers (only where a
Docker engine exists). Each test that asks gets a fresh database and a fresh exchange and queue
prefix, removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg

from shared import topology as shared_topology
from shared.messaging import Topology

LOCAL_DATABASE = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """An admin DSN of a PostgreSQL server for the whole test session."""
    url = os.environ.get("TEST_DATABASE_URL") or LOCAL_DATABASE
    if os.environ.get("TEST_DATABASE_URL") or _reachable(url, 5432):
        yield url
        return
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver=None) as container:
        yield container.get_connection_url()


@contextlib.contextmanager
def rabbitmq_server() -> Iterator[str]:
    url = os.environ.get("TEST_AMQP_URL") or LOCAL_AMQP
    if os.environ.get("TEST_AMQP_URL") or _reachable(url, 5672):
        yield url
        return
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3.13-alpine") as container:
        params = container.get_connection_params()
        yield f"amqp://guest:guest@{params.host}:{params.port}/"


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


@contextlib.asynccontextmanager
async def fresh_database(admin_dsn: str) -> AsyncIterator[str]:
    """A new, empty database for one test (or session); dropped afterwards, connections and all."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(admin_dsn, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@dataclass(frozen=True)
class Broker:
    url: str
    topology: Topology

    @property
    def exchange(self) -> str:
        return self.topology.exchange

    @property
    def prefix(self) -> str:
        return self.topology.prefix


@contextlib.asynccontextmanager
async def fresh_broker(amqp_url: str) -> AsyncIterator[Broker]:
    """A fresh exchange name and queue prefix; every queue and exchange deleted afterwards."""
    tag = f"test-{uuid.uuid4().hex[:10]}"
    broker = Broker(amqp_url, shared_topology.topology(exchange=tag, prefix=f"{tag}."))
    try:
        yield broker
    finally:
        await delete_broker_objects(broker)


async def delete_broker_objects(broker: Broker) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        topo = broker.topology
        for sub in topo.subscriptions:
            await channel.queue_delete(topo.queue(sub))
            await channel.queue_delete(topo.dead_letter_queue(sub))
        await channel.exchange_delete(topo.exchange)
        await channel.exchange_delete(topo.dead_letter_exchange)
