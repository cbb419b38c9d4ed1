"""Throw-away databases and exchanges, for tests and benchmarks that must not touch real data."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg

from shared import topology as shared_topology
from shared.messaging import Topology
from shared.provision import drop_database_roles


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def database_of(dsn: str) -> str:
    """The database a URL names (parsed: a socket directory may follow, as ?host=/run/…)."""
    return urlsplit(dsn).path.lstrip("/")


@contextlib.asynccontextmanager
async def fresh_database(admin_dsn: str, prefix: str = "test") -> AsyncIterator[str]:
    """A new, empty database; dropped afterwards, connections and all (on a connection of its
    own: the server may have restarted meanwhile), with the roles' login roles a stack made for
    it (``<name>_<role>``: see :meth:`deploy.stack.StackConfig.role_accesses`)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await _admin(admin_dsn, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(admin_dsn, name)
    finally:
        await _admin(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await drop_database_roles(admin_dsn, name)


async def _admin(admin_dsn: str, statement: str) -> None:
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(statement)
    finally:
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
async def fresh_broker(amqp_url: str, prefix: str = "test") -> AsyncIterator[Broker]:
    """A fresh exchange name and queue prefix; every queue and exchange deleted afterwards."""
    tag = f"{prefix}-{uuid.uuid4().hex[:10]}"
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
        await channel.exchange_delete(topo.return_exchange)
