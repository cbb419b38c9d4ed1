"""1. The core API: confirm, look-ups, cancels, Basic auth, the Payment object, error bodies."""

from __future__ import annotations

import base64

import httpx

from tests.integration.sandbox.support import authenticate, confirm

PAYMENT_FIELDS = {
    "version", "paymentKey", "lastTransactionKey", "type", "orderId", "orderName", "mId",
    "currency", "method", "totalAmount", "balanceAmount", "suppliedAmount", "vat", "status",
    "requestedAt", "approvedAt", "isPartialCancelable", "card", "cancels", "receipt", "failure",
    "secret", "virtualAccount", "transfer", "mobilePhone", "giftCertificate", "easyPay",
}  # fmt: skip
CARD_FIELDS = {
    "amount", "issuerCode", "number", "installmentPlanMonths", "approveNo", "cardType",
    "ownerType",
}  # fmt: skip


async def test_a_confirmed_payment_answers_the_contracts_payment_object(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-api-001", 15000)

    response = await confirm(client, key, "order-api-001", 15000)

    assert response.status_code == 200
    payment = response.json()
    assert set(payment) >= PAYMENT_FIELDS
    assert set(payment["card"]) >= CARD_FIELDS
    assert payment["status"] == "DONE"
    assert payment["version"] == "2022-11-16"
    assert payment["method"] == "카드"
    assert (payment["totalAmount"], payment["balanceAmount"]) == (15000, 15000)
    assert payment["suppliedAmount"] + payment["vat"] == 15000
    assert payment["approvedAt"].endswith("+09:00")
    assert payment["cancels"] is None
    assert payment["failure"] is None


async def test_a_payment_is_found_by_its_key_and_by_its_order(client: httpx.AsyncClient) -> None:
    key = await authenticate(client, "order-api-002")
    await confirm(client, key, "order-api-002", 15000)

    by_key = await client.get(f"/v1/payments/{key}")
    by_order = await client.get("/v1/payments/orders/order-api-002")

    assert by_key.status_code == by_order.status_code == 200
    assert by_key.json()["paymentKey"] == by_order.json()["paymentKey"] == key
    assert by_order.json()["status"] == "DONE"


async def test_an_unknown_payment_is_not_found(client: httpx.AsyncClient) -> None:
    by_key = await client.get("/v1/payments/tsbx_nothing_here")
    by_order = await client.get("/v1/payments/orders/order-nobody")

    assert by_key.status_code == by_order.status_code == 404
    assert by_key.json()["code"] == by_order.json()["code"] == "NOT_FOUND_PAYMENT"
    assert by_key.json()["message"]


async def test_the_order_lookup_prefers_the_approved_payment_over_a_later_window(
    client: httpx.AsyncClient,
) -> None:
    first = await authenticate(client, "order-api-003")
    await confirm(client, first, "order-api-003", 15000)
    await authenticate(client, "order-api-003")

    response = await client.get("/v1/payments/orders/order-api-003")

    assert response.json()["paymentKey"] == first


async def test_partial_then_full_cancel_appends_cancels_and_lowers_the_balance(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-api-004", 10000)
    await confirm(client, key, "order-api-004", 10000)

    partial = await client.post(
        f"/v1/payments/{key}/cancel", json={"cancelReason": "one item", "cancelAmount": 3000}
    )
    rest = await client.post(f"/v1/payments/{key}/cancel", json={"cancelReason": "the rest"})

    assert partial.status_code == rest.status_code == 200
    assert partial.json()["status"] == "PARTIAL_CANCELED"
    assert partial.json()["balanceAmount"] == 7000
    assert rest.json()["status"] == "CANCELED"
    assert rest.json()["balanceAmount"] == 0
    assert rest.json()["totalAmount"] == 10000
    assert [c["cancelAmount"] for c in rest.json()["cancels"]] == [3000, 7000]
    assert {c["cancelStatus"] for c in rest.json()["cancels"]} == {"DONE"}


async def test_cancel_errors_follow_the_contract(client: httpx.AsyncClient) -> None:
    unpaid = await authenticate(client, "order-api-005", 10000)
    paid = await authenticate(client, "order-api-006", 10000)
    await confirm(client, paid, "order-api-006", 10000)

    not_cancelable = await client.post(f"/v1/payments/{unpaid}/cancel", json={"cancelReason": "x"})
    too_much = await client.post(
        f"/v1/payments/{paid}/cancel", json={"cancelReason": "x", "cancelAmount": 10001}
    )
    await client.post(f"/v1/payments/{paid}/cancel", json={"cancelReason": "all"})
    again = await client.post(f"/v1/payments/{paid}/cancel", json={"cancelReason": "again"})
    missing = await client.post("/v1/payments/tsbx_none/cancel", json={"cancelReason": "x"})

    assert (not_cancelable.status_code, not_cancelable.json()["code"]) == (
        403,
        "NOT_CANCELABLE_PAYMENT",
    )
    assert (too_much.status_code, too_much.json()["code"]) == (403, "NOT_CANCELABLE_AMOUNT")
    assert (again.status_code, again.json()["code"]) == (400, "ALREADY_CANCELED_PAYMENT")
    assert (missing.status_code, missing.json()["code"]) == (404, "NOT_FOUND_PAYMENT")


async def test_an_unknown_secret_key_is_unauthorized(client: httpx.AsyncClient) -> None:
    wrong = "Basic " + base64.b64encode(b"test_sk_not_a_real_key:").decode()

    response = await client.get("/v1/payments/tsbx_x", headers={"Authorization": wrong})
    missing = await client.get("/v1/payments/tsbx_x", headers={"Authorization": ""})

    assert (response.status_code, response.json()["code"]) == (401, "UNAUTHORIZED_KEY")
    assert (missing.status_code, missing.json()["code"]) == (401, "UNAUTHORIZED_KEY")


async def test_a_key_encoded_without_the_colon_is_an_incorrect_basic_auth_format(
    client: httpx.AsyncClient,
) -> None:
    no_colon = "Basic " + base64.b64encode(b"test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R").decode()

    response = await client.get("/v1/payments/tsbx_x", headers={"Authorization": no_colon})

    assert (response.status_code, response.json()["code"]) == (403, "INCORRECT_BASIC_AUTH_FORMAT")


async def test_english_messages_are_given_on_request(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/payments/tsbx_x", headers={"Accept-Language": "en-US"})

    assert response.json() == {
        "code": "NOT_FOUND_PAYMENT",
        "message": "The payment does not exist.",
    }
