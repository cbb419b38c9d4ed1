"""3. Confirm approves only the authenticated amount and orderId, once."""

from __future__ import annotations

import httpx

from tests.integration.sandbox.support import (
    authenticate,
    confirm,
    ledger,
    parse_form,
    window_fields,
)


async def test_a_confirm_with_a_different_amount_is_refused_and_not_approved(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-rule-01", 15000)

    response = await confirm(client, key, "order-rule-01", 100)

    assert (response.status_code, response.json()["code"]) == (400, "INVALID_REQUEST")
    (entry,) = await ledger(client, "order-rule-01")
    assert (entry["status"], entry["approvals"]) == ("IN_PROGRESS", 0)


async def test_a_confirm_with_another_order_id_is_forbidden_and_not_approved(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-rule-02", 15000)

    response = await confirm(client, key, "order-rule-other", 15000)

    assert (response.status_code, response.json()["code"]) == (403, "FORBIDDEN_REQUEST")
    (entry,) = await ledger(client, "order-rule-02")
    assert (entry["status"], entry["approvals"]) == ("IN_PROGRESS", 0)


async def test_a_refused_confirm_leaves_the_right_confirm_possible(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-rule-03", 15000)
    await confirm(client, key, "order-rule-03", 14000)

    response = await confirm(client, key, "order-rule-03", 15000)

    assert response.status_code == 200


async def test_a_done_payment_confirmed_again_without_its_key_is_already_processed(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-rule-04")
    await confirm(client, key, "order-rule-04", 15000, idempotency_key="first-key")

    without_key = await confirm(client, key, "order-rule-04", 15000)
    other_key = await confirm(client, key, "order-rule-04", 15000, idempotency_key="second-key")

    assert (without_key.status_code, without_key.json()["code"]) == (
        400,
        "ALREADY_PROCESSED_PAYMENT",
    )
    assert other_key.json()["code"] == "ALREADY_PROCESSED_PAYMENT"
    (entry,) = await ledger(client, "order-rule-04")
    assert (entry["approvals"], entry["confirmCalls"]) == (1, 3)


async def test_the_amount_may_arrive_as_a_numeric_string(client: httpx.AsyncClient) -> None:
    key = await authenticate(client, "order-rule-05", 15000)

    response = await confirm(client, key, "order-rule-05", "15000")

    assert response.status_code == 200
    assert response.json()["totalAmount"] == 15000


async def test_a_confirm_for_an_unknown_payment_key_is_not_found(
    client: httpx.AsyncClient,
) -> None:
    response = await confirm(client, "tsbx_unknown", "order-rule-06", 15000)

    assert (response.status_code, response.json()["code"]) == (404, "NOT_FOUND_PAYMENT")


async def test_a_window_opened_but_never_authenticated_cannot_be_confirmed(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/sandbox/checkout", params=window_fields("order-rule-07"))
    key = parse_form(page.text).fields["paymentKey"]

    response = await confirm(client, key, "order-rule-07", 15000)

    assert (response.status_code, response.json()["code"]) == (404, "NOT_FOUND_PAYMENT_SESSION")
