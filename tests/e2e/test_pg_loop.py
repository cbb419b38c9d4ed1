"""The loop with the PG on the real stack: webhooks within seconds, reconciliation for what they
miss. The sandbox sends its webhooks to the gateway's /webhooks/toss, as the PG would."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest

from deploy.stack import ROOT
from services.approval.reconciliation import KST
from tests.e2e import faults
from tests.e2e.buyer import Buyer
from tests.e2e.faults import FaultStack

pytestmark = pytest.mark.e2e

SECRET_KEY = "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R"


@pytest.fixture(scope="module")
async def stack(postgres_admin_dsn: str, amqp_url: str) -> AsyncIterator[FaultStack]:
    async with faults.fault_stack(postgres_admin_dsn, amqp_url, workers=2) as fs:
        yield fs


@pytest.fixture
async def buyer(stack: FaultStack) -> AsyncIterator[Buyer]:
    async with Buyer.for_stack(stack.config) as customer:
        try:
            yield customer
        finally:
            await stack.faults(webhooks={"dropRate": 0})


async def paid(buyer: Buyer, **body: Any) -> dict[str, Any]:
    order = await buyer.place_order(**body)
    await faults.pay(buyer, order)
    await buyer.wait_for(order["orderId"], lambda o: o["status"] == "PAID")
    return order


async def console_cancel(buyer: Buyer, payment_key: str, amount: int | None = None) -> None:
    body: dict[str, Any] = {"cancelReason": "canceled in the console"}
    if amount is not None:
        body["cancelAmount"] = amount
    response = await buyer.sandbox.post(
        f"/sandbox/console/payments/{payment_key}/cancel", json=body
    )
    assert response.status_code == 200, response.text


def webhook(payment_key: str, order_id: str, status: str = "DONE", **extra: Any) -> bytes:
    data = {"paymentKey": payment_key, "orderId": order_id, "status": status, **extra}
    return orjson.dumps({"eventType": "PAYMENT_STATUS_CHANGED", "createdAt": "x", "data": data})


async def post_webhook(
    buyer: Buyer, body: bytes, transmission: str | None = None
) -> httpx.Response:
    headers = {
        "content-type": "application/json",
        "tosspayments-webhook-transmission-id": transmission or f"whtrans_{uuid.uuid4().hex}",
    }
    return await buyer.gateway.post("/webhooks/toss", content=body, headers=headers)


def reconcile(fs: FaultStack, report_dir: Path) -> subprocess.CompletedProcess[str]:
    """`make reconcile` for today, against the stack, as an operator runs it beside the system."""
    env = {
        **fs.config.environment(),
        "DATABASE_URL": fs.database_url,
        "TOSS_API_BASE": fs.config.sandbox_url,
    }
    today = datetime.now(UTC).astimezone(KST).date().isoformat()
    command = [
        sys.executable,
        "-m",
        "services.approval",
        "reconcile",
        "--date",
        today,
        "--report-dir",
        str(report_dir),
    ]
    return subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False
    )


def report_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON report whose path the command printed last."""
    path = Path(done.stdout.strip().splitlines()[-1])
    report: dict[str, Any] = orjson.loads(path.read_bytes())
    return report


async def test_console_cancels_partial_then_full_reach_the_order_with_points_in_proportion(
    buyer: Buyer,
) -> None:
    before = (await buyer.gateway.get("/api/me")).json()["pointsBalance"]
    order = await paid(buyer, points=1_000)
    key = (await buyer.order(order["orderId"]))["payment"]["paymentKey"]
    part = order["amount"] // 4

    await console_cancel(buyer, key, part)
    partly = await buyer.wait_for(order["orderId"], lambda o: o["status"] == "PARTIALLY_REFUNDED")
    points_partly = (await buyer.gateway.get("/api/me")).json()["pointsBalance"]
    await console_cancel(buyer, key)
    refunded = await buyer.wait_for(order["orderId"], lambda o: o["status"] == "REFUNDED")

    assert partly["refundedAmount"] == part
    assert points_partly == before - 1_000 + 1_000 * part // order["amount"]
    assert refunded["refundedAmount"] == order["amount"]
    assert (await buyer.gateway.get("/api/me")).json()["pointsBalance"] == before


async def test_a_payment_confirmed_by_hand_at_the_pg_reaches_the_order(buyer: Buyer) -> None:
    order = await buyer.place_order(points=100)
    location = await buyer.authenticate(order)  # the buyer never comes back to us
    payment_key = parse_qs(urlsplit(location).query)["paymentKey"][0]

    confirmed = await buyer.sandbox.post(
        "/v1/payments/confirm",
        auth=(SECRET_KEY, ""),
        json={"paymentKey": payment_key, "orderId": order["orderId"], "amount": order["amount"]},
    )

    assert confirmed.status_code == 200
    final = await buyer.wait_for(order["orderId"], lambda o: o["status"] == "PAID")
    assert final["payment"]["paymentKey"] == payment_key


async def test_a_webhook_about_a_payment_the_pg_does_not_know_changes_nothing(
    buyer: Buyer,
) -> None:
    order = await buyer.place_order(points=100)

    response = await post_webhook(buyer, webhook("tsbx_forged_by_a_stranger", order["orderId"]))
    await asyncio.sleep(2)

    assert (response.status_code, response.json()["status"]) == (200, "accepted")
    assert (await buyer.order(order["orderId"]))["status"] == "PENDING"


async def test_a_webhook_that_lies_about_a_real_payment_changes_nothing(buyer: Buyer) -> None:
    order = await paid(buyer, points=100)
    key = (await buyer.order(order["orderId"]))["payment"]["paymentKey"]

    lie = webhook(key, order["orderId"], "CANCELED", totalAmount=order["amount"], balanceAmount=0)
    response = await post_webhook(buyer, lie)
    await asyncio.sleep(2)

    assert response.status_code == 200
    final = await buyer.order(order["orderId"])
    assert (final["status"], final["refundedAmount"]) == ("PAID", 0)


async def test_a_replayed_webhook_is_a_no_op_answered_2xx(buyer: Buyer) -> None:
    order = await buyer.place_order(points=100)
    body, transmission = webhook("tsbx_whatever", order["orderId"]), f"whtrans_{uuid.uuid4().hex}"

    first = await post_webhook(buyer, body, transmission)
    again = await post_webhook(buyer, body, transmission)

    assert (first.json()["status"], again.status_code, again.json()["status"]) == (
        "accepted",
        200,
        "duplicate",
    )


async def test_a_malformed_webhook_gets_a_4xx_problem(buyer: Buyer) -> None:
    response = await post_webhook(buyer, b"{not json")

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_webhooks_the_pg_dropped_are_caught_and_healed_by_make_reconcile(
    stack: FaultStack, buyer: Buyer, tmp_path: Path
) -> None:
    order = await paid(buyer, points=100)
    key = (await buyer.order(order["orderId"]))["payment"]["paymentKey"]
    await stack.faults(webhooks={"dropRate": 1})
    await console_cancel(buyer, key)
    await asyncio.sleep(2)
    assert (await buyer.order(order["orderId"]))["status"] == "PAID"  # nobody told us

    done = await asyncio.to_thread(reconcile, stack, tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    report = report_of(done)
    assert report["healed"] == {"REFUNDED_DIFFERS": 1}
    assert report["unresolvedTotal"] == 0
    await buyer.wait_for(order["orderId"], lambda o: o["status"] == "REFUNDED")


class TestADiscrepancyWithNoClearRule:
    async def test_makes_make_reconcile_exit_non_zero_and_is_in_its_report(
        self, postgres_admin_dsn: str, amqp_url: str, tmp_path: Path
    ) -> None:
        async with faults.fault_stack(postgres_admin_dsn, amqp_url, workers=1) as fs:
            async with Buyer.for_stack(fs.config) as buyer:
                stranger = {
                    "orderId": f"stranger-{uuid.uuid4().hex[:10]}",
                    "amount": 12_000,
                    "orderName": "Not ours",
                    "customerKey": "cus_stranger",
                }
                location = await buyer.authenticate(stranger)
                key = parse_qs(urlsplit(location).query)["paymentKey"][0]
                confirmed = await buyer.sandbox.post(
                    "/v1/payments/confirm",
                    auth=(SECRET_KEY, ""),
                    json={"paymentKey": key, "orderId": stranger["orderId"], "amount": 12_000},
                )
                assert confirmed.status_code == 200

            done = await asyncio.to_thread(reconcile, fs, tmp_path)

        assert done.returncode == 1, done.stdout + done.stderr
        report = report_of(done)
        [discrepancy] = report["discrepancies"]
        assert (discrepancy["kind"], discrepancy["paymentKey"]) == ("MISSING_OURS", key)
