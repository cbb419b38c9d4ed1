"""Tampering and forgery through the real stack: nothing is confirmed at the PG, and operators
find every attempt with `python -m services.approval security-events` (and checkout's
conflicting redirects with `python -m services.checkout conflicts`)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from typing import Any

import pytest

from deploy.stack import ROOT, Stack
from tests.e2e.buyer import Buyer

pytestmark = pytest.mark.e2e


def failed(order: dict[str, Any]) -> bool:
    return (order.get("payment") or {}).get("failure") is not None


def operator_listing(stack: Stack, *command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", *command],
        env=stack.config.environment(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def line_of(listing: str, order_id: str, kind: str) -> str:
    lines = [line for line in listing.splitlines() if order_id in line and kind in line]
    assert len(lines) == 1, f"{kind} for {order_id} not listed once:\n{listing}"
    return lines[0]


async def test_tampered_and_forged_redirects_are_never_confirmed_and_are_listed(
    stack: Stack, buyer: Buyer
) -> None:
    tampered, mine, theirs, made_up, paid = [await buyer.place_order() for _ in range(5)]

    # The buyer pays 100 in the window, for an order that costs more.
    await buyer.follow_redirect(await buyer.authenticate(tampered, amount=100))
    # The PG authenticated `theirs`; its paymentKey is presented for `mine`, with mine's amount.
    await buyer.follow_redirect(
        await buyer.authenticate(theirs), orderId=mine["orderId"], amount=str(mine["amount"])
    )
    # A paymentKey nobody issued.
    invented = f"tgen_{uuid.uuid4().hex}"
    await buyer.gateway.get(
        "/payments/success",
        params={
            "paymentKey": invented,
            "orderId": made_up["orderId"],
            "amount": str(made_up["amount"]),
            "paymentType": "NORMAL",
        },
    )
    # A paid order, then another authentication for it, and its old redirect with a new amount.
    first = await buyer.authenticate(paid)
    await buyer.follow_redirect(first)
    await buyer.wait_for(paid["orderId"], lambda o: o["status"] == "PAID")
    await buyer.follow_redirect(await buyer.authenticate(paid))
    await buyer.follow_redirect(first, amount="100")

    for order in (tampered, mine, made_up):
        final = await buyer.wait_for(order["orderId"], failed)
        assert final["status"] == "PENDING"
    for order in (tampered, mine, theirs, made_up):
        ledger = await buyer.ledger(order["orderId"])
        assert all(p["approvals"] == 0 and p["status"] != "DONE" for p in ledger), ledger
    assert sorted(p["approvals"] for p in await buyer.ledger(paid["orderId"])) == [0, 1]

    events = await _listed_security_events(stack, paid["orderId"])
    amount_line = line_of(events, tampered["orderId"], "AMOUNT_MISMATCH")
    assert re.search(rf" {tampered['amount']} +100 ", amount_line), amount_line
    assert "127.0.0.1" in amount_line
    assert "python-httpx" in amount_line
    assert theirs["orderId"] in line_of(events, mine["orderId"], "FOREIGN_PAYMENT_KEY")
    assert invented in line_of(events, made_up["orderId"], "UNKNOWN_PAYMENT_KEY")
    line_of(events, paid["orderId"], "ALREADY_PAID")

    conflicts = operator_listing(stack, "services.checkout", "conflicts", "--since", "10m")
    assert f"{paid['orderId']} 100 NORMAL" in conflicts


async def _listed_security_events(stack: Stack, last_order_id: str) -> str:
    """The listing once the last rejection (the paid order's replay) has been recorded."""
    for _ in range(100):
        listing = operator_listing(stack, "services.approval", "security-events", "--since", "1h")
        if last_order_id in listing:
            return listing
        await asyncio.sleep(0.2)
    raise AssertionError(f"the replay was never listed:\n{listing}")


async def test_the_owners_payment_goes_through_right_after_a_forged_redirect(
    buyer: Buyer,
) -> None:
    order = await buyer.place_order()
    real = await buyer.authenticate(order)
    forged_key = f"tgen_{uuid.uuid4().hex}"

    # Someone who knows the orderId and amount sends a redirect with a made-up paymentKey first.
    await buyer.follow_redirect(real, paymentKey=forged_key)
    await buyer.follow_redirect(real)

    paid = await buyer.wait_for(order["orderId"], lambda found: found["status"] == "PAID")
    [payment] = await buyer.ledger(order["orderId"])
    assert paid["payment"]["paymentKey"] == payment["paymentKey"] != forged_key
    assert (payment["status"], payment["approvals"]) == ("DONE", 1)


async def test_a_fail_redirect_cannot_put_words_in_the_shops_mouth(buyer: Buyer) -> None:
    order = await buyer.place_order()

    page = await buyer.gateway.get(
        "/payments/fail",
        params={
            "code": "REJECT_CARD_COMPANY",
            "message": "Your card is blocked: call +82 10 0000 0000",
            "orderId": order["orderId"],
        },
        follow_redirects=True,
    )
    failed_order = await buyer.wait_for(order["orderId"], failed)

    assert "call +82" not in page.text
    assert "The card company declined the payment" in page.text
    assert "call +82" not in failed_order["payment"]["failure"]["message"]
