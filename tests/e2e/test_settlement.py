"""Only the PG settles, no answer is dropped, refunds finish: the hazards of settlement, produced
on demand by the sandbox (scripted timelines and per-endpoint faults) against the real stack.

Each test ends with :func:`faults.assert_money_is_right`: the order agrees with the PG's ledger,
nothing is left unsettled or unpublished, nothing is dead-lettered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.e2e import faults
from tests.e2e.buyer import Buyer
from tests.e2e.faults import Expect, FaultStack

pytestmark = pytest.mark.e2e

# The PG's 10-minute window lasts 10 s on the sandbox's clock, and ours matches it.
SHORT_WINDOW = {
    "SANDBOX_CLOCK_SCALE": "60",
    "CONFIRM_WINDOW_SECONDS": "10",
    "CONFIRM_SAFETY_MARGIN_SECONDS": "2",
}


@pytest.fixture(scope="module")
async def stack(postgres_admin_dsn: str, amqp_url: str) -> AsyncIterator[FaultStack]:
    async with faults.fault_stack(postgres_admin_dsn, amqp_url, workers=2) as fs:
        yield fs


@pytest.fixture(scope="module")
async def short_window_stack(postgres_admin_dsn: str, amqp_url: str) -> AsyncIterator[FaultStack]:
    async with faults.fault_stack(postgres_admin_dsn, amqp_url, workers=2, env=SHORT_WINDOW) as fs:
        yield fs


@pytest.fixture
async def buyer(stack: FaultStack) -> AsyncIterator[Buyer]:
    async with Buyer.for_stack(stack.config) as customer:
        try:
            yield customer
        finally:
            await stack.no_faults()


async def attempt_of(fs: FaultStack, order_id: str) -> asyncpg.Record | None:
    async with fs.connection() as conn:
        row: asyncpg.Record | None = await conn.fetchrow(
            "SELECT state, pg_code, generation FROM approval.payment_attempts WHERE order_id = $1",
            order_id,
        )
        return row


async def test_an_approval_the_pg_makes_after_our_deadline_pays_the_order(
    short_window_stack: FaultStack,
) -> None:
    fs = short_window_stack
    async with Buyer.for_stack(fs.config) as buyer:
        order = await buyer.place_order(points=100)
        # The confirm's answer is lost; the PG keeps it IN_PROGRESS past both windows, then
        # approves it.
        await fs.script(order["orderId"], answer="DROP", completeAfterSeconds=25, outcome="DONE")

        await faults.pay(buyer, order)
        await asyncio.sleep(15)  # both windows have closed; the PG still says IN_PROGRESS

        waiting = await buyer.order(order["orderId"])
        assert (waiting["status"], waiting["payment"]["failure"]) == ("PENDING", None)
        attempt = await attempt_of(fs, order["orderId"])
        assert attempt is not None
        assert attempt["state"] == "UNKNOWN"
        snap = await faults.assert_money_is_right(fs, [order], Expect.PAID, within=60)
        [payment] = snap.ledger[order["orderId"]]
        assert payment["approvals"] == 1


async def test_a_merchant_configuration_error_holds_the_payment_until_it_is_fixed(
    stack: FaultStack, buyer: Buyer
) -> None:
    order = await buyer.place_order(points=100)
    await stack.faults(confirm={"errorRate": 1, "errorCode": "INVALID_API_KEY"})

    await faults.pay(buyer, order)
    await asyncio.sleep(30)  # misconfigured for 30 s: the buyer sees "processing"

    held = await buyer.order(order["orderId"])
    assert (held["status"], held["payment"]["status"], held["payment"]["failure"]) == (
        "PENDING",
        "AUTHENTICATED",
        None,
    )
    attempt = await attempt_of(stack, order["orderId"])
    assert attempt is not None
    # Held: unsettled (asked again and again, each time under a new key), never declined.
    assert attempt["state"] in ("UNKNOWN", "CONFIRMING")
    assert attempt["pg_code"] == "INVALID_API_KEY"
    assert attempt["generation"] > 1
    await stack.no_faults()  # fixed
    await faults.assert_money_is_right(stack, [order], Expect.PAID, within=60)


LIMITED = {"errorRate": 1, "errorCode": "FORBIDDEN_CONSECUTIVE_REQUEST"}


async def test_a_rate_limited_lookup_delays_settlement_but_declines_nothing(
    stack: FaultStack, buyer: Buyer
) -> None:
    orders = await faults.place_orders(buyer, 4, points=100)
    # The confirms go through but their answers are lost; asking is rate limited for a while.
    await stack.faults(confirm={"dropResponseRate": 1}, lookupByKey=LIMITED, lookupByOrder=LIMITED)

    await faults.pay_all(buyer, orders)
    await asyncio.sleep(5)
    await stack.no_faults()

    await faults.assert_money_is_right(stack, orders, Expect.PAID, within=60)


async def test_a_rate_limited_cancel_is_retried_until_the_refund_is_done(
    stack: FaultStack, buyer: Buyer
) -> None:
    order = await buyer.place_order(points=100)
    await faults.pay(buyer, order)
    await buyer.wait_for(order["orderId"], lambda o: o["status"] == "PAID")
    await stack.faults(cancel=LIMITED)

    await buyer.gateway.post(
        f"/api/orders/{order['orderId']}/cancel", json={"reason": "changed my mind"}
    )
    await asyncio.sleep(5)
    pending = await buyer.order(order["orderId"])
    await stack.no_faults()

    assert pending["status"] == "REFUND_PENDING"
    await buyer.wait_for(order["orderId"], lambda o: o["status"] == "REFUNDED", within=60)


async def test_a_refund_whose_answer_is_lost_at_a_pg_that_forgot_the_key_finishes(
    stack: FaultStack, buyer: Buyer
) -> None:
    before = (await buyer.gateway.get("/api/me")).json()["pointsBalance"]
    order = await buyer.place_order(points=1_000)
    await faults.pay(buyer, order)
    await buyer.wait_for(order["orderId"], lambda o: o["status"] == "PAID")
    # Every cancel goes through but its answer is lost, and a retry is answered afresh.
    await stack.faults(cancel={"dropResponseRate": 1}, forgetIdempotencyKeys=True)

    response = await buyer.gateway.post(
        f"/api/orders/{order['orderId']}/cancel", json={"reason": "changed my mind"}
    )
    assert response.status_code == 202

    refunded = await buyer.wait_for(
        order["orderId"], lambda o: o["status"] == "REFUNDED", within=60
    )
    assert refunded["refunds"][0]["status"] == "SUCCEEDED"
    [payment] = await buyer.ledger(order["orderId"])
    assert (payment["status"], len(payment["cancels"])) == ("CANCELED", 1)
    after = (await buyer.gateway.get("/api/me")).json()["pointsBalance"]
    assert after == before
