"""9. PAYMENT_STATUS_CHANGED webhooks with the contract's headers, retried after a non-200."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import asyncpg
import httpx
import pytest

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


async def test_the_merchant_registers_its_webhook_url_at_run_time(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    registered = await client.put("/sandbox/webhook", json={"url": receiver.url})
    key = await authenticate(client, "order-hook-6")

    await confirm(client, key, "order-hook-6", 15000)
    await receiver.wait_for(1)

    assert registered.json() == (await client.get("/sandbox/webhook")).json()
    assert registered.json() == {"url": receiver.url}
    assert receiver.statuses() == ["DONE"]


@pytest.mark.parametrize(
    "body", [{"url": "ftp://merchant.test/hooks"}, {"url": "/relative"}, {"address": "x"}, []]
)
async def test_a_bad_webhook_registration_is_refused(client: httpx.AsyncClient, body: Any) -> None:
    response = await client.put("/sandbox/webhook", json=body)

    assert (response.status_code, response.json()["code"]) == (400, "INVALID_REQUEST")
    assert (await client.get("/sandbox/webhook")).json() == {"url": None}


async def test_the_environment_registers_the_webhook_url_at_start(
    database_url: str, receiver: Receiver
) -> None:
    settings = sandbox_settings(database_url, sandbox_webhook_url=receiver.url)
    async with running_sandbox(settings) as url, api_client(url) as client:
        registered = (await client.get("/sandbox/webhook")).json()

    assert registered == {"url": receiver.url}


async def test_dropped_webhooks_are_never_sent_and_recorded_as_dropped(
    client: httpx.AsyncClient, receiver: Receiver, sandbox_dsn: str
) -> None:
    await client.put("/sandbox/webhook", json={"url": receiver.url})
    await client.put("/sandbox/faults", json={"webhooks": {"dropRate": 1.0}})
    key = await authenticate(client, "order-hook-7")

    await confirm(client, key, "order-hook-7", 15000)
    await asyncio.sleep(0.5)

    assert receiver.calls == []
    conn = await asyncpg.connect(sandbox_dsn)
    try:
        dropped = await conn.fetch(
            "SELECT dropped_at IS NOT NULL AS dropped, next_attempt_at"
            " FROM sandbox.webhook_deliveries WHERE payment_key = $1",
            key,
        )
    finally:
        await conn.close()
    assert [(row["dropped"], row["next_attempt_at"]) for row in dropped] == [(True, None)]


async def test_delayed_webhooks_are_held_that_long(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await client.put("/sandbox/webhook", json={"url": receiver.url})
    await client.put("/sandbox/faults", json={"webhooks": {"delayMs": 700}})
    key = await authenticate(client, "order-hook-8")

    started = time.monotonic()
    await confirm(client, key, "order-hook-8", 15000)
    await receiver.wait_for(1)

    assert time.monotonic() - started >= 0.7


async def test_duplicated_webhooks_are_sent_twice_with_one_transmission_id(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await client.put("/sandbox/webhook", json={"url": receiver.url})
    await client.put("/sandbox/faults", json={"webhooks": {"duplicateRate": 1.0}})
    key = await authenticate(client, "order-hook-9")

    await confirm(client, key, "order-hook-9", 15000)
    await receiver.wait_for(2)
    await asyncio.sleep(0.3)

    ids = [h["tosspayments-webhook-transmission-id"] for h, _ in receiver.calls]
    assert len(ids) == 2
    assert ids[0] == ids[1]
    assert receiver.statuses() == ["DONE", "DONE"]


async def test_reordered_webhooks_due_together_are_sent_newest_first(
    database_url: str, receiver: Receiver
) -> None:
    # Held 0.8 s, and the sender, once idle, looks again only after 1.5 s: all three are due
    # together when it does.
    settings = sandbox_settings(database_url, sandbox_webhook_poll_s=1.5)
    async with running_sandbox(settings) as url, api_client(url) as client:
        await client.put("/sandbox/webhook", json={"url": receiver.url})
        await client.put("/sandbox/faults", json={"webhooks": {"delayMs": 800, "reorder": True}})
        key = await authenticate(client, "order-hook-10", 10000)
        await confirm(client, key, "order-hook-10", 10000)
        for _ in range(2):
            await client.post(
                f"/v1/payments/{key}/cancel", json={"cancelReason": "p", "cancelAmount": 1000}
            )
        await receiver.wait_for(3)

    balances = [body["data"]["balanceAmount"] for _, body in receiver.calls]
    assert balances == [8000, 9000, 10000]


async def test_each_partial_cancel_is_announced(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await client.put("/sandbox/webhook", json={"url": receiver.url})
    key = await authenticate(client, "order-hook-11", 10000)
    await confirm(client, key, "order-hook-11", 10000)
    for _ in range(3):
        await client.post(
            f"/v1/payments/{key}/cancel", json={"cancelReason": "p", "cancelAmount": 1000}
        )
    await receiver.wait_for(4)

    assert sorted(receiver.statuses()) == ["DONE"] + ["PARTIAL_CANCELED"] * 3
