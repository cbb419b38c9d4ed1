"""Fixtures every tier shares: real PostgreSQL and RabbitMQ, isolated per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from tests import infra

# Roles built inside a test serve no /metrics unless the test gives them a port: every role's
# default port would collide between test runs side by side (the e2e stacks get free ports).
os.environ.setdefault("METRICS_PORT", "0")

# Shared fixture modules: the browser (Debian's chromium under Playwright).
pytest_plugins = ["tests.browser"]


def pytest_report_header() -> list[str]:
    """Which PostgreSQL and RabbitMQ the session uses, and why (decided once, started lazily)."""
    return [
        f"servers: {choice.describe()}"
        for choice in (infra.postgres_choice(), infra.rabbitmq_choice())
    ]


@pytest.fixture(scope="session")
def postgres_admin_dsn() -> Iterator[str]:
    with infra.postgres_server() as dsn:
        yield dsn


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    with infra.rabbitmq_server() as url:
        yield url


@pytest.fixture
async def database_url(postgres_admin_dsn: str) -> AsyncIterator[str]:
    """A new empty database for this test only."""
    async with infra.fresh_database(postgres_admin_dsn) as dsn:
        yield dsn


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[infra.Broker]:
    """A fresh exchange and queue prefix for this test only."""
    async with infra.fresh_broker(amqp_url) as fresh:
        yield fresh
