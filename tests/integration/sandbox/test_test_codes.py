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
