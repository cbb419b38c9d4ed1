"""Payment results published on the exchange drive the order through the real consumer."""

from __future__ import annotations

import uuid
from typing import Any

from shared.events import (
    PaymentAuthenticated,
    PaymentRefunded,
    PaymentRejected,
    RefundFailed,
    RefundRequested,
    utcnow,
)
from tests.integration.order.conftest import (
    COUPON,
    START_POINTS,
    OrderService,
    approval,
    bearer,
)


def is_paid(order: dict[str, Any]) -> bool:
    return bool(order["status"] == "PAID")


async def paid_order(service: OrderService, **body: Any) -> dict[str, Any]:
    order = await service.placed(**body)
    await service.approve(order)
    return await service.order_when(order["orderId"], is_paid)


def refunded(refund: RefundRequested, amount: int, *, fully: bool, balance: int) -> PaymentRefunded:
    return PaymentRefunded(
        correlation_id=refund.order_id,
        order_id=refund.order_id,
        payment_key=refund.payment_key,
        refund_id=refund.refund_id,
        refunded_amount=amount,
        balance_amount=balance,
        fully_refunded=fully,
    )


async def test_an_approved_payment_makes_the_order_paid_and_spends_the_coupon(
    service: OrderService,
) -> None:
    order = await paid_order(service, couponCode=COUPON, points=1_000)

    assert order["payment"]["status"] == "APPROVED"
    assert (order["payment"]["paymentKey"], order["payment"]["method"]) == ("pk_1", "카드")
    assert order["payment"]["approvedAt"] is not None
    assert await service.coupon_status(COUPON) == "USED"
    assert await service.points() == START_POINTS - 1_000


async def test_a_duplicate_approval_changes_nothing(service: OrderService) -> None:
    order = await service.placed(couponCode=COUPON, points=1_000)
    first = approval(order)
    await service.publish(first)
    await service.order_when(order["orderId"], is_paid)

    await service.publish(first)  # the same message again
    again = approval(order)  # the same payment in a new event
    await service.publish(again)
    await service.handled(again)

    final = await service.order(order["orderId"])
    assert (final["status"], final["payment"]["paymentKey"]) == ("PAID", "pk_1")
    assert await service.coupon_status(COUPON) == "USED"
    assert await service.points() == START_POINTS - 1_000
    assert await service.published(RefundRequested) == []


async def test_an_approval_for_an_expired_order_is_refunded_automatically(
    service: OrderService,
) -> None:
    order = await service.placed(points=1_000)
    await service.expire(order["orderId"])
    await service.order_when(order["orderId"], lambda o: o["status"] == "EXPIRED")

    late = approval(order, "pk_late")
    await service.publish(late)

    refund = await service.next_event(RefundRequested)
    assert (refund.order_id, refund.payment_key, refund.amount) == (
        order["orderId"],
        "pk_late",
        order["amount"],
    )
    assert refund.causation_id == late.event_id
    final = await service.order(order["orderId"])
    assert final["status"] == "EXPIRED"
    assert final["refunds"][0]["kind"] == "AUTOMATIC"
    assert await service.points() == START_POINTS


async def test_a_redelivered_late_approval_asks_for_one_refund_only(
    service: OrderService,
) -> None:
    order = await service.placed()
    cancel = {"reason": "no longer needed"}
    await service.client.post(
        f"/api/orders/{order['orderId']}/cancel", json=cancel, headers=bearer()
    )

    await service.publish(approval(order, "pk_late"))
    again = approval(order, "pk_late")
    await service.publish(again)
    await service.handled(again)

    refunds = await service.published(RefundRequested)
    assert len(refunds) == 1


async def test_a_second_payment_for_a_paid_order_is_refunded(service: OrderService) -> None:
    order = await paid_order(service)

    await service.approve(order, "pk_second")

    refund = await service.next_event(RefundRequested)
    assert refund.payment_key == "pk_second"
    final = await service.order(order["orderId"])
    assert (final["status"], final["payment"]["paymentKey"]) == ("PAID", "pk_1")


async def test_a_rejected_payment_keeps_the_order_payable_and_shows_why(
    service: OrderService,
) -> None:
    order = await service.placed()

    await service.publish(
        PaymentRejected(
            correlation_id=order["orderId"],
            order_id=order["orderId"],
            payment_key="pk_1",
            reason="AMOUNT_MISMATCH",
            message="The amount differs from the order.",
        )
    )

    final = await service.order_when(order["orderId"], lambda o: o["payment"]["failure"])
    assert final["status"] == "PENDING"
    assert final["payment"]["status"] == "FAILED"
    assert final["payment"]["failure"]["code"] == "AMOUNT_MISMATCH"


async def test_a_pg_decline_shows_the_pgs_own_code_and_message(service: OrderService) -> None:
    order = await service.placed()
    await service.publish(
        PaymentRejected(
            correlation_id=order["orderId"],
            order_id=order["orderId"],
            payment_key="pk_declined",
            reason="PG_DECLINED",
            message="Declined: limit or balance.",
            pg_code="REJECT_CARD_PAYMENT",
        )
    )

    final = await service.order_when(order["orderId"], lambda o: o["payment"]["failure"])
    failure = final["payment"]["failure"]
    assert (failure["code"], failure["message"]) == (
        "REJECT_CARD_PAYMENT",
        "Declined: limit or balance.",
    )


async def test_a_rejection_after_approval_leaves_the_paid_order_alone(
    service: OrderService,
) -> None:
    order = await paid_order(service)
    rejection = PaymentRejected(
        correlation_id=order["orderId"],
        order_id=order["orderId"],
        payment_key="pk_forged",
        reason="PG_DECLINED",
        message="declined",
        pg_code="REJECT_CARD_PAYMENT",
    )

    await service.publish(rejection)
    await service.handled(rejection)

    final = await service.order(order["orderId"])
    assert (final["status"], final["payment"]["failure"]) == ("PAID", None)


async def test_results_for_an_unknown_order_are_acknowledged(service: OrderService) -> None:
    event = PaymentAuthenticated(
        correlation_id="ord_forged_by_a_browser",
        order_id="ord_forged_by_a_browser",
        payment_key="pk_x",
        amount=100,
        payment_type="NORMAL",
        received_at=utcnow(),
    )

    await service.publish(event)

    await service.handled(event)


async def test_a_partial_refund_restores_points_in_proportion(service: OrderService) -> None:
    order = await paid_order(service, couponCode=COUPON, points=1_000)  # amount 8,000
    path = f"/api/orders/{order['orderId']}/cancel"

    response = await service.client.post(
        path, json={"reason": "one broken", "amount": 3_000}, headers=bearer()
    )
    assert (response.status_code, response.json()["status"]) == (202, "REFUND_PENDING")
    refund = await service.next_event(RefundRequested)
    assert (refund.amount, refund.payment_key) == (3_000, "pk_1")
    await service.publish(refunded(refund, 3_000, fully=False, balance=5_000))

    final = await service.order_when(
        order["orderId"], lambda o: o["status"] == "PARTIALLY_REFUNDED"
    )
    assert final["refundedAmount"] == 3_000
    assert await service.points() == START_POINTS - 1_000 + 1_000 * 3_000 // 8_000
    assert await service.coupon_status(COUPON) == "USED"


async def test_a_full_refund_returns_all_points_and_the_coupon(service: OrderService) -> None:
    order = await paid_order(service, couponCode=COUPON, points=1_000)
    path = f"/api/orders/{order['orderId']}/cancel"

    await service.client.post(path, json={"reason": "all of it"}, headers=bearer())
    refund = await service.next_event(RefundRequested)
    await service.publish(refunded(refund, order["amount"], fully=True, balance=0))

    final = await service.order_when(order["orderId"], lambda o: o["status"] == "REFUNDED")
    assert final["payment"]["status"] == "REFUNDED"
    assert await service.points() == START_POINTS
    assert await service.coupon_status(COUPON) == "AVAILABLE"


async def test_a_failed_refund_puts_the_order_back_to_paid_with_the_reason(
    service: OrderService,
) -> None:
    order = await paid_order(service)
    path = f"/api/orders/{order['orderId']}/cancel"
    await service.client.post(path, json={"reason": "refund"}, headers=bearer())
    refund = await service.next_event(RefundRequested)

    await service.publish(
        RefundFailed(
            correlation_id=refund.order_id,
            order_id=refund.order_id,
            payment_key=refund.payment_key,
            refund_id=refund.refund_id,
            code="NOT_CANCELABLE_PAYMENT",
            message="cannot cancel",
        )
    )

    final = await service.order_when(order["orderId"], is_paid)
    assert final["refunds"][0]["status"] == "FAILED"
    assert final["refunds"][0]["failure"]["code"] == "NOT_CANCELABLE_PAYMENT"


async def test_a_refund_above_the_paid_amount_is_refused(service: OrderService) -> None:
    order = await paid_order(service)

    response = await service.client.post(
        f"/api/orders/{order['orderId']}/cancel",
        json={"reason": "greedy", "amount": order["amount"] + 1},
        headers=bearer(),
    )

    assert (response.status_code, response.json()["code"]) == (409, "REFUND_EXCEEDS_BALANCE")


async def test_an_authentication_is_shown_on_a_pending_order(service: OrderService) -> None:
    order = await service.placed()

    await service.publish(
        PaymentAuthenticated(
            correlation_id=order["orderId"],
            order_id=order["orderId"],
            payment_key="pk_1",
            amount=order["amount"],
            payment_type="NORMAL",
            received_at=utcnow(),
        )
    )

    final = await service.order_when(
        order["orderId"], lambda o: o["payment"]["status"] == "AUTHENTICATED"
    )
    assert final["status"] == "PENDING"


def canceled_at_the_pg(
    order: dict[str, Any], transaction: str, amount: int, balance: int
) -> PaymentRefunded:
    return PaymentRefunded(
        correlation_id=order["orderId"],
        order_id=order["orderId"],
        payment_key="pk_1",
        refund_id=f"pg_{transaction}",
        refunded_amount=amount,
        balance_amount=balance,
        fully_refunded=balance == 0,
        reason="canceled in the console",
    )


async def test_cancels_made_at_the_pg_refund_the_order_with_points_in_proportion(
    service: OrderService,
) -> None:
    order = await paid_order(service, couponCode=COUPON, points=1_000)  # amount 8,000

    await service.publish(canceled_at_the_pg(order, "txn-1", 2_000, 6_000))
    partly = await service.order_when(
        order["orderId"], lambda o: o["status"] == "PARTIALLY_REFUNDED"
    )
    points_after_partial = await service.points()
    await service.publish(canceled_at_the_pg(order, "txn-2", 6_000, 0))
    final = await service.order_when(order["orderId"], lambda o: o["status"] == "REFUNDED")

    assert partly["refundedAmount"] == 2_000
    assert points_after_partial == START_POINTS - 1_000 + 1_000 * 2_000 // 8_000
    assert final["refundedAmount"] == 8_000
    assert [r["kind"] for r in final["refunds"]] == ["EXTERNAL", "EXTERNAL"]
    assert await service.points() == START_POINTS
    assert await service.coupon_status(COUPON) == "AVAILABLE"


async def test_a_cancel_made_at_the_pg_reported_twice_refunds_once(service: OrderService) -> None:
    order = await paid_order(service, points=1_000)
    news = canceled_at_the_pg(order, "txn-1", 2_000, order["amount"] - 2_000)

    await service.publish(news)
    await service.handled(news)
    again = news.model_copy(update={"event_id": uuid.uuid4()})
    await service.publish(again)
    await service.handled(again)

    final = await service.order(order["orderId"])
    assert (final["refundedAmount"], len(final["refunds"])) == (2_000, 1)
