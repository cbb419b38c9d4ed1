"""7. The ledger: one entry a payment, with confirm calls, approvals and cancels."""

from __future__ import annotations

import httpx

from tests.integration.sandbox.support import authenticate, confirm, ledger


async def test_the_ledger_counts_confirm_calls_approvals_and_cancels(
    client: httpx.AsyncClient,
) -> None:
    paid = await authenticate(client, "order-ledger-1", 20000)
    await confirm(client, paid, "order-ledger-1", 100)
    await confirm(client, paid, "order-ledger-1", 20000, "ledger-key")
    await confirm(client, paid, "order-ledger-1", 20000, "ledger-key")  # replay: not counted
    await confirm(client, paid, "order-ledger-1", 20000)
    await client.post(
        f"/v1/payments/{paid}/cancel", json={"cancelReason": "part", "cancelAmount": 5000}
    )
    unpaid = await authenticate(client, "order-ledger-2", 30000)

    everything = await ledger(client)
    entries = {e["paymentKey"]: e for e in everything if e["orderId"].startswith("order-ledger-")}

    assert set(entries) == {paid, unpaid}
    summary = entries[paid] | {"cancels": len(entries[paid]["cancels"])}
    assert (
        summary.items()
        >= {
            "orderId": "order-ledger-1",
            "status": "PARTIAL_CANCELED",
            "totalAmount": 20000,
            "balanceAmount": 15000,
            "confirmCalls": 3,
            "approvals": 1,
            "cancels": 1,
            "lastConfirmIdempotencyKey": "ledger-key",
        }.items()
    )
    assert entries[unpaid]["status"] == "IN_PROGRESS"
    assert (entries[unpaid]["confirmCalls"], entries[unpaid]["approvals"]) == (0, 0)


async def test_the_ledger_filters_by_order_and_shows_every_window_of_it(
    client: httpx.AsyncClient,
) -> None:
    await authenticate(client, "order-ledger-3")
    await authenticate(client, "order-ledger-3")
    await authenticate(client, "order-ledger-4")

    entries = await ledger(client, "order-ledger-3")

    assert [entry["orderId"] for entry in entries] == ["order-ledger-3", "order-ledger-3"]
