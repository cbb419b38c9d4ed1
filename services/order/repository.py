"""Plain SQL over the ``orders`` schema: functions take a connection, return domain objects.

Functions whose name starts with ``lock_`` take row locks and must run inside a transaction.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import asyncpg

from services.order.domain import (
    Coupon,
    CouponKind,
    CouponStatus,
    Customer,
    Failure,
    Hold,
    Order,
    OrderStatus,
    Payment,
    PaymentStatus,
    PricedLine,
    Product,
    Refund,
    RefundKind,
    RefundStatus,
)
from shared import inbox, sql
from shared.db import Connection

# --- customers -------------------------------------------------------------------------------

_CUSTOMER_COLUMNS = "customer_id, customer_key, points_balance"


def _customer(row: asyncpg.Record) -> Customer:
    return Customer(row["customer_id"], row["customer_key"], row["points_balance"])


@dataclass(frozen=True)
class TokenHolder:
    customer: Customer
    stored_hash: bytes  # compared in constant time by the caller
    handle: str


async def token_holder(conn: Connection, digest: bytes) -> TokenHolder | None:
    """The customer whose token hashes to ``digest``, with the stored hash to compare."""
    row = await conn.fetchrow(
        f"SELECT {_CUSTOMER_COLUMNS}, token_hash, handle FROM customers WHERE token_hash = $1",
        digest,
    )
    if row is None:
        return None
    return TokenHolder(_customer(row), bytes(row["token_hash"]), row["handle"])


@dataclass(frozen=True)
class SessionHolder:
    customer: Customer
    guest: bool
    expires_at: datetime


async def session_holder(conn: Connection, digest: bytes, now: datetime) -> SessionHolder | None:
    """The customer of an unexpired session whose id hashes to ``digest``."""
    row = await conn.fetchrow(
        "SELECT c.customer_id, c.customer_key, c.points_balance, c.guest, s.expires_at"
        " FROM sessions s JOIN customers c USING (customer_id)"
        " WHERE s.session_hash = $1 AND s.expires_at > $2",
        digest,
        now,
    )
    if row is None:
        return None
    return SessionHolder(_customer(row), row["guest"], row["expires_at"])


async def insert_guest(conn: Connection, handle: str, customer_key: str, points: int) -> Customer:
    row = await conn.fetchrow(
        "INSERT INTO customers (handle, customer_key, points_balance, guest)"
        f" VALUES ($1, $2, $3, true) RETURNING {_CUSTOMER_COLUMNS}",
        handle,
        customer_key,
        points,
    )
    assert row is not None
    return _customer(row)


async def insert_session(
    conn: Connection, digest: bytes, customer_id: int, created_at: datetime, expires_at: datetime
) -> None:
    await conn.execute(
        "INSERT INTO sessions (session_hash, customer_id, created_at, expires_at)"
        " VALUES ($1, $2, $3, $4)",
        digest,
        customer_id,
        created_at,
        expires_at,
    )


async def delete_session(conn: Connection, digest: bytes) -> None:
    await conn.execute("DELETE FROM sessions WHERE session_hash = $1", digest)


async def lock_customer(conn: Connection, customer_id: int) -> Customer:
    row = await conn.fetchrow(
        f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE customer_id = $1 FOR UPDATE",
        customer_id,
    )
    assert row is not None
    return _customer(row)


async def customer(conn: Connection, customer_id: int) -> Customer:
    row = await conn.fetchrow(
        f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE customer_id = $1", customer_id
    )
    assert row is not None
    return _customer(row)


async def add_points(conn: Connection, customer_id: int, delta: int) -> None:
    """Change a balance; the CHECK (points_balance >= 0) refuses any overspend."""
    if delta:
        await conn.execute(
            "UPDATE customers SET points_balance = points_balance + $2 WHERE customer_id = $1",
            customer_id,
            delta,
        )


async def upsert_demo_customer(
    conn: Connection, handle: str, digest: bytes, customer_key: str, points: int
) -> int:
    """Insert a seeded customer, or only refresh its token: an existing balance is kept."""
    customer_id: int = await conn.fetchval(
        "INSERT INTO customers (handle, token_hash, customer_key, points_balance)"
        " VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (handle) DO UPDATE SET token_hash = EXCLUDED.token_hash"
        " RETURNING customer_id",
        handle,
        digest,
        customer_key,
        points,
    )
    return customer_id


# --- products --------------------------------------------------------------------------------


async def products(conn: Connection, skus: Sequence[str] | None = None) -> list[Product]:
    if skus is None:
        rows = await conn.fetch("SELECT sku, name, price FROM products ORDER BY price, sku")
    else:
        rows = await conn.fetch(
            "SELECT sku, name, price FROM products WHERE sku = ANY($1::text[])", list(skus)
        )
    return [Product(row["sku"], row["name"], row["price"]) for row in rows]


async def upsert_product(conn: Connection, product: Product) -> None:
    await conn.execute(
        "INSERT INTO products (sku, name, price) VALUES ($1, $2, $3)"
        " ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, price = EXCLUDED.price,"
        " updated_at = now()",
        product.sku,
        product.name,
        product.price,
    )


# --- coupons ---------------------------------------------------------------------------------

_COUPON_COLUMNS = (
    "code, kind, amount_off, percent_off, max_discount, min_order_amount, expires_at, status"
)


def _coupon(row: asyncpg.Record) -> Coupon:
    return Coupon(
        code=row["code"],
        kind=CouponKind(row["kind"]),
        amount_off=row["amount_off"],
        percent_off=row["percent_off"],
        max_discount=row["max_discount"],
        min_order_amount=row["min_order_amount"],
        expires_at=row["expires_at"],
        status=CouponStatus(row["status"]),
    )


async def lock_coupon(conn: Connection, code: str, customer_id: int) -> Coupon | None:
    """The customer's coupon of that code (another customer's code is as good as unknown)."""
    row = await conn.fetchrow(
        f"SELECT {_COUPON_COLUMNS} FROM coupons WHERE code = $1 AND customer_id = $2 FOR UPDATE",
        code,
        customer_id,
    )
    return None if row is None else _coupon(row)


async def usable_coupons(conn: Connection, customer_id: int, now: datetime) -> list[Coupon]:
    rows = await conn.fetch(
        f"SELECT {_COUPON_COLUMNS} FROM coupons"
        " WHERE customer_id = $1 AND status = 'AVAILABLE' AND expires_at > $2"
        " ORDER BY min_order_amount, expires_at, code",
        customer_id,
        now,
    )
    return [_coupon(row) for row in rows]


async def reserve_coupon(conn: Connection, code: str, order_id: str) -> bool:
    """Take the coupon for the order, only if nobody holds it: False if someone was faster."""
    result: str = await conn.execute(
        "UPDATE coupons SET status = 'RESERVED', order_id = $2"
        " WHERE code = $1 AND status = 'AVAILABLE'",
        code,
        order_id,
    )
    return result == "UPDATE 1"


async def release_coupon(conn: Connection, order_id: str) -> None:
    await conn.execute(
        "UPDATE coupons SET status = 'AVAILABLE', order_id = NULL"
        " WHERE order_id = $1 AND status = 'RESERVED'",
        order_id,
    )


async def lock_spent_coupon(conn: Connection, order_id: str) -> Coupon | None:
    row = await conn.fetchrow(
        f"SELECT {_COUPON_COLUMNS} FROM coupons WHERE order_id = $1 AND status = 'USED' FOR UPDATE",
        order_id,
    )
    return None if row is None else _coupon(row)


async def give_coupon_back(conn: Connection, code: str) -> None:
    await conn.execute(
        "UPDATE coupons SET status = 'AVAILABLE', order_id = NULL WHERE code = $1", code
    )


async def insert_coupon_if_absent(conn: Connection, customer_id: int, coupon: Coupon) -> None:
    await conn.execute(
        "INSERT INTO coupons (code, customer_id, kind, amount_off, percent_off, max_discount,"
        " min_order_amount, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (code) DO NOTHING",
        coupon.code,
        customer_id,
        coupon.kind.value,
        coupon.amount_off,
        coupon.percent_off,
        coupon.max_discount,
        coupon.min_order_amount,
        coupon.expires_at,
    )


# --- orders ----------------------------------------------------------------------------------

_ORDER_COLUMNS = (
    "o.order_id, o.customer_id, c.customer_key, o.order_name, o.subtotal, o.coupon_code,"
    " o.coupon_discount, o.points_used, o.amount, o.status, o.created_at, o.expires_at,"
    " o.payment_status, o.payment_key, o.approved_at, o.payment_method, o.failure_code,"
    " o.failure_message, o.failure_pg_code, o.payment_as_of, o.refunded_amount, o.points_restored"
)
_ORDER_FROM = "FROM orders o JOIN customers c ON c.customer_id = o.customer_id"


def _order(row: asyncpg.Record) -> Order:
    failure = None
    if row["failure_code"] is not None:
        failure = Failure(row["failure_code"], row["failure_message"] or "", row["failure_pg_code"])
    payment = Payment(
        status=PaymentStatus(row["payment_status"]),
        payment_key=row["payment_key"],
        approved_at=row["approved_at"],
        method=row["payment_method"],
        failure=failure,
        as_of=row["payment_as_of"],
    )
    return Order(
        order_id=row["order_id"],
        customer_id=row["customer_id"],
        customer_key=row["customer_key"],
        order_name=row["order_name"],
        subtotal=row["subtotal"],
        coupon_code=row["coupon_code"],
        coupon_discount=row["coupon_discount"],
        points_used=row["points_used"],
        amount=row["amount"],
        status=OrderStatus(row["status"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        payment=payment,
        refunded_amount=row["refunded_amount"],
        points_restored=row["points_restored"],
    )


async def insert_order(conn: Connection, order: Order) -> None:
    await conn.execute(
        "INSERT INTO orders (order_id, customer_id, order_name, subtotal, coupon_code,"
        " coupon_discount, points_used, amount, status, created_at, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        order.order_id,
        order.customer_id,
        order.order_name,
        order.subtotal,
        order.coupon_code,
        order.coupon_discount,
        order.points_used,
        order.amount,
        order.status.value,
        order.created_at,
        order.expires_at,
    )
    await conn.executemany(
        "INSERT INTO order_lines (order_id, line_no, sku, name, unit_price, quantity)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        [
            (order.order_id, n, line.sku, line.name, line.unit_price, line.quantity)
            for n, line in enumerate(order.lines, start=1)
        ],
    )


def _state_columns(order: Order) -> dict[str, object]:
    """The order's mutable state, by column (what ``save_order`` may write)."""
    payment = order.payment
    failure = payment.failure
    return {
        "status": order.status.value,
        "payment_status": payment.status.value,
        "payment_key": payment.payment_key,
        "approved_at": payment.approved_at,
        "payment_method": payment.method,
        "failure_code": failure.code if failure else None,
        "failure_message": failure.message if failure else None,
        "failure_pg_code": failure.pg_code if failure else None,
        "payment_as_of": payment.as_of,
        "refunded_amount": order.refunded_amount,
        "points_restored": order.points_restored,
    }


def _changes(before: Order, after: Order) -> dict[str, object]:
    old = _state_columns(before)
    return {name: value for name, value in _state_columns(after).items() if value != old[name]}


def _assignments(columns: dict[str, object]) -> str:
    """``column = :new_column, …``, for the values of :func:`_new_values`."""
    return ", ".join(f"{name} = :new_{name}" for name in columns)


def _new_values(columns: dict[str, object]) -> dict[str, object]:
    return {f"new_{name}": value for name, value in columns.items()}


async def save_order(
    conn: Connection, before: Order, after: Order, cancel_reason: str | None = None
) -> None:
    """Write the columns of ``after`` that differ from ``before`` (the order as locked), and
    ``cancel_reason`` if given; no statement at all when nothing changed."""
    changed = _changes(before, after)
    if cancel_reason is not None:
        changed["cancel_reason"] = cancel_reason
    if not changed:
        return
    await sql.execute(
        conn,
        f"UPDATE orders SET {_assignments(changed)}, updated_at = now() WHERE order_id = :order_id",
        order_id=after.order_id,
        **_new_values(changed),
    )


async def lock_order(conn: Connection, order_id: str) -> Order | None:
    row = await conn.fetchrow(
        f"SELECT {_ORDER_COLUMNS} {_ORDER_FROM} WHERE o.order_id = $1 FOR UPDATE OF o", order_id
    )
    return None if row is None else _order(row)


@dataclass(frozen=True)
class ReadOrder:
    """An order read without a lock, with its row version (every write adds one)."""

    order: Order
    version: int


async def read_orders(conn: Connection, order_ids: Sequence[str]) -> dict[str, ReadOrder]:
    """The orders of ``order_ids`` that exist, by id, each with its row version."""
    rows = await conn.fetch(
        f"SELECT o.version, {_ORDER_COLUMNS} {_ORDER_FROM} WHERE o.order_id = ANY($1::text[])",
        order_ids,
    )
    return {row["order_id"]: ReadOrder(_order(row), row["version"]) for row in rows}


class Saved(enum.Enum):
    APPLIED = "APPLIED"
    DUPLICATE = "DUPLICATE"  # the consumer had handled the event already
    STALE = "STALE"  # the row changed since it was read: nothing was written


@dataclass(frozen=True)
class OrderWrite:
    """An event's claim and what it makes of its order: the order as read (with its version)
    and after, whether the reserved coupon is spent, and the payment hold it opens or settles."""

    event_id: uuid.UUID
    read: ReadOrder
    after: Order
    spend_coupon: bool = False
    hold: Hold | None = None


# One row per write; the state columns are written whole where any of them changed.
_STATE_TYPES = {
    "status": "text",
    "payment_status": "text",
    "payment_key": "text",
    "approved_at": "timestamptz",
    "payment_method": "text",
    "failure_code": "text",
    "failure_message": "text",
    "failure_pg_code": "text",
    "payment_as_of": "timestamptz",
    "refunded_amount": "bigint",
    "points_restored": "bigint",
}
_WRITE_TYPES = {
    "order_id": "text",
    "version": "bigint",
    "event_id": "uuid",
    "changed": "boolean",
    "spend_coupon": "boolean",
    "hold_key": "text",
    "settled": "boolean",
    **_STATE_TYPES,
}
# Each CTE sees the rows as the statement began: ``current`` locks those still at the version
# read (a concurrent writer waits, then sees a new version), ``claim`` records their events in
# the inbox (a concurrent duplicate waits on its key), and only claimed events write anything.
_CLAIM_AND_SAVE = f"""
WITH writes AS (
    SELECT * FROM {sql.rows_from(_WRITE_TYPES, "w")}
), current AS (
    SELECT w.* FROM writes w JOIN orders o ON o.order_id = w.order_id AND o.version = w.version
    ORDER BY w.order_id FOR UPDATE OF o
), {inbox.claim_each("current")}, claimed AS (
    SELECT current.* FROM current JOIN claim USING (event_id)
), changed AS (
    UPDATE orders o SET {", ".join(f"{name} = c.{name}" for name in _STATE_TYPES)},
        updated_at = now()
    FROM claimed c WHERE o.order_id = c.order_id AND c.changed
), spent AS (
    UPDATE coupons SET status = 'USED' FROM claimed c
    WHERE coupons.order_id = c.order_id AND coupons.status = 'RESERVED' AND c.spend_coupon
), held AS (
    -- Opening a hold never reopens one settled: the outcome may arrive before its
    -- authentication. A key named by several orders' events (forged) is held once, for the
    -- first, as one event after the other would leave it.
    INSERT INTO payment_holds (payment_key, order_id, settled_at)
    SELECT DISTINCT ON (hold_key) hold_key, order_id,
        CASE WHEN bool_or(settled) OVER (PARTITION BY hold_key) THEN now() END
    FROM claimed WHERE hold_key IS NOT NULL ORDER BY hold_key, n
    ON CONFLICT (payment_key) DO UPDATE
    SET settled_at = COALESCE(payment_holds.settled_at, EXCLUDED.settled_at)
)
SELECT w.order_id IN (SELECT order_id FROM current) AS current,
       w.event_id IN (SELECT event_id FROM claim) AS claimed
FROM writes w ORDER BY w.n
"""


def _write_row(write: OrderWrite) -> dict[str, object]:
    state = _state_columns(write.after)
    return {
        "order_id": write.read.order.order_id,
        "version": write.read.version,
        "event_id": write.event_id,
        "changed": state != _state_columns(write.read.order),
        "spend_coupon": write.spend_coupon,
        "hold_key": write.hold.payment_key if write.hold else None,
        "settled": write.hold.settled if write.hold else False,
        **state,
    }


async def claim_events_and_save_orders(
    conn: Connection, consumer: str, writes: Sequence[OrderWrite]
) -> list[Saved]:
    """In one statement, without a transaction, for each write (one per order): record its
    event in the inbox, write its order's state if it changed, spend the order's reserved coupon
    if told and open or settle its payment's hold, all or nothing, and only if the row is still
    at the version read (else STALE, nothing written)."""
    rows = await sql.fetch(
        conn,
        _CLAIM_AND_SAVE,
        inbox_consumer=consumer,
        **sql.arrays(map(_write_row, writes), _WRITE_TYPES),
    )
    saved = [_saved(row) for row in rows]
    for _ in range(saved.count(Saved.DUPLICATE)):
        inbox.dropped(consumer)
    return saved


def _saved(row: asyncpg.Record) -> Saved:
    if not row["current"]:
        return Saved.STALE
    return Saved.APPLIED if row["claimed"] else Saved.DUPLICATE


async def lock_next_expirable(conn: Connection, deadline: datetime) -> Order | None:
    """One PENDING order whose expiresAt is before ``deadline`` and none of whose payments is
    still being settled, skipping those others have locked."""
    row = await conn.fetchrow(
        f"SELECT {_ORDER_COLUMNS} {_ORDER_FROM}"
        " WHERE o.status = 'PENDING' AND o.expires_at < $1"
        "  AND NOT EXISTS (SELECT FROM payment_holds h"
        "   WHERE h.order_id = o.order_id AND h.settled_at IS NULL)"
        " ORDER BY o.expires_at LIMIT 1 FOR UPDATE OF o SKIP LOCKED",
        deadline,
    )
    return None if row is None else _order(row)


async def order_of(conn: Connection, order_id: str, customer_id: int) -> Order | None:
    """The order with its lines and refunds, only if ``customer_id`` owns it."""
    row = await conn.fetchrow(
        f"SELECT {_ORDER_COLUMNS} {_ORDER_FROM} WHERE o.order_id = $1 AND o.customer_id = $2",
        order_id,
        customer_id,
    )
    if row is None:
        return None
    return replace(
        _order(row),
        lines=tuple(await _lines(conn, order_id)),
        refunds=tuple(await _refunds(conn, order_id)),
    )


async def _lines(conn: Connection, order_id: str) -> list[PricedLine]:
    rows = await conn.fetch(
        "SELECT sku, name, unit_price, quantity FROM order_lines WHERE order_id = $1"
        " ORDER BY line_no",
        order_id,
    )
    return [PricedLine(r["sku"], r["name"], r["unit_price"], r["quantity"]) for r in rows]


# --- refunds ---------------------------------------------------------------------------------

_REFUND_COLUMNS = (
    "refund_id, order_id, payment_key, kind, amount, reason, status, refunded_amount,"
    " failure_code, failure_message, requested_at, completed_at"
)


def _refund(row: asyncpg.Record) -> Refund:
    failure = None
    if row["failure_code"] is not None:
        failure = Failure(row["failure_code"], row["failure_message"] or "")
    return Refund(
        refund_id=row["refund_id"],
        order_id=row["order_id"],
        payment_key=row["payment_key"],
        kind=RefundKind(row["kind"]),
        amount=row["amount"],
        reason=row["reason"],
        status=RefundStatus(row["status"]),
        requested_at=row["requested_at"],
        refunded_amount=row["refunded_amount"],
        completed_at=row["completed_at"],
        failure=failure,
    )


async def _refunds(conn: Connection, order_id: str) -> list[Refund]:
    rows = await conn.fetch(
        f"SELECT {_REFUND_COLUMNS} FROM refunds WHERE order_id = $1 ORDER BY requested_at",
        order_id,
    )
    return [_refund(row) for row in rows]


async def insert_refund(conn: Connection, refund: Refund) -> bool:
    """Record a refund request; False if one with this id exists (a redelivery)."""
    inserted = await conn.fetchval(
        "INSERT INTO refunds (refund_id, order_id, payment_key, kind, amount, reason, status,"
        " requested_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT (refund_id) DO NOTHING RETURNING true",
        refund.refund_id,
        refund.order_id,
        refund.payment_key,
        refund.kind.value,
        refund.amount,
        refund.reason,
        refund.status.value,
        refund.requested_at,
    )
    return bool(inserted)


async def count_customer_refunds(conn: Connection, order_id: str) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM refunds WHERE order_id = $1 AND kind = 'CUSTOMER'", order_id
    )
    return count


async def refund_by_id(
    conn: Connection, refund_id: str, *, for_update: bool = False
) -> Refund | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {_REFUND_COLUMNS} FROM refunds WHERE refund_id = $1{lock}", refund_id
    )
    return None if row is None else _refund(row)


async def save_refund(conn: Connection, refund: Refund) -> None:
    failure = refund.failure
    await conn.execute(
        "UPDATE refunds SET status = $2, refunded_amount = $3, failure_code = $4,"
        " failure_message = $5, completed_at = $6 WHERE refund_id = $1",
        refund.refund_id,
        refund.status.value,
        refund.refunded_amount,
        failure.code if failure else None,
        failure.message if failure else None,
        refund.completed_at,
    )
