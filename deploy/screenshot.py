"""``python -m deploy.screenshot [--prometheus-only] [OUT]``: a picture of the operator console
with something on every table, for the README (default ``docs/img/ops-console.png``), and two of
Prometheus watching that stack (``docs/img/prometheus-alerts.png``, ``prometheus-graph.png``).

It starts a stack of its own, as the tests do (free ports, a throw-away database and exchange,
the local or private servers of ``make run``'s rule), with a 45-second confirm window so that a
payment gets stuck within a minute, and puts through the real flows: a few payments, a tampered
redirect (a security event), a refund the PG refuses (FAILED), a payment whose confirm the PG
keeps failing (stuck past the window), a message order cannot decode (a dead letter), a
reconciliation of the day and then 30 payments about a second apart, a quarter of them declined
by the card company. Prometheus (:mod:`deploy.prometheus_shot`, as ``make observe`` starts
it) scrapes the stack from its start; once its alerts fire, Debian's chromium (Playwright) takes
its alerts and graph pages. Then (unless ``--prometheus-only``) it signs in to the console,
replays the dead letter (the Replay button: an audited action) and takes the page; Prometheus and
the stack are stopped and the stack's database, exchange and users removed, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import aio_pika
import asyncpg
import httpx
from playwright.async_api import async_playwright

from deploy import prometheus_shot
from deploy.scratch import fresh_broker, fresh_database
from deploy.stack import ROOT, Stack, StackConfig
from services.approval.reconciliation import KST
from shared import messaging
from shared.events import PaymentApproved
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.buyer import Buyer
from tests.integration.shared.helpers import eventually

ADMIN_DSN = os.environ.get(
    "SCREENSHOT_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1/postgres"
)
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
OUT = ROOT / "docs" / "img" / "ops-console.png"
WINDOW_SECONDS = 45
SHORT_WINDOW = {
    "CONFIRM_WINDOW_SECONDS": str(WINDOW_SECONDS),
    "CONFIRM_SAFETY_MARGIN_SECONDS": "25",
    "UNKNOWN_BACKOFF_MAX_SECONDS": "5",
    "LOG_LEVEL": "WARNING",
}
TRAFFIC = 30
TRAFFIC_PACE_SECONDS = 1.0  # a rate held for most of a minute, rather than a spike, to graph
DECLINES = {"errorRate": 0.25, "errorCode": "REJECT_CARD_COMPANY"}


@contextlib.asynccontextmanager
async def running_stack(run_dir: Path) -> AsyncIterator[Stack]:
    async with (
        fresh_database(ADMIN_DSN, prefix="shot") as database_url,
        fresh_broker(AMQP_URL, prefix="shot") as broker,
    ):
        config = StackConfig.on_free_ports(
            run_dir,
            database_url,
            AMQP_URL,
            exchange=broker.exchange,
            queue_prefix=broker.prefix,
            extra_env=SHORT_WINDOW,
        )
        stack = Stack(config)
        try:
            stack.start(timeout=120)
            yield stack
        finally:
            stack.stop()


async def paid(buyer: Buyer) -> dict[str, object]:
    order = await buyer.place_order()
    await buyer.pay(order)
    return await buyer.wait_for(str(order["orderId"]), lambda o: o["status"] == "PAID")


async def state_of(db: asyncpg.Connection, table: str, key: str, value: str) -> str | None:
    column = "payment_key" if table == "payment_attempts" else "order_id"
    found: str | None = await db.fetchval(
        f"SELECT state FROM approval.{table} WHERE {column} = $1 AND state = $2", key, value
    )
    return found


async def refused_refund(buyer: Buyer, sandbox: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    order = await paid(buyer)
    refusal = {"errorRate": 1, "errorCode": "NOT_CANCELABLE_PAYMENT"}
    (await sandbox.put("/sandbox/faults", json={"cancel": refusal})).raise_for_status()
    order_id = str(order["orderId"])
    cancel = await buyer.gateway.post(
        f"/api/orders/{order_id}/cancel", json={"reason": "changed my mind"}
    )
    cancel.raise_for_status()

    async def failed() -> bool:
        return await state_of(db, "refunds", order_id, "FAILED") is not None

    await eventually(failed, within=60)


async def stuck_payment(buyer: Buyer, sandbox: httpx.AsyncClient, db: asyncpg.Connection) -> None:
    """The PG fails every confirm until our window has closed: the payment stays UNKNOWN."""
    failing = {"errorRate": 1, "errorCode": "FAILED_INTERNAL_SYSTEM_PROCESSING"}
    (await sandbox.put("/sandbox/faults", json={"confirm": failing})).raise_for_status()
    order = await buyer.place_order()
    location = await buyer.authenticate(order)
    await buyer.follow_redirect(location)
    payment_key = httpx.URL(location).params["paymentKey"]

    async def unknown() -> bool:
        return await state_of(db, "payment_attempts", payment_key, "UNKNOWN") is not None

    await eventually(unknown, within=60)
    await asyncio.sleep(WINDOW_SECONDS)  # no confirm is sent any more: it stays UNKNOWN
    (await sandbox.delete("/sandbox/faults")).raise_for_status()


async def tampered(buyer: Buyer) -> None:
    order = await buyer.place_order()
    await buyer.follow_redirect(await buyer.authenticate(order), amount="100")


async def dead_letter(stack: Stack) -> None:
    connection = await aio_pika.connect(stack.config.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(stack.config.events_exchange)
        message = aio_pika.Message(b'{"type": "PaymentApproved"', message_id=str(uuid.uuid4()))
        await messaging.publish_confirmed(exchange, message, PaymentApproved.routing_key)


def reconcile(stack: Stack) -> None:
    """``make reconcile`` for today (Asia/Seoul), as approval (it holds the PG key)."""
    today = datetime.now(KST).date().isoformat()
    report_dir = stack.config.run_dir / "reconciliation"
    subprocess.run(  # noqa: S603 - our own command
        [
            sys.executable,
            "-m",
            "services.approval",
            "reconcile",
            "--date",
            today,
            "--report-dir",
            str(report_dir),
        ],
        env=stack.program_environment("approval"),
        cwd=ROOT,
        capture_output=True,
        check=False,
    )


async def populate(stack: Stack) -> None:
    async with (
        Buyer.for_stack(stack.config) as buyer,
        httpx.AsyncClient(base_url=stack.config.sandbox_url, timeout=10) as sandbox,
    ):
        db = await asyncpg.connect(stack.config.database_url)
        try:
            for _ in range(3):
                await paid(buyer)
            await tampered(buyer)
            await refused_refund(buyer, sandbox, db)
            await stuck_payment(buyer, sandbox, db)
            await dead_letter(stack)
            await asyncio.to_thread(reconcile, stack)
        finally:
            await db.close()


async def photograph(stack: Stack, out: Path) -> None:
    user, password = stack.config.operator
    url = f"http://127.0.0.1:{stack.config.gateway_port}/ops/"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(
                http_credentials={"username": user, "password": password},
                viewport={"width": 1440, "height": 900},
            )
            page = await context.new_page()
            await page.goto(url)
            # An operator's click, CSRF token and Origin as the browser sends them: audited.
            await page.click("#dead-letters form button")
            answer = await page.text_content("#message")
            if "sent back" not in (answer or ""):
                raise RuntimeError(f"the replay was refused: {answer}")
            response = await page.goto(url)
            if response is None or response.status != 200:
                raise RuntimeError(f"the console answered {response and response.status}")
            out.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(out), full_page=True)
        finally:
            await browser.close()


async def settled(buyer: Buyer, db: asyncpg.Connection) -> None:
    order = await buyer.place_order()
    location = await buyer.authenticate(order)
    await buyer.follow_redirect(location)
    payment_key = httpx.URL(location).params["paymentKey"]

    async def done() -> bool:
        state = await db.fetchval(
            "SELECT state FROM approval.payment_attempts WHERE payment_key = $1", payment_key
        )
        return state in {"APPROVED", "DECLINED"}

    await eventually(done, within=30)


async def traffic(stack: Stack) -> None:
    """Payments one after another, some declined by the card company: something to graph."""
    async with (
        Buyer.for_stack(stack.config) as buyer,
        httpx.AsyncClient(base_url=stack.config.sandbox_url, timeout=10) as sandbox,
    ):
        (await sandbox.put("/sandbox/faults", json={"confirm": DECLINES})).raise_for_status()
        db = await asyncpg.connect(stack.config.database_url)
        try:
            for _ in range(TRAFFIC):
                await settled(buyer, db)
                await asyncio.sleep(TRAFFIC_PACE_SECONDS)
        finally:
            await db.close()
            (await sandbox.delete("/sandbox/faults")).raise_for_status()


async def observed(stack: Stack) -> None:
    """The situations put through under Prometheus' eye, its pictures taken before the console's
    replay clears the dead letter."""
    with prometheus_shot.running_prometheus(stack.config.run_dir) as prometheus:
        targets = len(stack.config.metrics_targets())
        await prometheus_shot.wait_for_targets(prometheus, targets)
        await populate(stack)
        await traffic(stack)
        await prometheus_shot.wait_for_alerts(prometheus)
        await prometheus_shot.photograph(prometheus)
    print(prometheus_shot.ALERTS_OUT, prometheus_shot.GRAPH_OUT, sep="\n")


async def main(out: Path, *, console: bool = True) -> int:
    with tempfile.TemporaryDirectory(prefix="screenshot-") as run_dir:
        async with running_stack(Path(run_dir)) as stack:
            await observed(stack)
            if console:
                await photograph(stack, out)
                print(out)
    return 0


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m deploy.screenshot", description=__doc__)
    parser.add_argument("out", nargs="?", type=Path, default=OUT, help="the console's picture")
    parser.add_argument(
        "--prometheus-only", action="store_true", help="only Prometheus' two pictures"
    )
    return parser.parse_args()


if __name__ == "__main__":
    args = arguments()
    sys.exit(asyncio.run(main(args.out, console=not args.prometheus_only)))
