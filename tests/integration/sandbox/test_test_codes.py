"""5. TossPayments-Test-Code answers that code's documented status and body (test keys only)."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.sandbox.support import authenticate, confirm, ledger


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("INVALID_CARD_EXPIRATION", 400),
        ("REJECT_CARD_PAYMENT", 403),
        ("NOT_FOUND_PAYMENT_SESSION", 404),
        ("FAILED_INTERNAL_SYSTEM_PROCESSING", 500),
    ],
)
async def test_a_test_code_answers_its_documented_status_and_body_without_approving(
    client: httpx.AsyncClient, code: str, status: int
) -> None:
    order_id = f"order-code-{status}"
    key = await authenticate(client, order_id, 15000)

    response = await client.post(
        "/v1/payments/confirm",
        json={"paymentKey": key, "orderId": order_id, "amount": 15000},
        headers={"TossPayments-Test-Code": code},
    )

    assert response.status_code == status
    assert response.json()["code"] == code
    assert response.json()["message"]
    (entry,) = await ledger(client, order_id)
    assert entry["approvals"] == 0


async def test_without_a_test_code_the_same_call_works(client: httpx.AsyncClient) -> None:
    key = await authenticate(client, "order-code-02", 15000)

    response = await confirm(client, key, "order-code-02", 15000)

    assert response.status_code == 200


def asking(code: str) -> dict[str, str]:
    return {"TossPayments-Test-Code": code}


async def test_reject_card_company_is_a_403(client: httpx.AsyncClient) -> None:
    key = await authenticate(client, "order-code-03", 15000)

    response = await client.post(
        "/v1/payments/confirm",
        json={"paymentKey": key, "orderId": "order-code-03", "amount": 15000},
        headers=asking("REJECT_CARD_COMPANY"),
    )

    assert (response.status_code, response.json()["code"]) == (403, "REJECT_CARD_COMPANY")


async def test_a_test_code_answers_the_lookup_by_key(client: httpx.AsyncClient) -> None:
    key = await authenticate(client, "order-code-04", 15000)

    response = await client.get(
        f"/v1/payments/{key}", headers=asking("FORBIDDEN_CONSECUTIVE_REQUEST")
    )

    assert (response.status_code, response.json()["code"]) == (
        403,
        "FORBIDDEN_CONSECUTIVE_REQUEST",
    )


async def test_a_test_code_answers_the_lookup_by_order(client: httpx.AsyncClient) -> None:
    await authenticate(client, "order-code-05", 15000)

    response = await client.get(
        "/v1/payments/orders/order-code-05",
        headers=asking("NOT_SUPPORTED_MONTHLY_INSTALLMENT_PLAN_BELOW_AMOUNT"),
    )

    assert (response.status_code, response.json()["code"]) == (
        400,
        "NOT_SUPPORTED_MONTHLY_INSTALLMENT_PLAN_BELOW_AMOUNT",
    )


async def test_a_test_code_answers_the_cancel_without_canceling(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-code-06", 15000)
    await confirm(client, key, "order-code-06", 15000)

    response = await client.post(
        f"/v1/payments/{key}/cancel",
        json={"cancelReason": "test"},
        headers=asking("FAILED_REFUND_PROCESS"),
    )

    assert (response.status_code, response.json()["code"]) == (500, "FAILED_REFUND_PROCESS")
    (entry,) = await ledger(client, "order-code-06")
    assert (entry["status"], entry["cancels"]) == ("DONE", [])


async def test_a_test_code_answers_the_transactions(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/v1/transactions",
        params={"startDate": "2026-01-01", "endDate": "2026-01-01"},
        headers=asking("FORBIDDEN_REQUEST"),
    )

    assert (response.status_code, response.json()["code"]) == (403, "FORBIDDEN_REQUEST")
