"""POST /webhooks/toss: each transmission recorded once and announced, answered at once; bad
ones get a 4xx problem and change nothing."""

from __future__ import annotations

from typing import Any

import orjson

from shared.events import PgReported
from tests.integration.checkout.conftest import Checkout


def headers(transmission_id: str = "whtrans_0000000000000000000001") -> dict[str, str]:
    return {
        "content-type": "application/json",
        "tosspayments-webhook-transmission-id": transmission_id,
        "tosspayments-webhook-transmission-time": "2026-12-01T10:00:00+09:00",
        "tosspayments-webhook-transmission-retried-count": "0",
    }


def status_changed(**data: Any) -> bytes:
    payment = {"paymentKey": "tpk_20260101_abcdef", "orderId": "order-2026-0001", "status": "DONE"}
    body = {
        "eventType": "PAYMENT_STATUS_CHANGED",
        "createdAt": "2026-12-01T10:00:00.000000",
        "data": payment | data,
    }
    return orjson.dumps(body)


async def test_a_webhook_is_answered_200_and_announced_with_the_payment_it_names(
    checkout: Checkout,
) -> None:
    response = await checkout.client.post(
        "/webhooks/toss", content=status_changed(), headers=headers()
    )

    assert (response.status_code, response.json()["status"]) == (200, "accepted")
    [event] = await checkout.published()
    assert isinstance(event, PgReported)
    assert (event.payment_key, event.order_id, event.event_type) == (
        "tpk_20260101_abcdef",
        "order-2026-0001",
        "PAYMENT_STATUS_CHANGED",
    )


async def test_a_replayed_transmission_is_answered_2xx_and_changes_nothing(
    checkout: Checkout,
) -> None:
    await checkout.client.post("/webhooks/toss", content=status_changed(), headers=headers())

    again = await checkout.client.post(
        "/webhooks/toss", content=status_changed(status="CANCELED"), headers=headers()
    )

    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    assert len(await checkout.published()) == 1
    assert await checkout.count("webhooks") == 1


async def test_what_a_webhook_body_claims_is_not_carried_on(checkout: Checkout) -> None:
    await checkout.client.post(
        "/webhooks/toss",
        content=status_changed(status="CANCELED", totalAmount=1, balanceAmount=0),
        headers=headers(),
    )

    [event] = await checkout.published()
    assert "CANCELED" not in event.to_bytes().decode()


async def test_a_deposit_callback_names_its_order(checkout: Checkout) -> None:
    body = {
        "createdAt": "2026-12-01T10:00:00.000000",
        "secret": "ps_x",
        "status": "DONE",
        "transactionKey": "txrd_1",
        "orderId": "order-2026-0001",
    }

    response = await checkout.client.post(
        "/webhooks/toss", content=orjson.dumps(body), headers=headers()
    )

    assert response.status_code == 200
    [event] = await checkout.published()
    assert isinstance(event, PgReported)
    assert (event.event_type, event.order_id, event.payment_key) == (
        "DEPOSIT_CALLBACK",
        "order-2026-0001",
        None,
    )


async def test_malformed_json_gets_a_400_problem_and_changes_nothing(checkout: Checkout) -> None:
    response = await checkout.client.post("/webhooks/toss", content=b"{oops", headers=headers())

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "MALFORMED_WEBHOOK"
    assert await checkout.count("webhooks") == 0


async def test_a_webhook_of_an_unknown_shape_gets_a_422_problem(checkout: Checkout) -> None:
    body = orjson.dumps({"eventType": "SOMETHING_ELSE", "data": {}})

    response = await checkout.client.post("/webhooks/toss", content=body, headers=headers())

    assert (response.status_code, response.json()["code"]) == (422, "UNKNOWN_WEBHOOK")
    assert await checkout.count("webhooks") == 0


async def test_a_webhook_without_a_transmission_id_gets_a_400_problem(checkout: Checkout) -> None:
    response = await checkout.client.post(
        "/webhooks/toss", content=status_changed(), headers={"content-type": "application/json"}
    )

    assert (response.status_code, response.json()["code"]) == (400, "INVALID_TRANSMISSION_ID")
    assert await checkout.count("webhooks") == 0
