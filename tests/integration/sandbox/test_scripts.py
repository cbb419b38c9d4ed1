"""13. Scripted timelines: an order's first confirm answered as told, the payment left
IN_PROGRESS, and completed (DONE or ABORTED) by itself later, with its webhook."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.sandbox.support import Receiver, authenticate, confirm, ledger
from tests.integration.shared.helpers import eventually


async def script(client: httpx.AsyncClient, order_id: str, **confirm_step: Any) -> None:
    response = await client.put(f"/sandbox/scripts/{order_id}", json={"confirm": confirm_step})
    assert response.status_code == 200, response.text


async def payment(client: httpx.AsyncClient, payment_key: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"/v1/payments/{payment_key}")).json()
    return body


async def settled(client: httpx.AsyncClient, payment_key: str) -> dict[str, Any]:
    """The payment once it is no longer IN_PROGRESS."""

    async def done() -> bool:
        status: str = (await payment(client, payment_key))["status"]
        return status != "IN_PROGRESS"

    await eventually(done, within=10)
    return await payment(client, payment_key)


async def test_a_dropped_confirm_becomes_done_by_itself_and_is_announced(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await client.put("/sandbox/webhook", json={"url": receiver.url})
    await script(client, "order-script-1", answer="DROP", completeAfterSeconds=0.8, outcome="DONE")
    key = await authenticate(client, "order-script-1")

    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await confirm(client, key, "order-script-1", 15000, "script-1")
    meanwhile = await payment(client, key)
    final = await settled(client, key)
    await receiver.wait_for(1)

    assert meanwhile["status"] == "IN_PROGRESS"
    assert (final["status"], final["approvedAt"] is not None) == ("DONE", True)
    (entry,) = await ledger(client, "order-script-1")
    assert entry["approvals"] == 1
    assert receiver.statuses() == ["DONE"]


async def test_an_error_answer_then_aborted_leaves_the_failure(client: httpx.AsyncClient) -> None:
    await script(
        client, "order-script-2", answer="PROVIDER_ERROR", completeAfterSeconds=0.5,
        outcome="ABORTED", failureCode="REJECT_CARD_COMPANY",
    )  # fmt: skip
    key = await authenticate(client, "order-script-2")

    answered = await confirm(client, key, "order-script-2", 15000, "script-2")
    final = await settled(client, key)

    assert (answered.status_code, answered.json()["code"]) == (400, "PROVIDER_ERROR")
    assert (final["status"], final["failure"]["code"]) == ("ABORTED", "REJECT_CARD_COMPANY")
    (entry,) = await ledger(client, "order-script-2")
    assert entry["approvals"] == 0


async def test_an_error_answer_is_given_with_its_documented_status(
    client: httpx.AsyncClient,
) -> None:
    await script(client, "order-script-3", answer="FAILED_INTERNAL_SYSTEM_PROCESSING")
    key = await authenticate(client, "order-script-3")

    answered = await confirm(client, key, "order-script-3", 15000)

    assert (answered.status_code, answered.json()["code"]) == (
        500,
        "FAILED_INTERNAL_SYSTEM_PROCESSING",
    )


async def test_confirms_while_the_script_runs_get_409_and_look_ups_show_in_progress(
    client: httpx.AsyncClient,
) -> None:
    await script(client, "order-script-4", answer="PROVIDER_ERROR", completeAfterSeconds=30)
    key = await authenticate(client, "order-script-4")
    await confirm(client, key, "order-script-4", 15000, "script-4")

    same_key = await confirm(client, key, "order-script-4", 15000, "script-4")
    by_order = await client.get("/v1/payments/orders/order-script-4")

    assert (same_key.status_code, same_key.json()["code"]) == (
        409,
        "IDEMPOTENT_REQUEST_PROCESSING",
    )
    assert by_order.json()["status"] == "IN_PROGRESS"


async def test_a_script_completes_past_the_confirm_window(client: httpx.AsyncClient) -> None:
    await client.put("/sandbox/faults", json={"clockScale": 1200.0})  # 10 minutes = 0.5 s
    await script(client, "order-script-5", answer="DROP", completeAfterSeconds=1.2)
    key = await authenticate(client, "order-script-5")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await confirm(client, key, "order-script-5", 15000)

    final = await settled(client, key)

    assert final["status"] == "DONE"


async def test_only_the_first_confirm_follows_the_script(client: httpx.AsyncClient) -> None:
    await script(client, "order-script-6", answer="PROVIDER_ERROR", completeAfterSeconds=0.3,
                 outcome="ABORTED")  # fmt: skip
    first = await authenticate(client, "order-script-6")
    await confirm(client, first, "order-script-6", 15000)
    await settled(client, first)
    second = await authenticate(client, "order-script-6")

    again = await confirm(client, second, "order-script-6", 15000)

    assert again.status_code == 200
    listed = (await client.get("/sandbox/scripts")).json()
    (mine,) = [s for s in listed if s["orderId"] == "order-script-6"]
    assert mine["usedBy"] == first


async def test_scripts_are_listed_and_removed(client: httpx.AsyncClient) -> None:
    await script(client, "order-script-7", answer="DROP", completeAfterSeconds=5)

    listed = (await client.get("/sandbox/scripts")).json()
    removed = await client.delete("/sandbox/scripts/order-script-7")
    removed_again = await client.delete("/sandbox/scripts/order-script-7")
    key = await authenticate(client, "order-script-7")
    unscripted = await confirm(client, key, "order-script-7", 15000)

    (mine,) = [s for s in listed if s["orderId"] == "order-script-7"]
    assert mine["confirm"] == {
        "answer": "DROP",
        "completeAfterSeconds": 5.0,
        "outcome": "DONE",
        "failureCode": "REJECT_CARD_PAYMENT",
    }
    assert mine["usedBy"] is None
    assert (removed.status_code, removed_again.status_code) == (204, 404)
    assert unscripted.status_code == 200


@pytest.mark.parametrize(
    ("order_id", "body"),
    [
        ("order-script-8", {"confirm": {"answer": "NOPE"}}),
        ("order-script-8", {"confirm": {"answer": "DROP", "outcome": "EXPIRED"}}),
        ("bad id!", {"confirm": {"answer": "DROP"}}),
    ],
)
async def test_a_bad_script_is_refused(
    client: httpx.AsyncClient, order_id: str, body: dict[str, Any]
) -> None:
    response = await client.put(f"/sandbox/scripts/{order_id}", json=body)

    assert (response.status_code, response.json()["code"]) == (400, "INVALID_REQUEST")
