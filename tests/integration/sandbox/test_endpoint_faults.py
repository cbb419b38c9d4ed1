"""16. Knobs of the other endpoints (cancel, both look-ups) and of idempotency (replayErrors,
forgetIdempotencyKeys)."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.integration.sandbox.support import authenticate, confirm, ledger

DROPPED = (httpx.RemoteProtocolError, httpx.ReadError)


async def knobs(client: httpx.AsyncClient, **body: Any) -> None:
    response = await client.put("/sandbox/faults", json=body)
    assert response.status_code == 200, response.text


async def paid(client: httpx.AsyncClient, order_id: str, amount: int = 10000) -> str:
    key = await authenticate(client, order_id, amount)
    assert (await confirm(client, key, order_id, amount)).status_code == 200
    return key


async def cancel(
    client: httpx.AsyncClient, payment_key: str, idempotency_key: str | None = None
) -> httpx.Response:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return await client.post(
        f"/v1/payments/{payment_key}/cancel", json={"cancelReason": "test"}, headers=headers
    )


async def test_an_injected_cancel_error_answers_its_code_and_cancels_nothing(
    client: httpx.AsyncClient,
) -> None:
    key = await paid(client, "order-knob-01")
    await knobs(client, cancel={"errorRate": 1.0, "errorCode": "REFUND_REJECTED"})

    response = await cancel(client, key)

    assert (response.status_code, response.json()["code"]) == (400, "REFUND_REJECTED")
    (entry,) = await ledger(client, "order-knob-01")
    assert (entry["status"], entry["cancels"]) == ("DONE", [])


async def test_an_injected_unknown_cancel_error_is_not_replayed(client: httpx.AsyncClient) -> None:
    key = await paid(client, "order-knob-02")
    await knobs(client, cancel={"errorRate": 1.0, "errorCode": "FAILED_REFUND_PROCESS"})
    failed = await cancel(client, key, "knob-02")
    await knobs(client, cancel={"errorRate": 0.0})

    retried = await cancel(client, key, "knob-02")

    assert failed.status_code == 500
    assert (retried.status_code, retried.json()["status"]) == (200, "CANCELED")


async def test_cancel_latency_delays_the_answer(client: httpx.AsyncClient) -> None:
    key = await paid(client, "order-knob-03")
    await knobs(client, cancel={"latencyMs": 400})

    started = time.monotonic()
    response = await cancel(client, key)

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.4


async def test_a_dropped_cancel_answer_still_cancels(client: httpx.AsyncClient) -> None:
    key = await paid(client, "order-knob-04")
    await knobs(client, cancel={"dropResponseRate": 1.0})

    with pytest.raises(DROPPED):
        await cancel(client, key, "knob-04")
    await knobs(client, cancel={"dropResponseRate": 0.0})
    retried = await cancel(client, key, "knob-04")

    assert (retried.status_code, retried.json()["status"]) == (200, "CANCELED")
    (entry,) = await ledger(client, "order-knob-04")
    assert len(entry["cancels"]) == 1


@pytest.mark.parametrize(
    ("section", "path"),
    [("lookupByKey", "/v1/payments/{key}"), ("lookupByOrder", "/v1/payments/orders/{order}")],
)
async def test_an_injected_lookup_error_answers_its_code(
    client: httpx.AsyncClient, section: str, path: str
) -> None:
    order_id = f"order-knob-05-{section}"
    key = await paid(client, order_id)
    await knobs(client, **{section: {"errorRate": 1.0}})

    response = await client.get(path.format(key=key, order=order_id))

    assert (response.status_code, response.json()["code"]) == (
        500,
        "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING",
    )


async def test_each_lookup_has_its_own_knobs(client: httpx.AsyncClient) -> None:
    key = await paid(client, "order-knob-06")
    await knobs(client, lookupByOrder={"errorRate": 1.0, "errorCode": "NOT_FOUND_PAYMENT"})

    by_key = await client.get(f"/v1/payments/{key}")
    by_order = await client.get("/v1/payments/orders/order-knob-06")

    assert by_key.status_code == 200
    assert (by_order.status_code, by_order.json()["code"]) == (404, "NOT_FOUND_PAYMENT")


async def test_a_dropped_lookup_answer_leaves_the_caller_without_one(
    client: httpx.AsyncClient,
) -> None:
    key = await paid(client, "order-knob-07")
    await knobs(client, lookupByKey={"dropResponseRate": 1.0})

    with pytest.raises(DROPPED):
        await client.get(f"/v1/payments/{key}")


async def test_lookup_latency_delays_the_answer(client: httpx.AsyncClient) -> None:
    await paid(client, "order-knob-08")
    await knobs(client, lookupByOrder={"latencyMs": 400})

    started = time.monotonic()
    response = await client.get("/v1/payments/orders/order-knob-08")

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.4


async def test_without_replaying_errors_a_repeated_key_after_a_decline_runs_afresh(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-knob-09", 15000)
    await knobs(client, replayErrors=False)
    refused = await confirm(client, key, "order-knob-09", 100, "knob-09")

    retried = await confirm(client, key, "order-knob-09", 15000, "knob-09")

    assert (refused.status_code, refused.json()["code"]) == (400, "INVALID_REQUEST")
    assert (retried.status_code, retried.json()["status"]) == (200, "DONE")


async def test_forgetting_keys_makes_a_confirm_retry_already_processed(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-knob-10", 15000)
    await knobs(client, forgetIdempotencyKeys=True, confirm={"dropResponseRate": 1.0})
    with pytest.raises(DROPPED):
        await confirm(client, key, "order-knob-10", 15000, "knob-10")
    await knobs(client, confirm={"dropResponseRate": 0.0})

    retried = await confirm(client, key, "order-knob-10", 15000, "knob-10")

    assert (retried.status_code, retried.json()["code"]) == (400, "ALREADY_PROCESSED_PAYMENT")


async def test_forgetting_keys_makes_a_cancel_retry_already_canceled(
    client: httpx.AsyncClient,
) -> None:
    key = await paid(client, "order-knob-11")
    await knobs(client, forgetIdempotencyKeys=True, cancel={"dropResponseRate": 1.0})
    with pytest.raises(DROPPED):
        await cancel(client, key, "knob-11")
    await knobs(client, cancel={"dropResponseRate": 0.0})

    retried = await cancel(client, key, "knob-11")

    assert (retried.status_code, retried.json()["code"]) == (400, "ALREADY_CANCELED_PAYMENT")
