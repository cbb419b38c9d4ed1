"""The real processes under supervisord, on free ports, with their own database and exchange."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from deploy.stack import Stack, StackConfig
from tests import infra
from tests.e2e.buyer import Buyer

# Test stacks run beside each other (the session's and the fault tests' own) on one PostgreSQL
# with its default 100 connections: small pools keep every stack well inside that budget.
LEAN_POOLS = {"DB_POOL_MIN": "1", "DB_POOL_MAX": "5"}


@contextlib.asynccontextmanager
async def running_stack(
    admin_dsn: str,
    amqp_url: str,
    prefix: str,
    *,
    approval_workers: int = 1,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[Stack]:
    """A whole stack of its own (database, exchange, ports, run directory), stopped afterwards;
    its logs are printed when the code using it fails."""
    async with (
        infra.fresh_database(admin_dsn) as database_url,
        infra.fresh_broker(amqp_url) as broker,
    ):
        with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as run_dir:
            config = StackConfig.on_free_ports(
                Path(run_dir),
                database_url,
                amqp_url,
                exchange=broker.exchange,
                queue_prefix=broker.prefix,
                approval_workers=approval_workers,
                extra_env={**LEAN_POOLS, **(extra_env or {})},
            )
            running = Stack(config)
            try:
                running.start(timeout=90)
                yield running
            except BaseException:
                _print_logs(Path(run_dir))
                raise
            finally:
                running.stop()


@pytest.fixture(scope="session")
async def stack(postgres_admin_dsn: str, amqp_url: str) -> AsyncIterator[Stack]:
    async with running_stack(postgres_admin_dsn, amqp_url, "stack", approval_workers=2) as running:
        yield running


def _print_logs(run_dir: Path) -> None:
    for log in sorted((run_dir / "logs").glob("*.log")):
        print(f"----- {log.name}\n{log.read_text()[-3000:]}")


@pytest.fixture
async def buyer(stack: Stack) -> AsyncIterator[Buyer]:
    async with Buyer.for_stack(stack.config) as customer:
        yield customer


@pytest.fixture
async def sandbox(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.config.sandbox_url, timeout=10) as client:
        yield client
