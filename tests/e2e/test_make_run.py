"""`make run` as a user meets it: it prints the storefront URL, serves it, and Ctrl-C stops all.

Each run gets a tag in its environment that every process it starts inherits; after Ctrl-C no
process may carry it (nor work inside the run directory), the run's process group must be empty
and the servers it started must no longer answer. Whatever the test's outcome, a finalizer
interrupts the run and kills anything of it that is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from deploy.stack import ROOT, StackConfig, broker_admin_for, free_port
from shared import metrics
from shared.topology import CONSUMES, REPLAYS
from tests import infra, leftovers
from tests.e2e.buyer import Buyer

pytestmark = pytest.mark.e2e

SERVER_VARIABLES = ("DATABASE_URL", "AMQP_URL", "TEST_DATABASE_URL", "TEST_AMQP_URL")


@dataclass
class MakeRun:
    """A running `python -m deploy`, its output read as it comes."""

    process: subprocess.Popen[str]
    run_dir: Path
    tag: str
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def read_until(self, marker: str, within: float) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if marker in line:
                return line
        output = "".join(self.seen)[-4000:]
        raise AssertionError(f"{marker!r} never printed; output was:\n{output}")

    def ctrl_c(self, within: float = 60) -> int:
        """What a terminal does on Ctrl-C: SIGINT to the whole foreground process group."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(within)

    def leftovers(self) -> dict[int, str]:
        return leftovers.processes_of(self.run_dir, self.tag)


@contextlib.contextmanager
def make_run(env: dict[str, str], run_dir: Path) -> Iterator[MakeRun]:
    tag = uuid.uuid4().hex
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy"],
        cwd=ROOT,
        env=env | {leftovers.TAG_VARIABLE: tag},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a process group of its own, as a shell's foreground job
    )
    run = MakeRun(process, run_dir, tag)
    assert process.stdout is not None
    threading.Thread(target=_pump, args=(process.stdout, run.lines), daemon=True).start()
    try:
        yield run
    finally:
        if process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired, ProcessLookupError):
                run.ctrl_c()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        leftovers.kill_all(run_dir, tag)


def _pump(stream: Iterator[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def assert_nothing_left(run: MakeRun, ports: list[int]) -> None:
    assert leftovers.group_members(run.process.pid) == []
    leftovers.wait_until_none(run.run_dir, run.tag)
    for port in ports:
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection(("127.0.0.1", port), timeout=1),
        ):
            pass


def stack_environment(run_dir: Path) -> dict[str, str]:
    """A run beside any other: its own run directory and ports, lean pools."""
    environment = {key: value for key, value in os.environ.items() if key not in SERVER_VARIABLES}
    return environment | {
        "RUN_DIR": str(run_dir),
        "GATEWAY_PORT": str(free_port()),
        "ORDER_PORT": str(free_port()),
        "CHECKOUT_PORT": str(free_port()),
        "SANDBOX_PORT": str(free_port()),
        **{f"{role.upper()}_METRICS_PORT": str(free_port()) for role in metrics.DEFAULT_PORTS},
        "DB_POOL_MAX": "3",
    }


def as_config(env: dict[str, str], run_dir: Path) -> StackConfig:
    return StackConfig(
        run_dir=run_dir,
        database_url="",
        amqp_url="",
        gateway_port=int(env["GATEWAY_PORT"]),
        sandbox_port=int(env["SANDBOX_PORT"]),
    )


def private_port(line: str, name: str) -> int:
    match = re.search(rf"{name}: a private server at 127\.0\.0\.1:(\d+)", line)
    assert match, f"{name} is not a private server: {line!r}"
    return int(match.group(1))


async def test_make_run_prints_a_working_storefront_url_and_ctrl_c_stops_every_process(
    postgres_admin_dsn: str, amqp_url: str
) -> None:
    async with (
        infra.fresh_database(postgres_admin_dsn) as database_url,
        infra.fresh_broker(amqp_url) as broker,
    ):
        with tempfile.TemporaryDirectory(prefix="make-run-") as name:
            run_dir = Path(name)
            env = stack_environment(run_dir) | {
                "DATABASE_URL": database_url,
                "AMQP_URL": amqp_url,
                "EVENTS_EXCHANGE": broker.exchange,
                "QUEUE_PREFIX": broker.prefix,
            }
            with make_run(env, run_dir) as run:
                run.read_until("PostgreSQL: the server in DATABASE_URL", within=30)
                line = run.read_until("Storefront:", within=120)
                url = line.split("Storefront:", 1)[1].strip()
                async with httpx.AsyncClient(timeout=5) as client:
                    assert (await client.get(url)).status_code == 200
                assert run.leftovers()

                assert run.ctrl_c() == 0

                assert_nothing_left(run, [int(env["GATEWAY_PORT"]), int(env["ORDER_PORT"])])
                assert (run_dir / "supervisord.conf").exists()
            # make run keeps its roles' broker users between runs; this test's go now (its
            # database roles go with its database).
            users = [f"{broker.exchange}.{role}" for role in (*CONSUMES, *REPLAYS)]
            await asyncio.to_thread(remove_broker_users, amqp_url, users)


def remove_broker_users(amqp_url: str, names: list[str]) -> None:
    admin = broker_admin_for(amqp_url)
    if admin is not None:
        admin.delete_users(names)


async def test_make_run_on_a_bare_machine_pays_on_private_servers_and_ctrl_c_leaves_nothing() -> (
    None
):
    with tempfile.TemporaryDirectory(prefix="make-run-bare-") as name:
        run_dir = Path(name)
        env = stack_environment(run_dir) | {
            # Nothing answers where the local probe looks: as on a machine without servers.
            "LOCAL_POSTGRES_PORT": str(free_port()),
            "LOCAL_RABBITMQ_PORT": str(free_port()),
            "EVENTS_EXCHANGE": "payments",
            "QUEUE_PREFIX": "",
        }
        with make_run(env, run_dir) as run:
            postgres_port = private_port(run.read_until("PostgreSQL:", within=60), "PostgreSQL")
            rabbitmq_port = private_port(run.read_until("RabbitMQ:", within=90), "RabbitMQ")
            run.read_until("Storefront:", within=150)

            async with Buyer.for_stack(as_config(env, run_dir)) as buyer:
                order = await buyer.place_order()
                await buyer.pay(order)
                await buyer.wait_for(order["orderId"], lambda found: found["status"] == "PAID")
                [payment] = await buyer.ledger(order["orderId"])
            assert (payment["status"], payment["approvals"]) == ("DONE", 1)

            assert run.ctrl_c() == 0

            assert_nothing_left(run, [postgres_port, rabbitmq_port, int(env["GATEWAY_PORT"])])
            assert (run_dir / "postgres" / "data" / "PG_VERSION").exists()


async def test_make_run_that_fails_to_start_says_why_and_stops_the_servers_it_started() -> None:
    with tempfile.TemporaryDirectory(prefix="make-run-failing-") as name, not_postgres() as port:
        run_dir = Path(name)
        env = stack_environment(run_dir) | {
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/payments",
            "LOCAL_RABBITMQ_PORT": str(free_port()),
        }
        with make_run(env, run_dir) as run:
            rabbitmq_port = private_port(run.read_until("RabbitMQ:", within=90), "RabbitMQ")
            run.read_until(f"failed to start: PostgreSQL at 127.0.0.1:{port}", within=60)

            assert run.process.wait(30) == 1

            assert_nothing_left(run, [rabbitmq_port])


@contextlib.contextmanager
def not_postgres() -> Iterator[int]:
    """A port that answers like no PostgreSQL does: every connection is closed at once."""
    server = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=_hang_up_on_everyone, args=(server,), daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def _hang_up_on_everyone(server: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while True:
            server.accept()[0].close()
