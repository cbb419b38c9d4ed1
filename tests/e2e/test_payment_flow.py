"""The product, end to end: real processes, nginx, RabbitMQ, PostgreSQL and the sandbox PG."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.buyer import Buyer

pytestmark = pytest.mark.e2e


def paid(order: dict[str, object]) -> bool:
    return order["status"] == "PAID"


def failed(order: dict[str, object]) -> bool:
    payment = order.get("payment") or {}
    return isinstance(payment, dict) and payment.get("failure") is not None


async def test_a_payment_through_the_gateway_ends_paid_and_agrees_with_the_ledger(
    buyer: Buyer,
) -> None:
    order = await buyer.place_order()

    redirect = await buyer.pay(order)

    assert redirect.status_code in (200, 303)
    final = await buyer.wait_for(order["orderId"], paid)
    [payment] = await buyer.ledger(order["orderId"])
    assert payment["status"] == "DONE"
    assert payment["totalAmount"] == order["amount"]
    assert payment["approvals"] == 1
    assert final["payment"]["paymentKey"] == payment["paymentKey"]


async def test_coupon_and_points_are_priced_by_the_server_and_spent_on_approval(
    buyer: Buyer,
) -> None:
    me = (await buyer.gateway.get("/api/me")).json()
    products = (await buyer.gateway.get("/api/products")).json()
    priciest = max(products, key=lambda p: p["price"])
    coupon = me["coupons"][0]["code"]
    points_before = me["pointsBalance"]

    order = await buyer.place_order(
        items=[{"sku": priciest["sku"], "quantity": 1}], couponCode=coupon, points=1000
    )
    await buyer.pay(order)
    await buyer.wait_for(order["orderId"], paid)

    assert order["amount"] < priciest["price"] - 1000
    me_after = (await buyer.gateway.get("/api/me")).json()
    assert me_after["pointsBalance"] == points_before - 1000
    assert coupon not in {c["code"] for c in me_after["coupons"]}


async def test_a_tampered_amount_is_never_confirmed(buyer: Buyer) -> None:
    order = await buyer.place_order()
    cheap = 100

    await buyer.follow_redirect(await buyer.authenticate(order, amount=cheap))

    final = await buyer.wait_for(order["orderId"], failed)
    assert final["status"] == "PENDING"
    assert final["payment"]["failure"]["code"] == "AMOUNT_MISMATCH"
    [payment] = await buyer.ledger(order["orderId"])
    assert payment["confirmCalls"] == 0
    assert payment["approvals"] == 0


async def test_replayed_and_refreshed_redirects_charge_once(buyer: Buyer) -> None:
    order = await buyer.place_order()
    location = await buyer.authenticate(order)

    await asyncio.gather(*(buyer.follow_redirect(location) for _ in range(5)))
    await buyer.wait_for(order["orderId"], paid)
    await buyer.follow_redirect(location)
    await asyncio.sleep(0.5)

    [payment] = await buyer.ledger(order["orderId"])
    assert payment["approvals"] == 1


async def test_a_second_authentication_for_a_paid_order_is_not_confirmed(buyer: Buyer) -> None:
    order = await buyer.place_order()
    await buyer.pay(order)
    await buyer.wait_for(order["orderId"], paid)

    await buyer.pay(order)
    await asyncio.sleep(1.0)

    payments = await buyer.ledger(order["orderId"])
    assert sum(p["approvals"] for p in payments) == 1
    assert (await buyer.order(order["orderId"]))["status"] == "PAID"


async def test_another_customers_order_is_not_visible(stack: object, buyer: Buyer) -> None:
    order = await buyer.place_order()
    stranger = {"Authorization": "Bearer demo-token-2"}

    response = await buyer.gateway.get(f"/api/orders/{order['orderId']}", headers=stranger)

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_many_concurrent_payments_each_end_paid_with_exactly_one_approval(
    buyer: Buyer,
) -> None:
    orders = [await buyer.place_order() for _ in range(20)]

    await asyncio.gather(*(buyer.pay(order) for order in orders))

    for order in orders:
        await buyer.wait_for(order["orderId"], paid)
        [payment] = await buyer.ledger(order["orderId"])
        assert payment["approvals"] == 1
