"""14. Cancels made in the merchant console: no Basic auth, no Idempotency-Key, the API's rules,
recorded in cancels[] and transactions, announced by webhook."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.sandbox.support import Receiver, authenticate, confirm


async def console_cancel(
    client: httpx.AsyncClient, payment_key: str, **body: Any
) -> httpx.Response:
    return await client.post(
        f"/sandbox/console/payments/{payment_key}/cancel",
        json=body,
        headers={"Authorization": ""},
    )


async def paid(client: httpx.AsyncClient, order_id: str, amount: int = 10000) -> str:
    key = await authenticate(client, order_id, amount)
    assert (await confirm(client, key, order_id, amount)).status_code == 200
    return key


async def test_a_console_cancel_needs_no_auth_and_cancels_the_rest(
    client: httpx.AsyncClient,
) -> None:
    key = await paid(client, "order-console-1")

    response = await console_cancel(client, key, cancelReason="buyer called the shop")

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["balanceAmount"]) == ("CANCELED", 0)
    (entry,) = body["cancels"]
    assert (entry["cancelAmount"], entry["cancelReason"]) == (10000, "buyer called the shop")
    assert entry["transactionKey"] == body["lastTransactionKey"]


async def test_a_partial_console_cancel_is_seen_through_the_api(client: httpx.AsyncClient) -> None:
    key = await paid(client, "order-console-2")

    await console_cancel(client, key, cancelReason="one item", cancelAmount=2500)
    seen = (await client.get(f"/v1/payments/{key}")).json()

    assert (seen["status"], seen["balanceAmount"]) == ("PARTIAL_CANCELED", 7500)


async def test_console_cancels_follow_the_api_cancel_rules(client: httpx.AsyncClient) -> None:
    key = await paid(client, "order-console-3")
    unpaid = await authenticate(client, "order-console-4")

    too_much = await console_cancel(client, key, cancelReason="x", cancelAmount=10001)
    await console_cancel(client, key, cancelReason="all")
    again = await console_cancel(client, key, cancelReason="again")
    not_paid = await console_cancel(client, unpaid, cancelReason="x")
    missing = await console_cancel(client, "tsbx_nobody", cancelReason="x")
    no_reason = await console_cancel(client, key)

    assert (too_much.status_code, too_much.json()["code"]) == (403, "NOT_CANCELABLE_AMOUNT")
    assert (again.status_code, again.json()["code"]) == (400, "ALREADY_CANCELED_PAYMENT")
    assert (not_paid.status_code, not_paid.json()["code"]) == (403, "NOT_CANCELABLE_PAYMENT")
    assert (missing.status_code, missing.json()["code"]) == (404, "NOT_FOUND_PAYMENT")
    assert (no_reason.status_code, no_reason.json()["code"]) == (400, "INVALID_REQUEST")


async def test_cancel_faults_do_not_touch_console_cancels(client: httpx.AsyncClient) -> None:
    key = await paid(client, "order-console-5")
    await client.put("/sandbox/faults", json={"cancel": {"errorRate": 1.0}})

    response = await console_cancel(client, key, cancelReason="staff")

    assert response.status_code == 200


async def test_a_console_cancel_is_announced_by_webhook(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    key = await paid(client, "order-console-6")
    await client.put("/sandbox/webhook", json={"url": receiver.url})

    await console_cancel(client, key, cancelReason="part", cancelAmount=1000)
    await console_cancel(client, key, cancelReason="part again", cancelAmount=1000)
    await receiver.wait_for(2)

    assert receiver.statuses() == ["PARTIAL_CANCELED", "PARTIAL_CANCELED"]
    balances = sorted(body["data"]["balanceAmount"] for _, body in receiver.calls)
    assert balances == [8000, 9000]
