"""Where the tests' PostgreSQL and RabbitMQ come from, and how each test gets its own share.

The same rule as `make run` (:mod:`deploy.sources`): ``TEST_DATABASE_URL`` / ``TEST_AMQP_URL``
from the environment, else the local servers that answer (``LOCAL_POSTGRES_PORT`` and
``LOCAL_RABBITMQ_PORT`` move the probe), else private servers from the machine's packages in a
temporary directory, else containers where a Docker engine answers, else private servers after
installing Debian's packages. Whatever is started lives for the whole session and is stopped at
its end. Each test that asks gets a fresh database and a fresh exchange and queue prefix,
removed afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from deploy import sources
from deploy.scratch import (
    Broker,
    delete_broker_objects,
    fresh_broker,
    fresh_database,
    with_database,
)


@functools.cache
def postgres_choice() -> sources.Choice:
    return sources.choose(sources.POSTGRES, "TEST_DATABASE_URL")


@functools.cache
def rabbitmq_choice() -> sources.Choice:
    return sources.choose(sources.RABBITMQ, "TEST_AMQP_URL")


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """An admin DSN of a PostgreSQL server for the whole test session."""
    with _provided(postgres_choice()) as url:
        yield url


@contextlib.contextmanager
def rabbitmq_server() -> Iterator[str]:
    """An AMQP URL of a RabbitMQ broker for the whole test session."""
    with _provided(rabbitmq_choice()) as url:
        yield url


@contextlib.contextmanager
def _provided(choice: sources.Choice) -> Iterator[str]:
    with (
        tempfile.TemporaryDirectory(prefix="payments-test-servers-") as base_dir,
        sources.provide(choice, Path(base_dir)) as url,
    ):
        print(choice.describe(url), file=sys.stderr)
        yield url


__all__ = [
    "Broker",
    "delete_broker_objects",
    "fresh_broker",
    "fresh_database",
    "postgres_choice",
    "postgres_server",
    "rabbitmq_choice",
    "rabbitmq_server",
    "with_database",
]
