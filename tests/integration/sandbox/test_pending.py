"""12. Late completions: the PG takes a confirm or cancel, the caller never hears, and the
change happens by itself later (past the confirm window too), announced by webhook."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.integration.sandbox.support import (
    Receiver,
    api_client,
    authenticate,
    confirm,
    ledger,
    running_sandbox,
    sandbox_settings,
)
from tests.integration.shared.helpers import eventually

DROPPED = (httpx.RemoteProtocolError, httpx.ReadError)


async def late(client: httpx.AsyncClient, endpoint: str, seconds: float, **more: float) -> None:
    knobs = {"lateCompletionRate": 1.0, "lateCompletionSeconds": seconds}
    response = await client.put("/sandbox/faults", json={endpoint: knobs, **more})
    assert response.status_code == 200, response.text


async def status_of(client: httpx.AsyncClient, payment_key: str) -> str:
    status: str = (await client.get(f"/v1/payments/{payment_key}")).json()["status"]
    return status


async def becomes(client: httpx.AsyncClient, payment_key: str, status: str) -> None:
    async def reached() -> bool:
        return await status_of(client, payment_key) == status

    await eventually(reached, within=10)


async def test_a_late_confirm_drops_the_answer_and_leaves_the_payment_in_progress(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-late-01")
    await late(client, "confirm", 30)

    with pytest.raises(DROPPED):
        await confirm(client, key, "order-late-01", 15000, "late-01")

    (entry,) = await ledger(client, "order-late-01")
    assert (entry["status"], entry["approvals"], entry["confirmCalls"]) == ("IN_PROGRESS", 0, 1)
    assert entry["pendingCompletion"]["kind"] == "CONFIRM"
    by_order = await client.get("/v1/payments/orders/order-late-01")
    assert by_order.json()["status"] == "IN_PROGRESS"


async def test_a_retry_of_a_late_confirm_gets_409_until_it_completes_then_the_approval(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-late-02")
    await late(client, "confirm", 0.8)
    with pytest.raises(DROPPED):
        await confirm(client, key, "order-late-02", 15000, "late-02")

    meanwhile = await confirm(client, key, "order-late-02", 15000, "late-02")
    await becomes(client, key, "DONE")
    replayed = await confirm(client, key, "order-late-02", 15000, "late-02")

    assert (meanwhile.status_code, meanwhile.json()["code"]) == (
        409,
        "IDEMPOTENT_REQUEST_PROCESSING",
    )
    assert (replayed.status_code, replayed.json()["status"]) == (200, "DONE")
    assert replayed.json()["approvedAt"] is not None
    (entry,) = await ledger(client, "order-late-02")
    assert (entry["approvals"], entry["confirmCalls"], entry["pendingCompletion"]) == (1, 1, None)


async def test_another_confirm_of_a_payment_waiting_for_its_completion_gets_409(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-late-03")
    await late(client, "confirm", 30)
    with pytest.raises(DROPPED):
        await confirm(client, key, "order-late-03", 15000, "late-03")

    other_key = await confirm(client, key, "order-late-03", 15000, "late-03-other")
    no_key = await confirm(client, key, "order-late-03", 15000)

    assert (other_key.status_code, other_key.json()["code"]) == (
        409,
        "IDEMPOTENT_REQUEST_PROCESSING",
    )
    assert no_key.status_code == 409


async def test_a_late_confirm_completes_after_the_window_closed(client: httpx.AsyncClient) -> None:
    await client.put("/sandbox/faults", json={"clockScale": 1200.0})  # 10 minutes = 0.5 s
    key = await authenticate(client, "order-late-04")
    await late(client, "confirm", 1.2)
    with pytest.raises(DROPPED):
        await confirm(client, key, "order-late-04", 15000, "late-04")

    await asyncio.sleep(0.8)  # the window has closed; the sweeper has run several times
    past_the_window = await status_of(client, key)
    await becomes(client, key, "DONE")

    assert past_the_window == "IN_PROGRESS"
    (entry,) = await ledger(client, "order-late-04")
    assert (entry["status"], entry["approvals"], entry["failure"]) == ("DONE", 1, None)


async def test_a_late_cancel_is_applied_later_and_then_replayed(client: httpx.AsyncClient) -> None:
    key = await authenticate(client, "order-late-05", 10000)
    await confirm(client, key, "order-late-05", 10000)
    await late(client, "cancel", 0.8)
    body = {"cancelReason": "late refund", "cancelAmount": 4000}
    headers = {"Idempotency-Key": "late-05-cancel"}

    with pytest.raises(DROPPED):
        await client.post(f"/v1/payments/{key}/cancel", json=body, headers=headers)
    meanwhile = (await client.get(f"/v1/payments/{key}")).json()
    retried = await client.post(f"/v1/payments/{key}/cancel", json=body, headers=headers)
    await becomes(client, key, "PARTIAL_CANCELED")
    replayed = await client.post(f"/v1/payments/{key}/cancel", json=body, headers=headers)

    assert (meanwhile["status"], meanwhile["cancels"]) == ("DONE", None)
    assert retried.status_code == 409
    assert replayed.status_code == 200
    assert [c["cancelAmount"] for c in replayed.json()["cancels"]] == [4000]
    assert replayed.json()["balanceAmount"] == 6000


async def test_a_late_confirm_is_completed_after_a_restart_and_announced(
    database_url: str, receiver: Receiver
) -> None:
    settings = sandbox_settings(database_url)
    async with running_sandbox(settings) as url, api_client(url) as client:
        await client.put("/sandbox/webhook", json={"url": receiver.url})
        key = await authenticate(client, "order-late-06")
        await late(client, "confirm", 1.0)
        with pytest.raises(DROPPED):
            await confirm(client, key, "order-late-06", 15000, "late-06")

    async with running_sandbox(settings) as url, api_client(url) as client:
        await becomes(client, key, "DONE")
        await receiver.wait_for(1)

    assert receiver.statuses() == ["DONE"]
