"""Fixtures for the plumbing tests: a migrated schema and a broker connection per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from shared import db, messaging
from tests.infra import Broker
from tests.integration.shared.helpers import SCHEMA


@pytest.fixture
async def pool(database_url: str, tmp_path: Path) -> AsyncIterator[asyncpg.Pool]:
    """The plumbing tables (outbox, inbox) in their own schema, and no service tables."""
    await db.migrate(database_url, SCHEMA, tmp_path)
    pool = await db.create_pool(database_url, SCHEMA, min_size=1, max_size=8)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def connection(broker: Broker) -> AsyncIterator[AbstractRobustConnection]:
    connection = await messaging.connect(broker.url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def channel(connection: AbstractRobustConnection) -> AbstractChannel:
    return await connection.channel()


@pytest.fixture
async def declared(channel: AbstractChannel, broker: Broker) -> aio_pika.abc.AbstractExchange:
    """The whole topology declared; returns the events exchange."""
    await messaging.declare_all(channel, broker.topology)
    return await channel.get_exchange(broker.exchange)
