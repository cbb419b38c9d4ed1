"""The order rules, without I/O: pricing, coupons, points, state transitions, refunds."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.order import domain
from services.order.domain import (
    ApprovalDecision,
    Coupon,
    CouponKind,
    CouponStatus,
    LineRequest,
    Order,
    OrderStatus,
    Payment,
    PaymentStatus,
    Product,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
CATALOG = {
    p.sku: p
    for p in (
        Product("BEANS", "Coffee beans", 12_000),
        Product("KETTLE", "Drip kettle", 25_000),
        Product("GRINDER", "Hand grinder", 39_000),
    )
}


def fixed(off: int = 3_000, minimum: int = 10_000, **kw: Any) -> Coupon:
    coupon = Coupon("WELCOME", CouponKind.FIXED, minimum, NOW + timedelta(days=1), amount_off=off)
    return replace(coupon, **kw)


def percent(pct: int = 10, cap: int | None = 5_000, minimum: int = 0) -> Coupon:
    return Coupon(
        "PCT",
        CouponKind.PERCENT,
        minimum,
        NOW + timedelta(days=1),
        percent_off=pct,
        max_discount=cap,
    )


def quote(
    *lines: tuple[str, int], coupon: Coupon | None = None, points: int = 0, balance: int = 5_000
) -> domain.Quote:
    return domain.quote(
        [LineRequest(sku, qty) for sku, qty in lines],
        CATALOG,
        coupon=coupon,
        points=points,
        points_balance=balance,
        now=NOW,
    )


def order(**kw: Any) -> Order:
    base = Order(
        order_id="ord_test000000000000000000000",
        customer_id=1,
        customer_key="cus_x",
        order_name="Coffee beans",
        subtotal=24_000,
        coupon_code="WELCOME",
        coupon_discount=3_000,
        points_used=1_000,
        amount=20_000,
        status=OrderStatus.PENDING,
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=30),
    )
    return replace(base, **kw)


def paid(**kw: Any) -> Order:
    payment = Payment(PaymentStatus.APPROVED, "pk_1", NOW, "카드")
    return order(**{"status": OrderStatus.PAID, "payment": payment, **kw})


# --- pricing ---------------------------------------------------------------------------------


def test_the_amount_is_the_catalog_price_times_quantity_summed() -> None:
    result = quote(("BEANS", 2), ("KETTLE", 1))

    assert result.subtotal == 49_000
    assert result.amount == 49_000
    assert [line.line_total for line in result.lines] == [24_000, 25_000]


def test_coupon_and_points_come_off_the_subtotal() -> None:
    result = quote(("BEANS", 2), coupon=fixed(), points=1_000)

    assert (result.coupon_discount, result.points_used, result.amount) == (3_000, 1_000, 20_000)


def test_an_unknown_sku_is_refused() -> None:
    with pytest.raises(domain.UnknownProduct):
        quote(("NOPE", 1))


@pytest.mark.parametrize("quantity", [0, -1, 101])
def test_a_quantity_outside_one_to_a_hundred_is_refused(quantity: int) -> None:
    with pytest.raises(domain.QuantityOutOfRange):
        quote(("BEANS", quantity))


def test_more_than_fifty_lines_are_refused() -> None:
    lines = [LineRequest(f"SKU{i}", 1) for i in range(51)]

    with pytest.raises(domain.TooManyLines):
        domain.validate_lines(lines)


def test_an_order_without_items_is_refused() -> None:
    with pytest.raises(domain.EmptyOrder):
        quote()


def test_the_same_sku_on_two_lines_is_refused_not_merged() -> None:
    with pytest.raises(domain.DuplicateSku):
        quote(("BEANS", 1), ("BEANS", 2))


def test_the_order_name_names_the_first_item_and_counts_the_rest() -> None:
    assert quote(("BEANS", 1)).order_name == "Coffee beans"
    assert quote(("BEANS", 1), ("KETTLE", 1), ("GRINDER", 3)).order_name == (
        "Coffee beans and 2 more"
    )


def test_a_long_order_name_is_cut_to_a_hundred_characters() -> None:
    long = domain.PricedLine("X", "y" * 150, 1_000, 1)

    name = domain.order_name([long, long])

    assert len(name) == 100
    assert name.endswith("… and 1 more")


# --- coupons ---------------------------------------------------------------------------------


def test_a_fixed_coupon_takes_its_amount_off() -> None:
    assert fixed(off=3_000).discount_for(12_000) == 3_000


def test_a_fixed_coupon_never_takes_off_more_than_the_subtotal() -> None:
    assert fixed(off=3_000, minimum=0).discount_for(2_000) == 2_000


def test_a_percent_coupon_takes_its_share_rounded_down() -> None:
    assert percent(pct=10, cap=None).discount_for(12_345) == 1_234


def test_a_percent_coupon_is_capped() -> None:
    assert percent(pct=10, cap=5_000).discount_for(90_000) == 5_000


def test_a_coupon_below_its_minimum_order_is_refused() -> None:
    with pytest.raises(domain.CouponMinimumNotMet):
        quote(("BEANS", 1), coupon=fixed(minimum=20_000))


def test_an_expired_coupon_is_refused() -> None:
    with pytest.raises(domain.CouponExpired):
        quote(("BEANS", 1), coupon=fixed(expires_at=NOW))


@pytest.mark.parametrize("status", [CouponStatus.USED, CouponStatus.RESERVED])
def test_a_used_or_reserved_coupon_is_refused(status: CouponStatus) -> None:
    with pytest.raises(domain.CouponUnavailable):
        quote(("BEANS", 1), coupon=fixed(status=status))


def test_coupons_describe_what_they_take_off() -> None:
    assert fixed().describe() == "3,000 KRW off"
    assert percent().describe() == "10% off (up to 5,000 KRW)"


def test_a_coupon_returns_after_a_full_refund_unless_it_expired() -> None:
    assert domain.coupon_status_after_full_refund(fixed(), NOW) is CouponStatus.AVAILABLE
    expired = fixed(expires_at=NOW - timedelta(seconds=1))
    assert domain.coupon_status_after_full_refund(expired, NOW) is CouponStatus.USED


# --- points and the minimum amount -------------------------------------------------------------


def test_negative_points_are_refused() -> None:
    with pytest.raises(domain.NegativePoints):
        quote(("BEANS", 1), points=-1)


def test_more_points_than_the_balance_are_refused() -> None:
    with pytest.raises(domain.InsufficientPoints):
        quote(("BEANS", 1), points=5_001, balance=5_000)


def test_points_may_not_bring_the_amount_below_the_card_minimum() -> None:
    with pytest.raises(domain.AmountBelowMinimum):
        quote(("BEANS", 1), points=11_901, balance=20_000)


def test_an_amount_of_exactly_the_card_minimum_is_accepted() -> None:
    assert quote(("BEANS", 1), points=11_900, balance=20_000).amount == 100


# --- identifiers -------------------------------------------------------------------------------


def test_order_ids_follow_the_pg_rules_and_do_not_repeat() -> None:
    ids = {domain.new_order_id() for _ in range(100)}

    assert len(ids) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{6,64}", order_id) for order_id in ids)


def test_customer_keys_follow_the_pg_rules() -> None:
    assert re.fullmatch(r"[A-Za-z0-9\-_=.@]{2,50}", domain.new_customer_key())


def test_an_automatic_refund_id_is_derived_from_the_payment_key() -> None:
    assert domain.automatic_refund_id("pk_1") == domain.automatic_refund_id("pk_1")
    assert domain.automatic_refund_id("pk_1") != domain.automatic_refund_id("pk_2")


# --- state transitions -------------------------------------------------------------------------


def test_a_pending_order_expires_only_after_its_grace_period() -> None:
    pending = order()
    at_expiry = pending.expires_at

    assert not domain.is_expirable(pending, at_expiry, grace_seconds=60)
    assert domain.is_expirable(pending, at_expiry + timedelta(seconds=60), grace_seconds=60)


def test_a_paid_order_never_expires() -> None:
    assert not domain.is_expirable(paid(), NOW + timedelta(days=1), grace_seconds=0)


def test_approval_of_a_pending_order_with_its_amount_marks_it_paid() -> None:
    assert domain.decide_approval(order(), "pk_1", 20_000) is ApprovalDecision.MARK_PAID


def test_the_same_approval_again_is_nothing_new() -> None:
    assert domain.decide_approval(paid(), "pk_1", 20_000) is ApprovalDecision.ALREADY_PAID


@pytest.mark.parametrize("status", [OrderStatus.EXPIRED, OrderStatus.CANCELED])
def test_approval_of_an_order_that_can_no_longer_be_fulfilled_is_refunded(
    status: OrderStatus,
) -> None:
    assert domain.decide_approval(order(status=status), "pk_1", 20_000) is ApprovalDecision.REFUND


def test_a_second_payment_for_a_paid_order_is_refunded() -> None:
    assert domain.decide_approval(paid(), "pk_2", 20_000) is ApprovalDecision.REFUND


def test_an_approval_for_another_amount_is_refunded() -> None:
    assert domain.decide_approval(order(), "pk_1", 100) is ApprovalDecision.REFUND


def test_payment_failures_only_touch_a_pending_order() -> None:
    assert domain.accepts_payment_news(order(), NOW)
    assert not domain.accepts_payment_news(paid(), NOW)


def test_a_late_delivered_older_payment_result_does_not_hide_a_newer_one() -> None:
    failure = domain.Failure("AMOUNT_MISMATCH", "amount differs")
    rejected = order(payment=Payment(PaymentStatus.FAILED, failure=failure, as_of=NOW))

    assert not domain.accepts_payment_news(rejected, NOW - timedelta(seconds=1))
    assert domain.accepts_payment_news(rejected, NOW + timedelta(seconds=1))


def test_a_refund_without_an_amount_takes_the_remaining_balance() -> None:
    assert domain.refund_amount(paid(refunded_amount=5_000), None) == 15_000


def test_a_refund_above_the_remaining_balance_is_refused() -> None:
    with pytest.raises(domain.RefundExceedsBalance):
        domain.refund_amount(paid(refunded_amount=5_000), 15_001)


def test_a_refund_of_nothing_is_refused() -> None:
    with pytest.raises(domain.InvalidRefundAmount):
        domain.refund_amount(paid(), 0)


def test_a_second_refund_waits_for_the_first() -> None:
    with pytest.raises(domain.RefundInProgress):
        domain.refund_amount(paid(status=OrderStatus.REFUND_PENDING), None)


@pytest.mark.parametrize("status", [OrderStatus.PENDING, OrderStatus.EXPIRED, OrderStatus.REFUNDED])
def test_an_order_that_holds_no_money_cannot_be_refunded(status: OrderStatus) -> None:
    with pytest.raises(domain.OrderNotCancelable):
        domain.refund_amount(order(status=status), None)


def test_a_balance_reported_again_or_late_restores_nothing_twice() -> None:
    after_first = paid(points_used=1_000, amount=3_000, refunded_amount=2_000, points_restored=666)

    again = domain.apply_refund(after_first, 1_000)
    older = domain.apply_refund(after_first, 2_000)

    assert (again.points_back, again.refunded_total) == (0, 2_000)
    assert (older.points_back, older.refunded_total) == (0, 2_000)


def test_a_failed_refund_puts_the_order_back_to_its_paid_state() -> None:
    assert domain.status_after_failed_refund(paid()) is OrderStatus.PAID
    partly = paid(refunded_amount=1_000)
    assert domain.status_after_failed_refund(partly) is OrderStatus.PARTIALLY_REFUNDED


# --- proportional restoration ------------------------------------------------------------------


def test_a_partial_refund_returns_points_in_proportion_rounded_down() -> None:
    outcome = domain.apply_refund(paid(points_used=1_000, amount=20_000), 13_000)

    assert outcome.points_back == 350
    assert outcome.status is OrderStatus.PARTIALLY_REFUNDED
    assert not outcome.coupon_back


def test_rounding_is_on_the_refunded_total_so_nothing_is_lost() -> None:
    first = domain.apply_refund(paid(points_used=1_000, amount=3_000), 2_000)
    after_first = paid(
        points_used=1_000, amount=3_000, refunded_amount=1_000, points_restored=first.points_back
    )
    second = domain.apply_refund(after_first, 1_000)

    assert (first.points_back, second.points_back) == (333, 333)


def test_the_refund_that_completes_the_order_returns_the_remaining_points_and_the_coupon() -> None:
    partly = paid(
        points_used=1_000,
        amount=3_000,
        refunded_amount=2_000,
        points_restored=666,
        status=OrderStatus.REFUND_PENDING,
    )

    outcome = domain.apply_refund(partly, 0)

    assert outcome.points_back == 334
    assert outcome.status is OrderStatus.REFUNDED
    assert outcome.payment_status is PaymentStatus.REFUNDED
    assert outcome.coupon_back
