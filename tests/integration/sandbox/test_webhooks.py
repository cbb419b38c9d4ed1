"""9. PAYMENT_STATUS_CHANGED webhooks with the contract's headers, retried after a non-200."""

from __future__ import annotations

import asyncio
import re

from tests.integration.sandbox.support import (
    Receiver,
    api_client,
    authenticate,
    confirm,
    running_sandbox,
    sandbox_settings,
    window_fields,
)


async def test_status_changes_are_posted_to_the_merchant(
    database_url: str, receiver: Receiver
) -> None:
    settings = sandbox_settings(database_url, sandbox_webhook_url=receiver.url)
    async with running_sandbox(settings) as url, api_client(url) as client:
        key = await authenticate(client, "order-hook-1", 10000)
        await confirm(client, key, "order-hook-1", 10000)
        await client.post(
            f"/v1/payments/{key}/cancel", json={"cancelReason": "part", "cancelAmount": 1000}
        )
        await client.post(f"/v1/payments/{key}/cancel", json={"cancelReason": "rest"})
        await receiver.wait_for(3)

    assert sorted(receiver.statuses()) == ["CANCELED", "DONE", "PARTIAL_CANCELED"]
    headers, body = receiver.calls[0]
    assert body["eventType"] == "PAYMENT_STATUS_CHANGED"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", body["createdAt"])
    assert body["data"]["paymentKey"] == key
    assert re.fullmatch(r"whtrans_[a-z0-9]+", headers["tosspayments-webhook-transmission-id"])
    assert headers["tosspayments-webhook-transmission-time"].endswith("+09:00")
    assert headers["tosspayments-webhook-transmission-retried-count"] == "0"


async def test_expired_and_aborted_payments_are_announced(
    database_url: str, receiver: Receiver
) -> None:
    settings = sandbox_settings(database_url, sandbox_webhook_url=receiver.url)
    async with running_sandbox(settings) as url, api_client(url) as client:
        await client.put("/sandbox/faults", json={"clockScale": 1200.0})
        await authenticate(client, "order-hook-2")
        rejected_card = window_fields(
            "order-hook-3", action="approve", cardNumber="9999000011112222"
        )
        await client.post("/sandbox/checkout", data=rejected_card)
        await receiver.wait_for(2)

    assert sorted(receiver.statuses()) == ["ABORTED", "EXPIRED"]


async def test_a_refused_webhook_is_retried_on_the_scaled_schedule(
    database_url: str, receiver: Receiver
) -> None:
    receiver.failures = 2
    settings = sandbox_settings(
        database_url, sandbox_webhook_url=receiver.url, sandbox_clock_scale=300.0
    )  # retries after 1 and 4 minutes: 0.2 s and 0.8 s
    async with running_sandbox(settings) as url, api_client(url) as client:
        key = await authenticate(client, "order-hook-4")
        await confirm(client, key, "order-hook-4", 15000)
        await receiver.wait_for(3)
        await asyncio.sleep(0.3)  # delivered: nothing more comes

    retried = [h["tosspayments-webhook-transmission-retried-count"] for h, _ in receiver.calls]
    ids = {h["tosspayments-webhook-transmission-id"] for h, _ in receiver.calls}
    assert retried == ["0", "1", "2"]
    assert len(ids) == 1
    assert receiver.statuses() == ["DONE"] * 3


async def test_without_a_webhook_url_nothing_is_sent(database_url: str, receiver: Receiver) -> None:
    async with running_sandbox(sandbox_settings(database_url)) as url, api_client(url) as client:
        key = await authenticate(client, "order-hook-5")
        await confirm(client, key, "order-hook-5", 15000)
        await asyncio.sleep(0.3)

    assert receiver.calls == []
