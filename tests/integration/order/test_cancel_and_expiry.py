"""Canceling unpaid orders and expiring stale ones give the reservations back, with an event."""

from __future__ import annotations

from shared.events import OrderCanceled, OrderExpired
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

    assert (response.status_code, response.json()["field"]) == (422, "reason")
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
