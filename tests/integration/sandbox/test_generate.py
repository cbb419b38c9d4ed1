"""17. The bulk generator: DONE payments (and cancels) of one KST day with their transactions,
set-based, without webhooks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.integration.sandbox.support import (
    Receiver,
    api_client,
    ledger,
    running_sandbox,
    sandbox_settings,
)

DAY = "2026-03-01"


@pytest.fixture
async def own(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A sandbox of this test's own, so that what it generates is all there is."""
    async with running_sandbox(sandbox_settings(database_url)) as url, api_client(url) as client:
        yield client


async def generate(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/sandbox/generate", json={"date": DAY, **body}, timeout=120)
    assert response.status_code == 200, response.text
    summary: dict[str, Any] = response.json()
    return summary


async def day_transactions(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    params = {"startDate": DAY, "endDate": DAY, "limit": "10000"}
    response = await client.get("/v1/transactions", params=params)
    page: list[dict[str, Any]] = response.json()
    return page


async def test_generated_payments_are_done_on_that_day_with_their_transactions(
    own: httpx.AsyncClient,
) -> None:
    summary = await generate(own, payments=300, cancelRate=0.3, orderIdPrefix="bench_")

    transactions = await day_transactions(own)
    approvals = [t for t in transactions if t["status"] == "DONE"]
    cancels = [t for t in transactions if t["status"] != "DONE"]

    assert summary["payments"] == len(approvals) == 300
    assert summary["transactions"] == len(transactions)
    assert summary["canceled"] + summary["partiallyCanceled"] == len(cancels) > 0
    assert summary["totalAmount"] == sum(t["amount"] for t in approvals)
    assert summary["canceledAmount"] == sum(t["amount"] for t in cancels)
    assert all(t["transactionAt"].startswith(DAY) for t in transactions)
    assert [t["transactionAt"] for t in transactions] == sorted(
        t["transactionAt"] for t in transactions
    )
    assert all(t["orderId"].startswith(summary["orderIdPrefix"]) for t in transactions)
    assert summary["orderIdPrefix"].startswith("bench_")


async def test_a_generated_payment_answers_like_any_other(own: httpx.AsyncClient) -> None:
    await generate(own, payments=20, cancelRate=1.0)
    (first, *_) = await day_transactions(own)

    by_order = await own.get(f"/v1/payments/orders/{first['orderId']}")
    by_key = await own.get(f"/v1/payments/{first['paymentKey']}")

    assert by_order.status_code == by_key.status_code == 200
    payment = by_key.json()
    assert payment["status"] in ("CANCELED", "PARTIAL_CANCELED")
    assert payment["approvedAt"].startswith(DAY)
    assert (
        payment["balanceAmount"] == payment["totalAmount"] - payment["cancels"][0]["cancelAmount"]
    )
    (entry,) = await ledger(own, first["orderId"])
    assert (entry["approvals"], entry["confirmCalls"]) == (1, 1)


async def test_generating_sends_no_webhooks(database_url: str, receiver: Receiver) -> None:
    settings = sandbox_settings(database_url, sandbox_webhook_url=receiver.url)
    async with running_sandbox(settings) as url, api_client(url) as client:
        await generate(client, payments=50, cancelRate=0.5)
        await asyncio.sleep(0.3)

    assert receiver.calls == []


async def test_a_hundred_thousand_payments_take_seconds(own: httpx.AsyncClient) -> None:
    started = time.monotonic()
    summary = await generate(own, payments=100_000, cancelRate=0.1)

    assert summary["payments"] == 100_000
    assert time.monotonic() - started < 30  # about 5 s on two shared cores


async def test_a_bad_generator_body_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/sandbox/generate", json={"date": "soon", "payments": 10})

    assert (response.status_code, response.json()["code"]) == (400, "INVALID_REQUEST")
