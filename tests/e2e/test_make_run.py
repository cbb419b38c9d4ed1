"""`make run` as a user meets it: it prints the storefront URL, serves it, and Ctrl-C stops all."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from deploy.stack import ROOT, free_port
from tests import infra

pytestmark = pytest.mark.e2e


def read_until(process: subprocess.Popen[str], marker: str, within: float) -> str:
    deadline = time.monotonic() + within
    assert process.stdout is not None
    seen = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen += line
        if marker in line:
            return line
    raise AssertionError(f"{marker!r} never printed; output was:\n{seen[-3000:]}")


def survivors(run_dir: str) -> list[str]:
    found = subprocess.run(["pgrep", "-af", run_dir], capture_output=True, text=True, check=False)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


def run_then_interrupt(env: dict[str, str], run_dir: str) -> None:
    """What a user does: start it, open the printed URL, press Ctrl-C."""
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = read_until(process, "Storefront:", within=90)
        url = line.split("Storefront:", 1)[1].strip()
        assert httpx.get(url, timeout=5).status_code == 200
        assert survivors(run_dir)

        process.send_signal(signal.SIGINT)

        assert process.wait(timeout=40) == 0
        time.sleep(0.5)
        assert survivors(run_dir) == []
        assert Path(run_dir, "supervisord.conf").exists()
    finally:
        if process.poll() is None:
            process.kill()


async def test_make_run_prints_a_working_storefront_url_and_ctrl_c_stops_every_process(
    postgres_admin_dsn: str, amqp_url: str
) -> None:
    async with (
        infra.fresh_database(postgres_admin_dsn) as database_url,
        infra.fresh_broker(amqp_url) as broker,
    ):
        with tempfile.TemporaryDirectory(prefix="make-run-") as run_dir:
            env = os.environ | {
                "RUN_DIR": run_dir,
                "DATABASE_URL": database_url,
                "AMQP_URL": amqp_url,
                "EVENTS_EXCHANGE": broker.exchange,
                "QUEUE_PREFIX": broker.prefix,
                "GATEWAY_PORT": str(free_port()),
                "ORDER_PORT": str(free_port()),
                "CHECKOUT_PORT": str(free_port()),
                "SANDBOX_PORT": str(free_port()),
                "DB_POOL_MAX": "3",
            }
            await asyncio.to_thread(run_then_interrupt, env, run_dir)
