"""Pricing and refund restoration as properties: for any catalog, cart, coupon and points.

The amount the PG is asked for is ``sum(price * quantity) - coupon discount - points``, never
negative and never below the PG's card minimum; whatever cannot meet that is refused with the
domain's own error. Points restored over any sequence of partial refunds add up to exactly the
points used, and never more at any step.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from services.order import domain
from services.order.domain import (
    MAX_QUANTITY,
    MIN_CARD_AMOUNT,
    Coupon,
    CouponKind,
    CouponStatus,
    LineRequest,
    Order,
    OrderStatus,
    Product,
    Quote,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PROPERTIES = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Catalog = dict[str, Product]

# Small prices as well as large ones, so the card minimum is reached from both sides.
prices = st.one_of(st.integers(1, 500), st.integers(1, 3_000_000))
skus = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)
catalogs = st.dictionaries(skus, prices, min_size=1, max_size=8).map(
    lambda entries: {sku: Product(sku, f"Product {sku}", price) for sku, price in entries.items()}
)


@st.composite
def carts(draw: st.DrawFn, catalog: Catalog) -> list[LineRequest]:
    chosen = draw(st.lists(st.sampled_from(sorted(catalog)), min_size=1, unique=True))
    return [LineRequest(sku, draw(st.integers(1, MAX_QUANTITY))) for sku in chosen]


@st.composite
def coupons(draw: st.DrawFn) -> Coupon:
    kind = draw(st.sampled_from(CouponKind))
    coupon = Coupon(
        code=draw(st.sampled_from(["WELCOME", "PCT10", "BIG"])),
        kind=kind,
        min_order_amount=draw(st.one_of(st.just(0), st.integers(0, 500_000))),
        expires_at=NOW + timedelta(seconds=draw(st.integers(-86_400, 86_400))),
        status=draw(st.sampled_from(CouponStatus)),
    )
    if kind is CouponKind.FIXED:
        return replace(coupon, amount_off=draw(st.integers(1, 200_000)))
    return replace(
        coupon,
        percent_off=draw(st.integers(1, 100)),
        max_discount=draw(st.none() | st.integers(1, 200_000)),
    )


@st.composite
def orders_to_price(
    draw: st.DrawFn,
) -> tuple[Catalog, list[LineRequest], Coupon | None, int, int]:
    catalog = draw(catalogs)
    balance = draw(st.integers(0, 300_000))
    points = draw(st.one_of(st.just(0), st.just(balance), st.integers(0, balance)))
    return catalog, draw(carts(catalog)), draw(st.none() | coupons()), points, balance


def subtotal_of(lines: list[LineRequest], catalog: Catalog) -> int:
    return sum(catalog[line.sku].price * line.quantity for line in lines)


def expected_discount(coupon: Coupon, subtotal: int) -> int:
    if coupon.kind is CouponKind.FIXED:
        assert coupon.amount_off is not None
        return min(coupon.amount_off, subtotal)
    assert coupon.percent_off is not None
    cap = coupon.max_discount if coupon.max_discount is not None else subtotal
    return min(subtotal * coupon.percent_off // 100, cap, subtotal)


def refusals(
    subtotal: int, coupon: Coupon | None, points: int, balance: int
) -> set[type[domain.OrderError]]:
    """Every error whose condition the request meets (the domain raises one of them)."""
    found: set[type[domain.OrderError]] = set()
    if coupon is not None:
        if coupon.status is not CouponStatus.AVAILABLE:
            found.add(domain.CouponUnavailable)
        if coupon.expires_at <= NOW:
            found.add(domain.CouponExpired)
        if subtotal < coupon.min_order_amount:
            found.add(domain.CouponMinimumNotMet)
    if points < 0:
        found.add(domain.NegativePoints)
    if points > balance:
        found.add(domain.InsufficientPoints)
    if not found:
        discount = expected_discount(coupon, subtotal) if coupon else 0
        if subtotal - discount - points < MIN_CARD_AMOUNT:
            found.add(domain.AmountBelowMinimum)
    return found


def price(
    catalog: Catalog, lines: list[LineRequest], coupon: Coupon | None, points: int, balance: int
) -> Quote:
    return domain.quote(
        lines, catalog, coupon=coupon, points=points, points_balance=balance, now=NOW
    )


@PROPERTIES
@given(orders_to_price())
def test_an_order_is_priced_from_the_catalog_or_refused_for_a_reason_it_meets(
    case: tuple[Catalog, list[LineRequest], Coupon | None, int, int],
) -> None:
    catalog, lines, coupon, points, balance = case
    subtotal = subtotal_of(lines, catalog)
    expected_refusals = refusals(subtotal, coupon, points, balance)
    if expected_refusals:
        with pytest.raises(domain.OrderError) as refused:
            price(catalog, lines, coupon, points, balance)
        assert type(refused.value) in expected_refusals, repr(refused.value)
        event(f"refused: {type(refused.value).__name__}")
        return
    event("accepted")
    quote = price(catalog, lines, coupon, points, balance)
    discount = expected_discount(coupon, subtotal) if coupon else 0
    assert quote.subtotal == subtotal
    assert quote.coupon_discount == discount
    assert quote.points_used == points
    assert quote.amount == subtotal - discount - points
    assert quote.coupon_code == (coupon.code if coupon else None)
    assert [(line.sku, line.quantity) for line in quote.lines] == [
        (line.sku, line.quantity) for line in lines
    ]
    assert all(line.unit_price == catalog[line.sku].price for line in quote.lines)


@PROPERTIES
@given(orders_to_price())
def test_an_accepted_amount_is_never_below_the_card_minimum_and_nothing_is_negative(
    case: tuple[Catalog, list[LineRequest], Coupon | None, int, int],
) -> None:
    catalog, lines, coupon, points, balance = case
    try:
        quote = price(catalog, lines, coupon, points, balance)
    except domain.OrderError:
        return
    assert quote.amount >= MIN_CARD_AMOUNT
    assert 0 <= quote.coupon_discount <= quote.subtotal
    assert 0 <= quote.points_used <= balance
    assert quote.amount + quote.coupon_discount + quote.points_used == quote.subtotal
    if coupon is not None and coupon.kind is CouponKind.PERCENT:
        assert coupon.max_discount is None or quote.coupon_discount <= coupon.max_discount
    assert 1 <= len(quote.order_name) <= domain.ORDER_NAME_MAX


@PROPERTIES
@given(coupons(), st.integers(0, 10_000_000))
def test_a_coupon_never_takes_off_more_than_the_subtotal_or_its_cap(
    coupon: Coupon, subtotal: int
) -> None:
    discount = coupon.discount_for(subtotal)
    assert discount == expected_discount(coupon, subtotal)
    assert 0 <= discount <= subtotal


@PROPERTIES
@given(orders_to_price())
def test_a_refusal_names_an_input_the_buyer_sent(
    case: tuple[Catalog, list[LineRequest], Coupon | None, int, int],
) -> None:
    catalog, lines, coupon, points, balance = case
    assume(refusals(subtotal_of(lines, catalog), coupon, points, balance))
    with pytest.raises(domain.OrderError) as refused:
        price(catalog, lines, coupon, points, balance)
    sent = {"items"} | ({"couponCode"} if coupon else set()) | ({"points"} if points else set())
    field = refused.value.field
    assert field is not None
    assert field.split(".")[0] in sent, (type(refused.value).__name__, field)


@PROPERTIES
@given(orders_to_price(), st.one_of(st.integers(max_value=-1), st.integers(1, 10**9)))
def test_points_outside_the_balance_are_refused_as_such(
    case: tuple[Catalog, list[LineRequest], Coupon | None, int, int], excess: int
) -> None:
    catalog, lines, _, _, balance = case
    points = excess if excess < 0 else balance + excess
    expected = domain.NegativePoints if points < 0 else domain.InsufficientPoints
    with pytest.raises(expected):
        price(catalog, lines, None, points, balance)


@PROPERTIES
@given(catalogs, st.data())
def test_a_quantity_outside_the_limits_is_refused(catalog: Catalog, data: st.DataObject) -> None:
    lines = data.draw(carts(catalog))
    index = data.draw(st.integers(0, len(lines) - 1))
    bad = data.draw(st.integers(max_value=0) | st.integers(min_value=MAX_QUANTITY + 1))
    lines[index] = LineRequest(lines[index].sku, bad)
    with pytest.raises(domain.QuantityOutOfRange) as caught:
        price(catalog, lines, None, 0, 0)
    assert caught.value.field == f"items.{index}.quantity"


# --- points restored on refunds --------------------------------------------------------------


@st.composite
def paid_orders(draw: st.DrawFn) -> Order:
    amount = draw(st.integers(MIN_CARD_AMOUNT, 5_000_000))
    points = draw(st.one_of(st.just(0), st.integers(0, 300_000), st.integers(0, 10 * amount)))
    discount = draw(st.integers(0, 100_000))
    return Order(
        order_id="ord_prop0000000000000000000",
        customer_id=1,
        customer_key="cus_prop",
        order_name="Coffee beans",
        subtotal=amount + discount + points,
        coupon_code="WELCOME" if discount else draw(st.sampled_from([None, "WELCOME"])),
        coupon_discount=discount,
        points_used=points,
        amount=amount,
        status=OrderStatus.PAID,
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=30),
    )


@st.composite
def refund_splits(draw: st.DrawFn, amount: int) -> list[int]:
    """Positive refunds that add up to ``amount`` (one to twelve of them)."""
    cuts = draw(st.lists(st.integers(1, amount - 1), unique=True, max_size=11))
    edges = [0, *sorted(cuts), amount]
    return [later - earlier for earlier, later in itertools.pairwise(edges)]


@PROPERTIES
@given(st.data())
def test_partial_refunds_summing_to_the_amount_restore_exactly_the_points_used(
    data: st.DataObject,
) -> None:
    order = data.draw(paid_orders())
    refunds = data.draw(refund_splits(order.amount))
    for step, refund in enumerate(refunds, start=1):
        assert domain.refund_amount(order, refund) == refund
        last = step == len(refunds)
        balance = order.amount - order.refunded_amount - refund
        outcome = domain.apply_refund(order, balance)
        assert outcome.points_back >= 0
        restored = order.points_restored + outcome.points_back
        assert restored <= order.points_used
        assert outcome.refunded_total == order.refunded_amount + refund
        if not last:
            # The cumulative rule of the module doc: floor(P * R / A) back after R of A.
            assert restored == order.points_used * outcome.refunded_total // order.amount
            assert outcome.status is OrderStatus.PARTIALLY_REFUNDED
            assert not outcome.coupon_back
        order = replace(
            order,
            status=outcome.status,
            refunded_amount=outcome.refunded_total,
            points_restored=restored,
        )
    assert order.refunded_amount == order.amount
    assert order.points_restored == order.points_used
    assert order.status is OrderStatus.REFUNDED
    assert outcome.coupon_back == (order.coupon_code is not None)


@PROPERTIES
@given(st.data())
def test_points_restored_never_exceed_the_points_used_whatever_the_pg_reports(
    data: st.DataObject,
) -> None:
    """Balances out of range, repeated, late or out of order."""
    order = data.draw(paid_orders())
    reports = data.draw(st.lists(st.integers(-1_000, 2 * order.amount), max_size=12))
    for balance in reports:
        outcome = domain.apply_refund(order, balance)
        assert outcome.points_back >= 0
        assert order.refunded_amount <= outcome.refunded_total <= order.amount
        restored = order.points_restored + outcome.points_back
        assert restored <= order.points_used
        order = replace(order, refunded_amount=outcome.refunded_total, points_restored=restored)
    if order.refunded_amount == order.amount:
        assert order.points_restored == order.points_used
