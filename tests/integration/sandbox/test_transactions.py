"""15. GET /v1/transactions: one per approval and per cancel, oldest first, paged, by KST dates."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from services.sandbox.domain import KST
from tests.integration.sandbox.support import (
    api_client,
    authenticate,
    confirm,
    running_sandbox,
    sandbox_settings,
)

TODAY = datetime.now(KST).date().isoformat()


async def listed(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    query = {"startDate": TODAY, "endDate": TODAY, **params}
    response = await client.get("/v1/transactions", params=query)
    assert response.status_code == 200, response.text
    page: list[dict[str, Any]] = response.json()
    return page


async def paid(client: httpx.AsyncClient, order_id: str, amount: int = 10000) -> str:
    key = await authenticate(client, order_id, amount)
    assert (await confirm(client, key, order_id, amount)).status_code == 200
    return key


@pytest.fixture
async def own(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A sandbox of this test's own, so that its transactions are the only ones."""
    async with running_sandbox(sandbox_settings(database_url)) as url, api_client(url) as client:
        yield client


async def test_approvals_and_cancels_are_listed_oldest_first_with_the_status_after_each(
    own: httpx.AsyncClient,
) -> None:
    key = await paid(own, "order-tx-001", 10000)
    await own.post(f"/v1/payments/{key}/cancel", json={"cancelReason": "a", "cancelAmount": 3000})
    await own.post(f"/sandbox/console/payments/{key}/cancel", json={"cancelReason": "console"})

    transactions = await listed(own)

    assert [(t["status"], t["amount"]) for t in transactions] == [
        ("DONE", 10000),
        ("PARTIAL_CANCELED", 3000),
        ("CANCELED", 7000),
    ]
    payment = (await own.get(f"/v1/payments/{key}")).json()
    assert transactions[-1]["transactionKey"] == payment["lastTransactionKey"]
    assert [t["transactionKey"] for t in transactions[1:]] == [
        c["transactionKey"] for c in payment["cancels"]
    ]


async def test_a_transaction_has_the_contracts_fields(own: httpx.AsyncClient) -> None:
    key = await paid(own, "order-tx-002", 15000)

    (transaction,) = await listed(own)

    assert set(transaction) == {
        "mId", "transactionKey", "paymentKey", "orderId", "method", "customerKey", "useEscrow",
        "receiptUrl", "status", "transactionAt", "currency", "amount",
    }  # fmt: skip
    assert (transaction["paymentKey"], transaction["orderId"]) == (key, "order-tx-002")
    assert (transaction["method"], transaction["currency"]) == ("카드", "KRW")
    assert transaction["customerKey"] == "cust_Zx81-aa"
    assert transaction["transactionAt"].endswith("+09:00")


async def test_pages_follow_starting_after_until_a_short_page(own: httpx.AsyncClient) -> None:
    for n in range(5):
        await paid(own, f"order-tx-1{n:02d}")

    pages, after = [], None
    while True:
        page = await listed(own, limit=2, **({"startingAfter": after} if after else {}))
        pages.append([t["orderId"] for t in page])
        if len(page) < 2:
            break
        after = page[-1]["transactionKey"]

    assert pages == [
        ["order-tx-100", "order-tx-101"],
        ["order-tx-102", "order-tx-103"],
        ["order-tx-104"],
    ]


async def test_dates_are_korean_days(own: httpx.AsyncClient) -> None:
    await paid(own, "order-tx-003")
    now = datetime.now(KST)
    yesterday = (now - timedelta(days=1)).date().isoformat()
    tomorrow = (now + timedelta(days=1)).date().isoformat()
    before = (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
    earlier = (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")

    assert len(await listed(own, startDate=yesterday, endDate=tomorrow)) == 1
    assert await listed(own, startDate=yesterday, endDate=yesterday) == []
    assert len(await listed(own, startDate=before, endDate=tomorrow)) == 1
    assert await listed(own, startDate=before, endDate=earlier) == []


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"startDate": TODAY},
        {"startDate": "2026-02-30", "endDate": TODAY},
        {"startDate": TODAY, "endDate": TODAY, "limit": "0"},
        {"startDate": TODAY, "endDate": TODAY, "limit": "10001"},
        {"startDate": TODAY, "endDate": TODAY, "startingAfter": "txrd_unknown"},
    ],
)
async def test_bad_parameters_are_a_400_invalid_request(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get("/v1/transactions", params=params)

    assert (response.status_code, response.json()["code"]) == (400, "INVALID_REQUEST")
    assert response.json()["message"]


async def test_transactions_need_basic_auth(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/v1/transactions",
        params={"startDate": TODAY, "endDate": TODAY},
        headers={"Authorization": ""},
    )

    assert (response.status_code, response.json()["code"]) == (401, "UNAUTHORIZED_KEY")
