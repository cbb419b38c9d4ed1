"""2. Lifecycle and clock: READY → IN_PROGRESS → DONE / ABORTED / EXPIRED, scaled expiry."""

from __future__ import annotations

import asyncio

import httpx

from tests.integration.sandbox.support import authenticate, confirm, parse_form, window_fields


async def test_a_payment_goes_from_ready_to_in_progress_to_done(client: httpx.AsyncClient) -> None:
    page = await client.get("/sandbox/checkout", params=window_fields("order-life-01"))
    key = parse_form(page.text).fields["paymentKey"]
    ready = (await client.get(f"/v1/payments/{key}")).json()["status"]

    await client.post(
        "/sandbox/checkout", data={**parse_form(page.text).fields, "action": "approve"}
    )
    in_progress = (await client.get(f"/v1/payments/{key}")).json()["status"]
    await confirm(client, key, "order-life-01", 15000)
    done = (await client.get(f"/v1/payments/{key}")).json()

    assert (ready, in_progress, done["status"]) == ("READY", "IN_PROGRESS", "DONE")
    assert done["approvedAt"] is not None


async def test_a_definitive_decline_at_confirm_aborts_the_payment(
    client: httpx.AsyncClient,
) -> None:
    await client.put("/sandbox/faults", json={"errorRate": 1.0, "errorCode": "REJECT_CARD_PAYMENT"})
    key = await authenticate(client, "order-life-02")

    declined = await confirm(client, key, "order-life-02", 15000)
    payment = (await client.get(f"/v1/payments/{key}")).json()

    assert (declined.status_code, declined.json()["code"]) == (403, "REJECT_CARD_PAYMENT")
    assert payment["status"] == "ABORTED"
    assert payment["failure"]["code"] == "REJECT_CARD_PAYMENT"


async def test_a_confirm_after_the_scaled_ten_minutes_finds_no_session(
    client: httpx.AsyncClient,
) -> None:
    await client.put("/sandbox/faults", json={"clockScale": 1200.0})  # 10 minutes = 0.5 s
    key = await authenticate(client, "order-life-03")
    await asyncio.sleep(0.7)

    late = await confirm(client, key, "order-life-03", 15000)
    payment = (await client.get(f"/v1/payments/{key}")).json()

    assert (late.status_code, late.json()["code"]) == (404, "NOT_FOUND_PAYMENT_SESSION")
    assert payment["status"] == "EXPIRED"
    assert payment["failure"]["code"] == "EXPIRED_PAYMENT"


async def test_the_sweeper_expires_an_unconfirmed_payment_without_being_asked(
    client: httpx.AsyncClient,
) -> None:
    await client.put("/sandbox/faults", json={"clockScale": 1200.0})
    await authenticate(client, "order-life-04")
    await asyncio.sleep(0.8)

    (entry,) = (await client.get("/sandbox/ledger", params={"orderId": "order-life-04"})).json()

    assert entry["status"] == "EXPIRED"


async def test_an_opened_window_expires_after_the_scaled_thirty_minutes(
    client: httpx.AsyncClient,
) -> None:
    await client.put("/sandbox/faults", json={"clockScale": 3600.0})  # 30 minutes = 0.5 s
    page = await client.get("/sandbox/checkout", params=window_fields("order-life-05"))
    fields = parse_form(page.text).fields
    await asyncio.sleep(0.7)

    submitted = await client.post("/sandbox/checkout", data={**fields, "action": "approve"})
    payment = (await client.get(f"/v1/payments/{fields['paymentKey']}")).json()

    assert submitted.status_code == 303
    assert "code=PAY_PROCESS_ABORTED" in submitted.headers["location"]
    assert payment["status"] == "EXPIRED"


async def test_a_payment_confirmed_in_time_at_normal_speed_does_not_expire(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-life-06")
    await asyncio.sleep(0.3)

    response = await confirm(client, key, "order-life-06", 15000)

    assert response.status_code == 200
