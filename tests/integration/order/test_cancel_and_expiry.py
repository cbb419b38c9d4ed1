"""Canceling unpaid orders and expiring stale ones give the reservations back, with an event."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.events import (
    OrderCanceled,
    OrderExpired,
    PaymentAuthenticated,
    PaymentRejected,
    utcnow,
)
from tests.integration.order.conftest import COUPON, START_POINTS, TOKEN_2, OrderService, bearer


async def test_canceling_an_unpaid_order_releases_its_coupon_and_points(
    service: OrderService,
) -> None:
    order = await service.placed(couponCode=COUPON, points=2_000)

    response = await service.client.post(
        f"/api/orders/{order['orderId']}/cancel",
        json={"reason": "changed my mind"},
        headers=bearer(),
    )

    assert (response.status_code, response.json()["status"]) == (200, "CANCELED")
    assert await service.points() == START_POINTS
    assert await service.coupon_status(COUPON) == "AVAILABLE"
    canceled = await service.next_event(OrderCanceled)
    assert (canceled.order_id, canceled.reason) == (order["orderId"], "changed my mind")


async def test_a_canceled_order_cannot_be_canceled_again(service: OrderService) -> None:
    order = await service.placed(points=1_000)
    path = f"/api/orders/{order['orderId']}/cancel"
    await service.client.post(path, json={"reason": "no"}, headers=bearer())

    again = await service.client.post(path, json={"reason": "no"}, headers=bearer())

    assert (again.status_code, again.json()["code"]) == (409, "ORDER_NOT_CANCELABLE")
    assert await service.points() == START_POINTS


async def test_a_reason_with_a_nul_character_is_refused_and_the_order_stays_pending(
    service: OrderService,
) -> None:
    order = await service.placed()

    response = await service.client.post(
        f"/api/orders/{order['orderId']}/cancel", json={"reason": "no\x00"}, headers=bearer()
    )

    assert (response.status_code, response.json()["code"]) == (400, "INVALID_CHARACTERS")
    assert (await service.order(order["orderId"]))["status"] == "PENDING"


async def test_only_the_owner_can_cancel(service: OrderService) -> None:
    order = await service.placed()

    response = await service.client.post(
        f"/api/orders/{order['orderId']}/cancel",
        json={"reason": "mine now"},
        headers=bearer(TOKEN_2),
    )

    assert (response.status_code, response.json()["code"]) == (404, "ORDER_NOT_FOUND")
    assert (await service.order(order["orderId"]))["status"] == "PENDING"


async def test_an_expired_order_releases_its_reservations_and_is_announced(
    service: OrderService,
) -> None:
    order = await service.placed(couponCode=COUPON, points=2_000)

    await service.expire(order["orderId"])

    await service.order_when(order["orderId"], lambda o: o["status"] == "EXPIRED")
    assert await service.points() == START_POINTS
    assert await service.coupon_status(COUPON) == "AVAILABLE"
    expired = await service.next_event(OrderExpired)
    assert expired.order_id == order["orderId"]


async def test_an_order_within_its_window_does_not_expire(service: OrderService) -> None:
    order = await service.placed(points=1_000)
    stale = await service.placed()
    await service.expire(stale["orderId"])

    await service.order_when(stale["orderId"], lambda o: o["status"] == "EXPIRED")

    assert (await service.order(order["orderId"]))["status"] == "PENDING"
    assert await service.points() == START_POINTS - 1_000


def authenticated(order: dict[str, Any], payment_key: str) -> PaymentAuthenticated:
    return PaymentAuthenticated(
        correlation_id=order["orderId"],
        order_id=order["orderId"],
        payment_key=payment_key,
        amount=order["amount"],
        payment_type="NORMAL",
        received_at=utcnow(),
    )


def rejected(order: dict[str, Any], payment_key: str) -> PaymentRejected:
    return PaymentRejected(
        correlation_id=order["orderId"],
        order_id=order["orderId"],
        payment_key=payment_key,
        reason="PG_DECLINED",
        message="declined",
        pg_code="REJECT_CARD_PAYMENT",
    )


async def test_an_order_whose_payment_is_still_being_settled_does_not_expire(
    service: OrderService,
) -> None:
    order = await service.placed(points=1_000)
    event = authenticated(order, "pk_settling")
    await service.publish(event)
    await service.handled(event)

    await service.expire(order["orderId"])
    await asyncio.sleep(1.0)  # ten sweeps

    assert (await service.order(order["orderId"]))["status"] == "PENDING"
    assert await service.points() == START_POINTS - 1_000


async def test_an_order_expires_once_its_payment_is_settled_as_not_approved(
    service: OrderService,
) -> None:
    order = await service.placed(points=1_000)
    await service.publish(authenticated(order, "pk_settling"))
    await service.expire(order["orderId"])
    await service.publish(rejected(order, "pk_settling"))

    await service.order_when(order["orderId"], lambda o: o["status"] == "EXPIRED")

    assert await service.points() == START_POINTS


async def test_an_outcome_that_arrives_before_its_authentication_still_settles_it(
    service: OrderService,
) -> None:
    order = await service.placed()
    outcome = rejected(order, "pk_reordered")
    await service.publish(outcome)
    await service.handled(outcome)
    late = authenticated(order, "pk_reordered")
    await service.publish(late)
    await service.handled(late)

    await service.expire(order["orderId"])

    await service.order_when(order["orderId"], lambda o: o["status"] == "EXPIRED")
