"""The order's rules: pricing, coupons, points, the order state machine and refund restoration.

Pure: no I/O and no imports of fastapi, asyncpg, aio_pika or httpx. Money is ``int`` KRW.

Rules chosen where the brief left a choice:
- Duplicate SKU lines are refused (``DuplicateSku``), not merged: the client sends one line per
  product, and a merged quantity would dodge the per-line limit.
- Points restored on refunds are cumulative: after refunds totalling ``R`` of an order of amount
  ``A`` that used ``P`` points, the customer has had ``floor(P * R / A)`` points back; the refund
  that brings ``R`` to ``A`` returns the remainder, so a full refund returns exactly ``P``. ``R``
  is what the PG says: the order's amount less the payment's ``balanceAmount``.
- A full refund puts the coupon back to AVAILABLE if it has not expired; an expired coupon stays
  USED. A partial refund never returns the coupon.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

CURRENCY = "KRW"
MIN_CARD_AMOUNT = 100  # the PG refuses card payments below this
MAX_LINES = 50
MAX_QUANTITY = 100
ORDER_NAME_MAX = 100
ORDER_ID_PREFIX = "ord_"
CUSTOMER_KEY_PREFIX = "cus_"
_ID_ALPHABET = string.ascii_letters + string.digits


class OrderStatus(enum.StrEnum):
    PENDING = "PENDING"
    PAID = "PAID"
    EXPIRED = "EXPIRED"
    CANCELED = "CANCELED"
    REFUND_PENDING = "REFUND_PENDING"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"


class PaymentStatus(enum.StrEnum):
    NONE = "NONE"
    AUTHENTICATED = "AUTHENTICATED"
    APPROVED = "APPROVED"
    FAILED = "FAILED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"


class CouponKind(enum.StrEnum):
    FIXED = "FIXED"
    PERCENT = "PERCENT"


class CouponStatus(enum.StrEnum):
    AVAILABLE = "AVAILABLE"
    RESERVED = "RESERVED"
    USED = "USED"


class RefundKind(enum.StrEnum):
    CUSTOMER = "CUSTOMER"  # the buyer asked
    AUTOMATIC = "AUTOMATIC"  # a payment the order could not honour
    EXTERNAL = "EXTERNAL"  # a cancel made at the PG without us (the merchant console)


class RefundStatus(enum.StrEnum):
    REQUESTED = "REQUESTED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


# Paid states: money is held for the order (some of it may have gone back already).
PAID_STATES = frozenset(
    {
        OrderStatus.PAID,
        OrderStatus.REFUND_PENDING,
        OrderStatus.PARTIALLY_REFUNDED,
        OrderStatus.REFUNDED,
    }
)
DEAD_STATES = frozenset({OrderStatus.EXPIRED, OrderStatus.CANCELED})


# --- errors -------------------------------------------------------------------------------------


class OrderError(Exception):
    """A request the order rules refuse. ``field`` names the offending input, if any."""

    field: str | None = None

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        if field is not None:
            self.field = field


class NotAuthenticated(OrderError):
    pass


class CrossSiteRequest(OrderError):
    """A state change with the session cookie that did not come from the shop's own pages."""


class EmptyOrder(OrderError):
    field = "items"


class TooManyLines(OrderError):
    field = "items"


class QuantityOutOfRange(OrderError):
    pass


class DuplicateSku(OrderError):
    pass


class UnknownProduct(OrderError):
    pass


class CouponNotFound(OrderError):
    field = "couponCode"


class CouponExpired(OrderError):
    field = "couponCode"


class CouponUnavailable(OrderError):
    """Already used, or reserved by another order."""

    field = "couponCode"


class CouponMinimumNotMet(OrderError):
    field = "couponCode"


class NegativePoints(OrderError):
    field = "points"


class InsufficientPoints(OrderError):
    field = "points"


class AmountBelowMinimum(OrderError):
    field = "points"


class OrderNotFound(OrderError):
    pass


class OrderNotCancelable(OrderError):
    pass


class RefundInProgress(OrderError):
    pass


class InvalidRefundAmount(OrderError):
    field = "amount"


class RefundExceedsBalance(OrderError):
    field = "amount"


# --- catalog, coupons, pricing ---------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price: int


@dataclass(frozen=True)
class Customer:
    customer_id: int
    customer_key: str
    points_balance: int


@dataclass(frozen=True)
class LineRequest:
    sku: str
    quantity: int


@dataclass(frozen=True)
class PricedLine:
    sku: str
    name: str
    unit_price: int
    quantity: int

    @property
    def line_total(self) -> int:
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class Coupon:
    code: str
    kind: CouponKind
    min_order_amount: int
    expires_at: datetime
    status: CouponStatus = CouponStatus.AVAILABLE
    amount_off: int | None = None
    percent_off: int | None = None
    max_discount: int | None = None

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at <= now

    def is_usable(self, now: datetime) -> bool:
        return self.status is CouponStatus.AVAILABLE and not self.is_expired(now)

    def discount_for(self, subtotal: int) -> int:
        """What the coupon takes off ``subtotal`` (never more than the subtotal)."""
        if self.kind is CouponKind.FIXED:
            discount = self.amount_off or 0
        else:
            discount = subtotal * (self.percent_off or 0) // 100
            if self.max_discount is not None:
                discount = min(discount, self.max_discount)
        return min(discount, subtotal)

    def check_applicable(self, subtotal: int, now: datetime) -> None:
        if self.status is not CouponStatus.AVAILABLE:
            raise CouponUnavailable(f"Coupon {self.code} is already used or reserved.")
        if self.is_expired(now):
            raise CouponExpired(f"Coupon {self.code} has expired.")
        if subtotal < self.min_order_amount:
            raise CouponMinimumNotMet(
                f"Coupon {self.code} needs an order of at least {self.min_order_amount} KRW."
            )

    def describe(self) -> str:
        if self.kind is CouponKind.FIXED:
            return f"{self.amount_off:,} KRW off"
        cap = f" (up to {self.max_discount:,} KRW)" if self.max_discount is not None else ""
        return f"{self.percent_off}% off{cap}"


@dataclass(frozen=True)
class Quote:
    """A priced order, ready to be reserved and stored."""

    lines: tuple[PricedLine, ...]
    subtotal: int
    coupon_code: str | None
    coupon_discount: int
    points_used: int
    amount: int
    order_name: str


def validate_lines(lines: Sequence[LineRequest]) -> None:
    if not lines:
        raise EmptyOrder("An order needs at least one item.")
    if len(lines) > MAX_LINES:
        raise TooManyLines(f"An order takes at most {MAX_LINES} lines.")
    seen: set[str] = set()
    for index, line in enumerate(lines):
        if not 1 <= line.quantity <= MAX_QUANTITY:
            raise QuantityOutOfRange(
                f"Quantity must be between 1 and {MAX_QUANTITY}.", field=f"items.{index}.quantity"
            )
        if line.sku in seen:
            raise DuplicateSku(
                f"SKU {line.sku} appears twice; send one line per product.",
                field=f"items.{index}.sku",
            )
        seen.add(line.sku)


def price_lines(lines: Sequence[LineRequest], catalog: Mapping[str, Product]) -> list[PricedLine]:
    priced = []
    for index, line in enumerate(lines):
        product = catalog.get(line.sku)
        if product is None:
            raise UnknownProduct(f"Unknown SKU {line.sku!r}.", field=f"items.{index}.sku")
        priced.append(PricedLine(product.sku, product.name, product.price, line.quantity))
    return priced


def check_points(points: int, balance: int) -> None:
    if points < 0:
        raise NegativePoints("Points cannot be negative.")
    if points > balance:
        raise InsufficientPoints(f"Only {balance} points are available.")


def order_name(lines: Sequence[PricedLine]) -> str:
    """'Coffee beans', or 'Coffee beans and 2 more', at most 100 characters."""
    suffix = f" and {len(lines) - 1} more" if len(lines) > 1 else ""
    first = lines[0].name
    room = ORDER_NAME_MAX - len(suffix)
    if len(first) > room:
        first = first[: room - 1] + "…"
    return first + suffix


def quote(
    lines: Sequence[LineRequest],
    catalog: Mapping[str, Product],
    *,
    coupon: Coupon | None,
    points: int,
    points_balance: int,
    now: datetime,
) -> Quote:
    """Price an order from the catalog and apply the coupon and points, or raise why not."""
    validate_lines(lines)
    priced = price_lines(lines, catalog)
    subtotal = sum(line.line_total for line in priced)
    discount = 0
    if coupon is not None:
        coupon.check_applicable(subtotal, now)
        discount = coupon.discount_for(subtotal)
    check_points(points, points_balance)
    amount = subtotal - discount - points
    if amount < MIN_CARD_AMOUNT:
        # Name what the buyer can change: the points, else the coupon, else the items themselves.
        field = "points" if points else "couponCode" if coupon is not None else "items"
        raise AmountBelowMinimum(
            f"The amount to pay must be at least {MIN_CARD_AMOUNT} KRW.", field=field
        )
    return Quote(
        lines=tuple(priced),
        subtotal=subtotal,
        coupon_code=coupon.code if coupon else None,
        coupon_discount=discount,
        points_used=points,
        amount=amount,
        order_name=order_name(priced),
    )


# --- identifiers -----------------------------------------------------------------------------


def new_order_id() -> str:
    """'ord_' + 24 random letters and digits: within the PG's 6-64 of [A-Za-z0-9_-], unguessable."""
    return ORDER_ID_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))


def new_customer_key() -> str:
    """Random, 36 characters of letters, digits, '-' and '_' (the PG allows 2-50)."""
    return CUSTOMER_KEY_PREFIX + secrets.token_urlsafe(24)


def token_hash(token: str) -> bytes:
    """What is stored of a bearer token or a session id: its SHA-256, never the secret."""
    return hashlib.sha256(token.encode()).digest()


# --- storefront sessions ---------------------------------------------------------------------

SESSION_ID_BYTES = 32
GUEST_PREFIX = "guest_"
# The seeded demo customers, whose tokens are public: usable in sandbox mode only.
DEMO_HANDLES = frozenset({"demo-1", "demo-2"})


@dataclass(frozen=True)
class Session:
    """A visitor's session: the id goes into the cookie, only its hash is stored."""

    session_id: str
    customer: Customer
    guest: bool
    expires_at: datetime

    @property
    def digest(self) -> bytes:
        return token_hash(self.session_id)


def new_session_id() -> str:
    return secrets.token_urlsafe(SESSION_ID_BYTES)


def new_guest_handle() -> str:
    return GUEST_PREFIX + secrets.token_urlsafe(18)


def welcome_coupon(now: datetime, days: int) -> Coupon:
    """A sandbox guest's own coupon (codes are unique, so each guest's has its own)."""
    code = "WELCOME-" + "".join(secrets.choice(_CODE_ALPHABET) for _ in range(10))
    until = now + timedelta(days=days)
    return Coupon(code, CouponKind.FIXED, 10_000, until, amount_off=3_000)


_CODE_ALPHABET = string.ascii_uppercase + string.digits


def automatic_refund_id(payment_key: str) -> str:
    """Derived from the payment, so a redelivered approval cannot ask for a second refund."""
    return "auto_" + hashlib.sha256(payment_key.encode()).hexdigest()[:40]


def customer_refund_id(order_id: str, sequence: int) -> str:
    return f"{order_id}_rf{sequence}"


# --- the order and its transitions -------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    code: str
    message: str
    pg_code: str | None = None


@dataclass(frozen=True)
class Payment:
    status: PaymentStatus = PaymentStatus.NONE
    payment_key: str | None = None
    approved_at: datetime | None = None
    method: str | None = None
    failure: Failure | None = None
    as_of: datetime | None = None  # occurredAt of the event that set this state


@dataclass(frozen=True)
class Refund:
    refund_id: str
    order_id: str
    payment_key: str
    kind: RefundKind
    amount: int
    reason: str
    status: RefundStatus
    requested_at: datetime
    refunded_amount: int | None = None
    completed_at: datetime | None = None
    failure: Failure | None = None


@dataclass(frozen=True)
class Order:
    order_id: str
    customer_id: int
    customer_key: str
    order_name: str
    subtotal: int
    coupon_code: str | None
    coupon_discount: int
    points_used: int
    amount: int
    status: OrderStatus
    created_at: datetime
    expires_at: datetime
    payment: Payment = field(default_factory=Payment)
    refunded_amount: int = 0
    points_restored: int = 0
    lines: tuple[PricedLine, ...] = ()
    refunds: tuple[Refund, ...] = ()

    @property
    def refundable_balance(self) -> int:
        return self.amount - self.refunded_amount


def expires_at(created_at: datetime, ttl_seconds: int) -> datetime:
    return created_at + timedelta(seconds=ttl_seconds)


@dataclass(frozen=True)
class Hold:
    """What a payment event says of one authentication of the order: it is being settled
    (``settled`` False: the order must not expire meanwhile), or it has its outcome."""

    payment_key: str
    settled: bool


def is_expirable(order: Order, now: datetime, grace_seconds: int) -> bool:
    """A PENDING order whose payment window (plus grace for in-flight approvals) is over. The
    sweeper also leaves an order alone while a payment of it is being settled (a Hold)."""
    deadline = order.expires_at + timedelta(seconds=grace_seconds)
    return order.status is OrderStatus.PENDING and deadline <= now


def refund_amount(order: Order, requested: int | None) -> int:
    """How much a buyer's cancel of a paid order refunds, or why it cannot."""
    if order.status is OrderStatus.REFUND_PENDING:
        raise RefundInProgress("A refund of this order is already in progress.")
    if order.status not in (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED):
        raise OrderNotCancelable(f"An order in status {order.status} cannot be refunded.")
    amount = order.refundable_balance if requested is None else requested
    if amount <= 0:
        raise InvalidRefundAmount("The refund amount must be positive.")
    if amount > order.refundable_balance:
        raise RefundExceedsBalance(
            f"At most {order.refundable_balance} KRW of this order can be refunded."
        )
    return amount


class ApprovalDecision(enum.Enum):
    MARK_PAID = "MARK_PAID"
    ALREADY_PAID = "ALREADY_PAID"
    REFUND = "REFUND"


def decide_approval(order: Order, payment_key: str, amount: int) -> ApprovalDecision:
    """What an approved payment means for the order.

    The money moved at the PG: either the order takes it, or it already has this very payment,
    or it goes back (the order is dead, was paid by another payment, or the amount is not the
    one stored).
    """
    if order.status in PAID_STATES and order.payment.payment_key == payment_key:
        return ApprovalDecision.ALREADY_PAID
    if order.status is OrderStatus.PENDING and amount == order.amount:
        return ApprovalDecision.MARK_PAID
    return ApprovalDecision.REFUND


def refund_reason(order: Order) -> str:
    if order.status is OrderStatus.EXPIRED:
        return "Order expired before the payment was approved"
    if order.status is OrderStatus.CANCELED:
        return "Order was canceled before the payment was approved"
    if order.status in PAID_STATES:
        return "Order was already paid by another payment"
    return "Approved amount differs from the order amount"


def accepts_payment_news(order: Order, occurred_at: datetime) -> bool:
    """Authentication results and rejections only inform a still-payable order, and an older
    one (delivered late) does not hide a newer one: a rejection outranks its own authentication.
    """
    as_of = order.payment.as_of
    return order.status is OrderStatus.PENDING and (as_of is None or occurred_at >= as_of)


@dataclass(frozen=True)
class RefundOutcome:
    refunded_total: int
    points_back: int
    status: OrderStatus
    coupon_back: bool

    @property
    def payment_status(self) -> PaymentStatus:
        if self.status is OrderStatus.REFUNDED:
            return PaymentStatus.REFUNDED
        return PaymentStatus.PARTIALLY_REFUNDED


def apply_refund(order: Order, balance_amount: int) -> RefundOutcome:
    """The order once the PG says ``balance_amount`` of its payment is left (see the module doc
    for the points rule). Absolute, not a delta: the PG's balance counts every cancel, ours and
    the merchant console's alike, so reports that arrive twice, late or out of order never
    restore anything twice, and the refunded total never goes back."""
    reported = order.amount - min(max(balance_amount, 0), order.amount)
    total = max(order.refunded_amount, reported)
    full = total >= order.amount
    owed = order.points_used if full else order.points_used * total // order.amount
    return RefundOutcome(
        refunded_total=total,
        points_back=max(0, owed - order.points_restored),
        status=OrderStatus.REFUNDED if full else OrderStatus.PARTIALLY_REFUNDED,
        coupon_back=full and order.coupon_code is not None,
    )


def coupon_status_after_full_refund(coupon: Coupon, now: datetime) -> CouponStatus:
    """A fully refunded order gives its coupon back, unless the coupon has expired meanwhile."""
    return CouponStatus.USED if coupon.is_expired(now) else CouponStatus.AVAILABLE


def status_after_failed_refund(order: Order) -> OrderStatus:
    if order.refunded_amount == 0:
        return OrderStatus.PAID
    return OrderStatus.PARTIALLY_REFUNDED
