"""Fixtures for the sandbox.

Most tests share one sandbox per module (its own fresh database; every test uses its own
orderIds and starts with no faults and no webhook URL). Tests about configuration, restarts or
several processes start their own sandboxes on the per-test ``database_url``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from tests import infra
from tests.integration.sandbox.support import (
    Receiver,
    api_client,
    running_sandbox,
    sandbox_settings,
    serving,
)


@pytest.fixture(scope="module")
async def sandbox_dsn(postgres_admin_dsn: str) -> AsyncIterator[str]:
    """The database of the module's shared sandbox."""
    async with infra.fresh_database(postgres_admin_dsn) as dsn:
        yield dsn


@pytest.fixture(scope="module")
async def sandbox_url(sandbox_dsn: str) -> AsyncIterator[str]:
    async with running_sandbox(sandbox_settings(sandbox_dsn)) as url:
        yield url


@pytest.fixture
async def client(sandbox_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(sandbox_url) as http:
        reset = await http.delete("/sandbox/faults")
        assert reset.status_code == 200
        unhooked = await http.put("/sandbox/webhook", json={"url": None})
        assert unhooked.status_code == 200
        yield http


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A merchant's webhook endpoint, served for this test."""
    receiver = Receiver()
    app = Starlette(routes=[Route("/webhooks", receiver.handle, methods=["POST"])])
    async with serving(app) as url:
        receiver.url = f"{url}/webhooks"
        yield receiver
