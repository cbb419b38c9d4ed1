"""Use cases: each function is one transaction that makes one change and its events atomic.

The HTTP routes (``api.py``), the event consumer (``consumer.py``) and the expiry sweeper call
these; the rules themselves live in ``domain.py`` and the SQL in ``repository.py``.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import asyncpg

from services.order import domain, repository
from services.order.domain import (
    ApprovalDecision,
    Coupon,
    CouponKind,
    CouponNotFound,
    CouponStatus,
    CouponUnavailable,
    Customer,
    Failure,
    Hold,
    InvalidRefundAmount,
    LineRequest,
    NotAuthenticated,
    Order,
    OrderNotFound,
    OrderStatus,
    Payment,
    PaymentStatus,
    Product,
    Refund,
    RefundInProgress,
    RefundKind,
    RefundStatus,
    Session,
)
from services.order.repository import ReadOrder, Saved
from shared import inbox
from shared.db import Connection
from shared.events import OrderCanceled, OrderExpired, OrderPlaced, RefundRequested
from shared.outbox import enqueue

log = logging.getLogger(__name__)

# --- customers and catalog ---------------------------------------------------------------------


async def authenticate(pool: asyncpg.Pool, token: str, *, demo_allowed: bool) -> Customer:
    """The customer holding ``token``: looked up by its SHA-256, compared in constant time.
    The demo customers' tokens are public: they count only where ``demo_allowed`` (sandbox)."""
    digest = domain.token_hash(token)
    async with pool.acquire() as conn:
        found = await repository.token_holder(conn, digest)
    if found is None or not hmac.compare_digest(found.stored_hash, digest):
        raise NotAuthenticated("A valid bearer token is required.")
    if found.handle in domain.DEMO_HANDLES and not demo_allowed:
        raise NotAuthenticated("A valid bearer token is required.")
    return found.customer


# --- storefront sessions -----------------------------------------------------------------------


@dataclass(frozen=True)
class SessionPolicy:
    ttl: timedelta
    welcome: bool  # sandbox: a guest starts with demo points and a coupon of their own


async def session_customer(pool: asyncpg.Pool, session_id: str, now: datetime) -> Session:
    """The visitor's session, if ``session_id`` names one that has not expired."""
    async with pool.acquire() as conn:
        found = await repository.session_holder(conn, domain.token_hash(session_id), now)
    if found is None:
        raise NotAuthenticated("Your session has expired; reload the shop.")
    return Session(session_id, found.customer, found.guest, found.expires_at)


async def start_guest_session(pool: asyncpg.Pool, policy: SessionPolicy, now: datetime) -> Session:
    """A new customer of their own (a guest) and a session for them: one transaction."""
    points = DEMO_POINTS if policy.welcome else 0
    async with pool.acquire() as conn, conn.transaction():
        guest = await repository.insert_guest(
            conn, domain.new_guest_handle(), domain.new_customer_key(), points
        )
        if policy.welcome:
            coupon = domain.welcome_coupon(now, DEMO_COUPON_DAYS)
            await repository.insert_coupon_if_absent(conn, guest.customer_id, coupon)
        return await _new_session(conn, guest, True, policy, now)


async def sign_in(
    pool: asyncpg.Pool,
    token: str,
    policy: SessionPolicy,
    now: datetime,
    *,
    demo_allowed: bool,
    previous: str | None,
) -> Session:
    """A new session for the holder of ``token``; the visitor's previous session ends."""
    customer = await authenticate(pool, token, demo_allowed=demo_allowed)
    async with pool.acquire() as conn, conn.transaction():
        if previous is not None:
            await repository.delete_session(conn, domain.token_hash(previous))
        return await _new_session(conn, customer, False, policy, now)


async def end_session(pool: asyncpg.Pool, session_id: str) -> None:
    async with pool.acquire() as conn:
        await repository.delete_session(conn, domain.token_hash(session_id))


async def _new_session(
    conn: Connection, customer: Customer, guest: bool, policy: SessionPolicy, now: datetime
) -> Session:
    session = Session(domain.new_session_id(), customer, guest, now + policy.ttl)
    await repository.insert_session(
        conn, session.digest, customer.customer_id, now, session.expires_at
    )
    return session


async def catalog(pool: asyncpg.Pool) -> list[Product]:
    async with pool.acquire() as conn:
        return await repository.products(conn)


async def profile(
    pool: asyncpg.Pool, customer_id: int, now: datetime
) -> tuple[Customer, list[Coupon]]:
    async with pool.acquire() as conn:
        customer = await repository.customer(conn, customer_id)
        return customer, await repository.usable_coupons(conn, customer_id, now)


# --- placing, reading, canceling ---------------------------------------------------------------


async def place_order(
    pool: asyncpg.Pool,
    customer_id: int,
    lines: Sequence[LineRequest],
    *,
    coupon_code: str | None,
    points: int,
    ttl_seconds: int,
    now: datetime,
) -> Order:
    """Price, reserve the coupon and points, store the order and announce it: one transaction."""
    domain.validate_lines(lines)
    async with pool.acquire() as conn, conn.transaction():
        # The customer's row lock serialises their orders: a balance read here stays true.
        customer = await repository.lock_customer(conn, customer_id)
        products = await repository.products(conn, [line.sku for line in lines])
        coupon = await _customers_coupon(conn, coupon_code, customer_id)
        quote = domain.quote(
            lines,
            {p.sku: p for p in products},
            coupon=coupon,
            points=points,
            points_balance=customer.points_balance,
            now=now,
        )
        order = _new_order(customer, quote, now, ttl_seconds)
        await repository.insert_order(conn, order)
        await _reserve(conn, order)
        await enqueue(conn, _placed(order))
    return order


async def _customers_coupon(conn: Connection, code: str | None, customer_id: int) -> Coupon | None:
    if code is None:
        return None
    coupon = await repository.lock_coupon(conn, code, customer_id)
    if coupon is None:
        raise CouponNotFound(f"No coupon {code!r} for this customer.")
    return coupon


def _new_order(customer: Customer, quote: domain.Quote, now: datetime, ttl: int) -> Order:
    return Order(
        order_id=domain.new_order_id(),
        customer_id=customer.customer_id,
        customer_key=customer.customer_key,
        order_name=quote.order_name,
        subtotal=quote.subtotal,
        coupon_code=quote.coupon_code,
        coupon_discount=quote.coupon_discount,
        points_used=quote.points_used,
        amount=quote.amount,
        status=OrderStatus.PENDING,
        created_at=now,
        expires_at=domain.expires_at(now, ttl),
        lines=quote.lines,
    )


async def _reserve(conn: Connection, order: Order) -> None:
    if order.coupon_code is not None and not await repository.reserve_coupon(
        conn, order.coupon_code, order.order_id
    ):
        raise CouponUnavailable(f"Coupon {order.coupon_code} is already used or reserved.")
    await repository.add_points(conn, order.customer_id, -order.points_used)


def _placed(order: Order) -> OrderPlaced:
    return OrderPlaced(
        correlation_id=order.order_id,
        order_id=order.order_id,
        customer_key=order.customer_key,
        order_name=order.order_name,
        amount=order.amount,
        expires_at=order.expires_at,
    )


async def order_of(pool: asyncpg.Pool, customer_id: int, order_id: str) -> Order:
    """The caller's order; someone else's is as unknown as a missing one."""
    async with pool.acquire() as conn:
        order = await repository.order_of(conn, order_id, customer_id)
    if order is None:
        raise OrderNotFound(f"No order {order_id}.")
    return order


async def cancel_order(
    pool: asyncpg.Pool,
    customer_id: int,
    order_id: str,
    *,
    reason: str,
    amount: int | None,
    now: datetime,
) -> tuple[Order, bool]:
    """Cancel an unpaid order, or ask for a refund of a paid one. Returns (order, refunding)."""
    async with pool.acquire() as conn, conn.transaction():
        order = await repository.lock_order(conn, order_id)
        if order is None or order.customer_id != customer_id:
            raise OrderNotFound(f"No order {order_id}.")
        refunding = order.status is not OrderStatus.PENDING
        if refunding:
            await _request_refund(conn, order, reason, amount, now)
        else:
            if amount is not None and amount != order.amount:
                raise InvalidRefundAmount("An unpaid order is canceled whole: leave out amount.")
            await _close_unpaid(conn, order, OrderStatus.CANCELED, reason)
            await enqueue(
                conn, OrderCanceled(correlation_id=order_id, order_id=order_id, reason=reason)
            )
        current = await repository.order_of(conn, order_id, customer_id)
    assert current is not None
    return current, refunding


async def _request_refund(
    conn: Connection, order: Order, reason: str, requested: int | None, now: datetime
) -> None:
    amount = domain.refund_amount(order, requested)
    assert order.payment.payment_key is not None
    sequence = await repository.count_customer_refunds(conn, order.order_id) + 1
    refund = Refund(
        refund_id=domain.customer_refund_id(order.order_id, sequence),
        order_id=order.order_id,
        payment_key=order.payment.payment_key,
        kind=RefundKind.CUSTOMER,
        amount=amount,
        reason=reason,
        status=RefundStatus.REQUESTED,
        requested_at=now,
    )
    try:
        await repository.insert_refund(conn, refund)
    except asyncpg.UniqueViolationError:
        # A buyer's refund is still open (its order was moved on by a cancel made at the PG).
        raise RefundInProgress("A refund of this order is already in progress.") from None
    await repository.save_order(conn, order, replace(order, status=OrderStatus.REFUND_PENDING))
    await enqueue(conn, _refund_requested(refund))


def _refund_requested(refund: Refund, causation_id: uuid.UUID | None = None) -> RefundRequested:
    return RefundRequested(
        correlation_id=refund.order_id,
        causation_id=causation_id,
        order_id=refund.order_id,
        payment_key=refund.payment_key,
        refund_id=refund.refund_id,
        amount=refund.amount,
        reason=refund.reason,
    )


async def _close_unpaid(
    conn: Connection, order: Order, status: OrderStatus, reason: str | None = None
) -> None:
    """Cancel or expire an unpaid order: its points and coupon go back to the customer."""
    await repository.add_points(conn, order.customer_id, order.points_used - order.points_restored)
    await repository.release_coupon(conn, order.order_id)
    closed = replace(order, status=status, points_restored=order.points_used)
    await repository.save_order(conn, order, closed, cancel_reason=reason)


# --- expiry ------------------------------------------------------------------------------------


async def expire_due_orders(
    pool: asyncpg.Pool, *, grace_seconds: int, now: datetime, limit: int = 100
) -> int:
    """Expire PENDING orders past expiresAt + grace, one transaction each; returns how many.

    Several replicas may sweep at once: each order is claimed with SKIP LOCKED.
    """
    deadline = now - timedelta(seconds=grace_seconds)
    for expired in range(limit):
        async with pool.acquire() as conn, conn.transaction():
            order = await repository.lock_next_expirable(conn, deadline)
            if order is None or not domain.is_expirable(order, now, grace_seconds):
                return expired
            await _close_unpaid(conn, order, OrderStatus.EXPIRED)
            await enqueue(
                conn, OrderExpired(correlation_id=order.order_id, order_id=order.order_id)
            )
    return limit


# --- payment results (the consumer applies each event once, with apply_once_to_orders) --------


@dataclass(frozen=True)
class NewState:
    """An event's whole effect on its order when that is only a new state of the order's row:
    ``after`` (the order as it was, if nothing changes) and whether the reserved coupon is spent.
    """

    after: Order
    spend_coupon: bool = False


# What an event does to an order: a new state, or None when it takes more (a refund).
Plan = Callable[[Order], NewState | None]
# The rest, in the inbox claim's transaction, the order locked: None is an order we do not have.
OrderEffect = Callable[[Connection, Order | None], Awaitable[None]]


@dataclass(frozen=True)
class OrderEvent:
    """An event about one order, as :func:`apply_once_to_orders` takes it: what it plans for
    the order, the effect it takes otherwise, and the payment hold it opens or settles."""

    event_id: uuid.UUID
    order_id: str
    plan: Plan
    otherwise: OrderEffect
    hold: Hold | None = None


async def apply_once_to_orders(
    pool: asyncpg.Pool, consumer: str, events: Sequence[OrderEvent]
) -> list[bool | Exception]:
    """Apply events about orders once each: an event's inbox record commits with its effect
    (and with the payment hold the event opens or settles, if any). Returns, per event, whether
    it was applied (False: a duplicate) or the exception its effect raised.

    One path for every event, batched: read the orders with their row versions in one
    statement, plan, and write every plan that is a new state with its inbox claim in one
    statement, each row only if it is still at the version read; an order changed meanwhile is
    read and planned on again. A plan that takes more than a new state runs ``otherwise`` in its
    claim's transaction, the row locked by the version check until it commits; an order we do
    not have gets ``otherwise`` with None. Events about the same order take turns.
    """
    outcomes: dict[int, bool | Exception] = {}
    pending = list(range(len(events)))
    async with pool.acquire() as conn:
        while pending:
            turn, pending = _one_per_order(events, pending)
            reads = await repository.read_orders(conn, [events[i].order_id for i in turn])
            stale = await _apply_turn(conn, consumer, events, turn, reads, outcomes)
            pending = stale + pending
    return [outcomes[i] for i in range(len(events))]


def _one_per_order(events: Sequence[OrderEvent], indexes: list[int]) -> tuple[list[int], list[int]]:
    """The first event of each order (in ``indexes``' order), and the rest."""
    seen: set[str] = set()
    turn: list[int] = []
    rest: list[int] = []
    for i in indexes:
        (rest if events[i].order_id in seen else turn).append(i)
        seen.add(events[i].order_id)
    return turn, rest


async def _apply_turn(
    conn: Connection,
    consumer: str,
    events: Sequence[OrderEvent],
    turn: list[int],
    reads: dict[str, ReadOrder],
    outcomes: dict[int, bool | Exception],
) -> list[int]:
    """Apply one event per order; returns those whose order changed since it was read."""
    saved: dict[int, Saved] = {}
    new_states: dict[int, repository.OrderWrite] = {}
    for i in turn:
        event = events[i]
        read = reads.get(event.order_id)
        state = _plan_of(event, read)
        if read is not None and isinstance(state, NewState):
            new_states[i] = repository.OrderWrite(
                event.event_id, read, state.after, state.spend_coupon, event.hold
            )
        elif isinstance(state, Exception):
            outcomes[i] = state
        else:
            try:
                saved[i] = await _apply_otherwise(conn, consumer, event, read)
            except Exception as exc:  # this event's own failure: the others go on
                outcomes[i] = exc
    if new_states:
        written = await repository.claim_events_and_save_orders(
            conn, consumer, list(new_states.values())
        )
        saved.update(zip(new_states, written, strict=True))
    outcomes.update({i: s is Saved.APPLIED for i, s in saved.items() if s is not Saved.STALE})
    return [i for i, s in saved.items() if s is Saved.STALE]


def _plan_of(event: OrderEvent, read: ReadOrder | None) -> NewState | Exception | None:
    """The event's plan for its order as read (None: it takes more, or there is no order); a
    plan that raises is that event's failure alone."""
    if read is None:
        return None
    try:
        return event.plan(read.order)
    except Exception as exc:
        return exc


async def _apply_otherwise(
    conn: Connection, consumer: str, event: OrderEvent, read: ReadOrder | None
) -> Saved:
    """Claim the event and run its ``otherwise`` in one transaction, with the order locked by
    the version check (or with None, for an order we do not have)."""
    if read is None:

        async def effect(conn: Connection) -> None:
            await event.otherwise(conn, None)

        applied = await inbox.apply_once_on(conn, consumer, event.event_id, effect)
        return Saved.APPLIED if applied else Saved.DUPLICATE
    async with conn.transaction():
        write = repository.OrderWrite(event.event_id, read, read.order, hold=event.hold)
        [saved] = await repository.claim_events_and_save_orders(conn, consumer, [write])
        if saved is Saved.APPLIED:
            await event.otherwise(conn, read.order)
        return saved


def authenticated(order: Order, occurred_at: datetime, payment_key: str | None) -> NewState:
    """Informative only: the buyer passed the PG window; approval decides the rest."""
    if not domain.accepts_payment_news(order, occurred_at):
        return NewState(order)
    payment = Payment(
        status=PaymentStatus.AUTHENTICATED, payment_key=payment_key, as_of=occurred_at
    )
    return NewState(replace(order, payment=payment))


def payment_failed(
    order: Order, failure: Failure, occurred_at: datetime, payment_key: str | None = None
) -> NewState:
    """Show why the attempt failed; the order stays payable. A paid order is never touched.

    The attempt's paymentKey (when known) lets the result page tell it from a later attempt.
    """
    if not domain.accepts_payment_news(order, occurred_at):
        return NewState(order)
    payment = Payment(
        status=PaymentStatus.FAILED, payment_key=payment_key, failure=failure, as_of=occurred_at
    )
    return NewState(replace(order, payment=payment))


@dataclass(frozen=True)
class ApprovedPayment:
    order_id: str
    payment_key: str
    amount: int
    method: str | None
    approved_at: datetime
    event_id: uuid.UUID
    occurred_at: datetime


def approval(order: Order, approved: ApprovedPayment) -> tuple[ApprovalDecision, NewState | None]:
    """The PG moved money: the order takes it, already has it (no change), or it is sent back
    (no new state: see ``refund_unwanted_payment``)."""
    decision = domain.decide_approval(order, approved.payment_key, approved.amount)
    if decision is ApprovalDecision.MARK_PAID:
        paid = replace(order, status=OrderStatus.PAID, payment=_approved(approved))
        # Only an order with a coupon reserved one.
        return decision, NewState(paid, spend_coupon=order.coupon_code is not None)
    if decision is ApprovalDecision.ALREADY_PAID:
        return decision, NewState(order)
    return decision, None


def _approved(approved: ApprovedPayment) -> Payment:
    return Payment(
        status=PaymentStatus.APPROVED,
        payment_key=approved.payment_key,
        approved_at=approved.approved_at,
        method=approved.method,
        as_of=approved.occurred_at,
    )


async def refund_unwanted_payment(
    conn: Connection, order: Order, approved: ApprovedPayment, now: datetime
) -> None:
    """Ask for the whole payment back; the refund id comes from the paymentKey (redelivery-safe)."""
    log.warning(
        "refunding a payment the order cannot take",
        extra={"order_id": order.order_id, "order_status": order.status.value},
    )
    if order.status in domain.DEAD_STATES and order.payment.payment_key is None:
        # Show the buyer where their money is; a paid order keeps its own payment's fields.
        await repository.save_order(conn, order, replace(order, payment=_approved(approved)))
    refund = Refund(
        refund_id=domain.automatic_refund_id(approved.payment_key),
        order_id=order.order_id,
        payment_key=approved.payment_key,
        kind=RefundKind.AUTOMATIC,
        amount=approved.amount,
        reason=domain.refund_reason(order),
        status=RefundStatus.REQUESTED,
        requested_at=now,
    )
    if await repository.insert_refund(conn, refund):
        await enqueue(conn, _refund_requested(refund, approved.event_id))


@dataclass(frozen=True)
class RefundNews:
    """What the PG gave back, as approval reports it (``PaymentRefunded``)."""

    refund_id: str
    order_id: str
    payment_key: str
    refunded_amount: int
    balance_amount: int
    reason: str | None = None


async def record_refund(conn: Connection, news: RefundNews, *, now: datetime) -> None:
    """The PG gave money back: settle the refund (one made at the PG without us becomes a refund
    of its own), and the order (with points, for the order's own payment) to the balance the PG
    reports left."""
    located = await _locked_refund(conn, news.refund_id) or await _external_refund(conn, news, now)
    if located is None:
        log.warning(
            "refund result for an unknown refund", extra={"refund_id": news.refund_id[:100]}
        )
        return
    if located[1].status is RefundStatus.SUCCEEDED:
        return
    order, refund = located
    done = replace(
        refund,
        status=RefundStatus.SUCCEEDED,
        refunded_amount=news.refunded_amount,
        completed_at=now,
        failure=None,
    )
    await repository.save_refund(conn, done)
    if refund.payment_key != order.payment.payment_key:
        return  # a duplicate payment went back; the order's own payment is untouched
    if refund.kind is RefundKind.AUTOMATIC:
        fully = news.balance_amount == 0
        status = PaymentStatus.REFUNDED if fully else PaymentStatus.PARTIALLY_REFUNDED
        await repository.save_order(
            conn, order, replace(order, payment=replace(order.payment, status=status))
        )
        return
    await _settle_buyer_refund(conn, order, news.balance_amount, now)


async def _external_refund(
    conn: Connection, news: RefundNews, now: datetime
) -> tuple[Order, Refund] | None:
    """A refund the order never asked for (a cancel made at the PG): recorded as EXTERNAL,
    locked with its order; None for an order we do not have."""
    order = await repository.lock_order(conn, news.order_id)
    if order is None or news.refunded_amount <= 0:
        return None
    refund = Refund(
        refund_id=news.refund_id,
        order_id=order.order_id,
        payment_key=news.payment_key,
        kind=RefundKind.EXTERNAL,
        amount=news.refunded_amount,
        reason=(news.reason or "Canceled at the PG")[:200],
        status=RefundStatus.REQUESTED,
        requested_at=now,
    )
    await repository.insert_refund(conn, refund)
    log.warning(
        "a refund made at the PG without us reaches the order",
        extra={"order_id": order.order_id, "refund_id": news.refund_id[:100]},
    )
    return order, refund


async def _settle_buyer_refund(
    conn: Connection, order: Order, balance_amount: int, now: datetime
) -> None:
    outcome = domain.apply_refund(order, balance_amount)
    await repository.add_points(conn, order.customer_id, outcome.points_back)
    if outcome.coupon_back:
        coupon = await repository.lock_spent_coupon(conn, order.order_id)
        if coupon and domain.coupon_status_after_full_refund(coupon, now) is CouponStatus.AVAILABLE:
            await repository.give_coupon_back(conn, coupon.code)
    settled = replace(
        order,
        status=outcome.status,
        payment=replace(order.payment, status=outcome.payment_status),
        refunded_amount=outcome.refunded_total,
        points_restored=order.points_restored + outcome.points_back,
    )
    await repository.save_order(conn, order, settled)


async def record_refund_failure(
    conn: Connection, refund_id: str, failure: Failure, now: datetime
) -> None:
    """The PG would not refund: record why; a buyer's order goes back to its paid state."""
    located = await _locked_refund(conn, refund_id)
    if located is None:
        log.warning("refund failure for an unknown refund", extra={"refund_id": refund_id[:100]})
        return
    if located[1].status is not RefundStatus.REQUESTED:
        return  # already settled (a success outranks a late failure)
    order, refund = located
    await repository.save_refund(
        conn, replace(refund, status=RefundStatus.FAILED, failure=failure, completed_at=now)
    )
    if refund.kind is RefundKind.AUTOMATIC:
        log.error(
            "automatic refund failed; the money is still held",
            extra={"order_id": order.order_id, "refund_id": refund_id, "code": failure.code},
        )
    elif order.status is OrderStatus.REFUND_PENDING:
        back = replace(order, status=domain.status_after_failed_refund(order))
        await repository.save_order(conn, order, back)


async def _locked_refund(conn: Connection, refund_id: str) -> tuple[Order, Refund] | None:
    """The refund and its order, both locked (order first, the order every writer uses)."""
    found = await repository.refund_by_id(conn, refund_id)
    if found is None:
        return None
    order = await repository.lock_order(conn, found.order_id)
    refund = await repository.refund_by_id(conn, refund_id, for_update=True)
    assert order is not None
    assert refund is not None
    return order, refund


# --- demo data -----------------------------------------------------------------------------------

DEMO_PRODUCTS = (
    Product("COFFEE-BEANS", "Coffee beans 1kg", 12_000),
    Product("DRIP-KETTLE", "Drip kettle", 25_000),
    Product("HAND-GRINDER", "Hand grinder", 39_000),
)
DEMO_POINTS = 5_000
DEMO_COUPON_DAYS = 365


@dataclass(frozen=True)
class DemoCustomer:
    handle: str
    token: str
    coupons: tuple[Coupon, ...]


def demo_customers(token_1: str, token_2: str, now: datetime) -> tuple[DemoCustomer, ...]:
    until = now + timedelta(days=DEMO_COUPON_DAYS)

    def fixed(code: str, off: int, minimum: int) -> Coupon:
        return Coupon(code, CouponKind.FIXED, minimum, until, amount_off=off)

    percent = Coupon(
        "PERCENT10", CouponKind.PERCENT, 20_000, until, percent_off=10, max_discount=5_000
    )
    return (
        DemoCustomer("demo-1", token_1, (fixed("WELCOME3000", 3_000, 10_000), percent)),
        DemoCustomer("demo-2", token_2, (fixed("FRIEND3000", 3_000, 10_000),)),
    )


async def seed_demo_data(pool: asyncpg.Pool, customers: Sequence[DemoCustomer]) -> None:
    """Idempotent: products are upserted; existing customers keep their balances and coupons."""
    async with pool.acquire() as conn, conn.transaction():
        for product in DEMO_PRODUCTS:
            await repository.upsert_product(conn, product)
        for demo in customers:
            customer_id = await repository.upsert_demo_customer(
                conn,
                demo.handle,
                domain.token_hash(demo.token),
                domain.new_customer_key(),
                DEMO_POINTS,
            )
            for coupon in demo.coupons:
                await repository.insert_coupon_if_absent(conn, customer_id, coupon)
