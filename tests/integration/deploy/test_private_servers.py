"""Private PostgreSQL and RabbitMQ (deploy/servers.py), started from the machine's packages.

None of these touches the machine's own servers: each runs on free ports with its files in a
temporary directory, and each test ends by proving that no process of its servers is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import asyncpg
import pytest

from deploy.servers import ServerError, private_postgres, private_rabbitmq
from tests import leftovers

T = TypeVar("T")


@pytest.fixture
def base_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="private-servers-") as name:
        try:
            yield Path(name)
        finally:
            leftovers.kill_all(name)


def test_a_private_postgres_accepts_connections_and_keeps_its_data_across_stop_and_start(
    base_dir: Path,
) -> None:
    with private_postgres(base_dir) as postgres:
        run(execute(postgres.admin_dsn, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)"))

        postgres.stop()
        assert not answers(postgres.port)
        postgres.start()

        assert run(fetchval(postgres.admin_dsn, "SELECT n FROM kept")) == 42
        assert run(fetchval(postgres.admin_dsn, "SHOW max_connections")) == "300"
    assert not answers(postgres.port)
    assert (postgres.data_dir / "PG_VERSION").exists()
    leftovers.wait_until_none(base_dir)


def test_a_private_postgres_runs_with_the_settings_given_and_names_its_postmaster(
    base_dir: Path,
) -> None:
    settings = {"shared_preload_libraries": "pg_stat_statements"}
    with private_postgres(base_dir, settings=settings) as postgres:
        loaded = run(fetchval(postgres.admin_dsn, "SHOW shared_preload_libraries"))
        postmaster = postgres.postmaster_pid()

        assert loaded == "pg_stat_statements"
        assert postmaster is not None
        assert Path(f"/proc/{postmaster}/cmdline").read_bytes().split(b"\0")[1:3] == [
            b"-D",
            str(postgres.data_dir).encode(),
        ]
    leftovers.wait_until_none(base_dir)


def test_a_private_postgres_is_stopped_when_the_code_using_it_raises(base_dir: Path) -> None:
    ports = []

    def use_it_and_fail() -> None:
        with private_postgres(base_dir) as postgres:
            ports.append(postgres.port)
            raise RuntimeError("the caller's own failure")

    with pytest.raises(RuntimeError, match="the caller's own"):
        use_it_and_fail()
    assert not answers(ports[0])
    leftovers.wait_until_none(base_dir)


def test_a_private_postgres_that_cannot_start_fails_with_its_own_log(base_dir: Path) -> None:
    with taken_port() as port, pytest.raises(ServerError) as failure:
        start_and_stop(private_postgres(base_dir, port=port))
    assert "Address already in use" in str(failure.value)
    assert "server.log" in str(failure.value)
    leftovers.wait_until_none(base_dir)


def test_a_private_rabbitmq_keeps_durable_queues_and_persistent_messages_across_stop_and_start(
    base_dir: Path,
) -> None:
    queues = {
        f"kept-classic-{uuid.uuid4().hex[:6]}": "classic",
        f"kept-quorum-{uuid.uuid4().hex[:6]}": "quorum",
    }
    with private_rabbitmq(base_dir) as rabbitmq:
        for queue, kind in queues.items():
            run(publish(rabbitmq.url, queue, kind, f"a message in {queue}".encode()))

        rabbitmq.stop()
        assert not answers(rabbitmq.port)
        rabbitmq.start()

        for queue, kind in queues.items():
            assert run(take(rabbitmq.url, queue, kind)) == f"a message in {queue}".encode()
    assert not answers(rabbitmq.port)
    leftovers.wait_until_none(base_dir)


def test_a_private_rabbitmq_that_cannot_start_fails_with_its_own_log(base_dir: Path) -> None:
    with taken_port() as port, pytest.raises(ServerError) as failure:
        start_and_stop(private_rabbitmq(base_dir, port=port))
    assert "eaddrinuse" in str(failure.value)
    leftovers.wait_until_none(base_dir)


# ------------------------------------------------------------------------------------------------


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start_and_stop(server: contextlib.AbstractContextManager[object]) -> None:
    with server:
        pass


@contextlib.contextmanager
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that someone else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a client on a loop of its own (the tests here are synchronous, as the servers are)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def execute(dsn: str, sql: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def fetchval(dsn: str, sql: str) -> Any:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


async def publish(url: str, queue: str, kind: str, body: bytes) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": kind})
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await channel.default_exchange.publish(message, routing_key=queue)


async def take(url: str, queue: str, kind: str) -> bytes | None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(
            queue, durable=True, arguments={"x-queue-type": kind}
        )
        message = await declared.get(no_ack=True, fail=False)
        return None if message is None else message.body
