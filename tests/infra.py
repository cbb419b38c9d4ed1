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
from collections.abc import Iterator
from urllib.parse import urlsplit

from deploy.scratch import (
    Broker,
    delete_broker_objects,
    fresh_broker,
    fresh_database,
    with_database,
)

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


__all__ = [
    "Broker",
    "delete_broker_objects",
    "fresh_broker",
    "fresh_database",
    "postgres_server",
    "rabbitmq_server",
    "with_database",
]
