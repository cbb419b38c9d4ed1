"""The sandbox's tables in plain SQL: payments, idempotent responses, faults, webhook deliveries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from services.sandbox.domain import Faults, Payment, Status
from shared.db import Connection

_PAYMENT_COLUMNS = (
    "payment_key, order_id, order_name, customer_key, total_amount, balance_amount, status,"
    " card_number, secret, requested_at, authenticated_at, approved_at, expires_at,"
    " last_transaction_key, failure_code, failure_message, cancels, confirm_calls, approvals,"
    " last_confirm_idempotency_key"
)


def _payment(row: asyncpg.Record) -> Payment:
    values = dict(row)
    values["status"] = Status(values["status"])
    return Payment(**values)


# ---------------------------------------------------------------- payments


async def insert_payment(conn: Connection, p: Payment) -> None:
    await conn.execute(
        f"INSERT INTO payments ({_PAYMENT_COLUMNS}) VALUES"
        " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,"
        " $19, $20)",
        *_payment_values(p),
    )


def _payment_values(p: Payment) -> tuple[Any, ...]:
    return (
        p.payment_key,
        p.order_id,
        p.order_name,
        p.customer_key,
        p.total_amount,
        p.balance_amount,
        p.status.value,
        p.card_number,
        p.secret,
        p.requested_at,
        p.authenticated_at,
        p.approved_at,
        p.expires_at,
        p.last_transaction_key,
        p.failure_code,
        p.failure_message,
        p.cancels,
        p.confirm_calls,
        p.approvals,
        p.last_confirm_idempotency_key,
    )


async def save_payment(conn: Connection, p: Payment) -> None:
    """Write back every mutable column of a payment read (and locked) in this transaction."""
    await conn.execute(
        "UPDATE payments SET order_name = $2, total_amount = $3, balance_amount = $4,"
        " status = $5, card_number = $6, authenticated_at = $7, approved_at = $8,"
        " expires_at = $9, last_transaction_key = $10, failure_code = $11,"
        " failure_message = $12, cancels = $13, confirm_calls = $14, approvals = $15,"
        " last_confirm_idempotency_key = $16"
        " WHERE payment_key = $1",
        p.payment_key,
        p.order_name,
        p.total_amount,
        p.balance_amount,
        p.status.value,
        p.card_number,
        p.authenticated_at,
        p.approved_at,
        p.expires_at,
        p.last_transaction_key,
        p.failure_code,
        p.failure_message,
        p.cancels,
        p.confirm_calls,
        p.approvals,
        p.last_confirm_idempotency_key,
    )


@dataclass(frozen=True)
class Snapshot:
    """A payment as read, with its row version (PostgreSQL's ``xmin``: changes on every write)."""

    payment: Payment
    version: int


def _snapshot(values: dict[str, Any]) -> Snapshot:
    version = values.pop("version")
    values["status"] = Status(values["status"])
    return Snapshot(Payment(**values), version)


async def read_payment(conn: Connection, payment_key: str) -> Snapshot | None:
    row = await conn.fetchrow(
        f"SELECT xmin AS version, {_PAYMENT_COLUMNS} FROM payments WHERE payment_key = $1",
        payment_key,
    )
    return _snapshot(dict(row)) if row is not None else None


async def lock_payment(conn: Connection, payment_key: str) -> Payment | None:
    """The payment, locked until the transaction ends: one state change at a time per payment."""
    row = await conn.fetchrow(
        f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE payment_key = $1 FOR UPDATE",
        payment_key,
    )
    return _payment(row) if row is not None else None


async def get_payment(conn: Connection, payment_key: str) -> Payment | None:
    row = await conn.fetchrow(
        f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE payment_key = $1", payment_key
    )
    return _payment(row) if row is not None else None


async def payment_for_order(conn: Connection, order_id: str) -> Payment | None:
    """The approved (DONE / canceled) payment of the order if any, else its latest."""
    row = await conn.fetchrow(
        f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE order_id = $1"
        " ORDER BY status IN ('DONE', 'CANCELED', 'PARTIAL_CANCELED') DESC, requested_at DESC"
        " LIMIT 1",
        order_id,
    )
    return _payment(row) if row is not None else None


async def ledger(conn: Connection, order_id: str | None) -> list[Payment]:
    rows = await conn.fetch(
        f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE $1::text IS NULL OR order_id = $1"
        " ORDER BY requested_at, payment_key",
        order_id,
    )
    return [_payment(row) for row in rows]


async def lock_due_for_expiry(conn: Connection, now: datetime, limit: int) -> list[Payment]:
    """Open payments past their deadline, locked; ones another change holds now are skipped."""
    rows = await conn.fetch(
        f"SELECT {_PAYMENT_COLUMNS} FROM payments"
        " WHERE status IN ('READY', 'IN_PROGRESS') AND expires_at <= $1"
        " ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [_payment(row) for row in rows]


# ---------------------------------------------------------------- idempotency


@dataclass(frozen=True)
class IdempotencySlot:
    """The identity of an idempotent request: key + secret key (digest) + method + path."""

    key: str
    secret_digest: str
    method: str
    path: str


@dataclass(frozen=True)
class StoredResponse:
    status: int | None  # None: the first request is still in flight
    body: bytes | None


# Takes the slot: a new one, an expired one, or one in flight for longer than $5 (its process
# died). Answers true when taken, no row when someone else holds the slot.
_CLAIM = (
    "INSERT INTO idempotent_requests (idempotency_key, secret_digest, method, path)"
    " VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (idempotency_key, secret_digest, method, path) DO UPDATE"
    " SET status = NULL, body = NULL, created_at = now(),"
    " expires_at = now() + interval '15 days'"
    " WHERE idempotent_requests.expires_at < now()"
    " OR (idempotent_requests.status IS NULL"
    " AND idempotent_requests.created_at < now() - $5::interval)"
    " RETURNING true"
)


async def claim_idempotency(
    conn: Connection, slot: IdempotencySlot, stale_after: timedelta
) -> StoredResponse | None:
    """None when this request may run (the slot is now in flight), else what the slot holds.

    A slot in flight for longer than ``stale_after`` belongs to a process that died: taken over.
    """
    claimed = await conn.fetchval(_CLAIM, *_slot_values(slot), stale_after)
    if claimed:
        return None
    return await _held_slot(conn, slot, stale_after)


async def claim_and_read(
    conn: Connection, slot: IdempotencySlot | None, payment_key: str, stale_after: timedelta
) -> tuple[StoredResponse | None, Snapshot | None]:
    """:func:`claim_idempotency` (when there is a slot) and :func:`read_payment`, in one trip.

    The payment is only worth reading when the slot was taken (the first item is None).
    """
    if slot is None:
        return None, await read_payment(conn, payment_key)
    row = await conn.fetchrow(
        f"WITH claim AS ({_CLAIM})"
        f" SELECT claimed, payments.xmin AS version, {_PAYMENT_COLUMNS}"
        " FROM (SELECT EXISTS (SELECT FROM claim) AS claimed) AS c"
        " LEFT JOIN payments ON payment_key = $6",
        *_slot_values(slot),
        stale_after,
        payment_key,
    )
    assert row is not None  # one row, with or without a payment
    values = dict(row)
    if not values.pop("claimed"):
        stored = await _held_slot(conn, slot, stale_after)
        if stored is not None:
            return stored, None
        return None, await read_payment(conn, payment_key)  # taken after a release after all
    return None, _snapshot(values) if values["payment_key"] is not None else None


async def _held_slot(
    conn: Connection, slot: IdempotencySlot, stale_after: timedelta
) -> StoredResponse | None:
    row = await conn.fetchrow(
        "SELECT status, body FROM idempotent_requests WHERE idempotency_key = $1"
        " AND secret_digest = $2 AND method = $3 AND path = $4",
        *_slot_values(slot),
    )
    if row is None:  # released between our insert and select: run it
        return await claim_idempotency(conn, slot, stale_after)
    return StoredResponse(row["status"], row["body"])


def _slot_values(slot: IdempotencySlot) -> tuple[str, str, str, str]:
    return (slot.key, slot.secret_digest, slot.method, slot.path)


async def complete_idempotency(
    conn: Connection, slot: IdempotencySlot, status: int, body: bytes
) -> None:
    await conn.execute(
        "UPDATE idempotent_requests SET status = $5, body = $6 WHERE idempotency_key = $1"
        " AND secret_digest = $2 AND method = $3 AND path = $4",
        *_slot_values(slot),
        status,
        body,
    )


async def release_idempotency(conn: Connection, slot: IdempotencySlot) -> None:
    """Forget an in-flight slot whose answer is not to be replayed (a retry runs afresh)."""
    await conn.execute(
        "DELETE FROM idempotent_requests WHERE idempotency_key = $1 AND secret_digest = $2"
        " AND method = $3 AND path = $4 AND status IS NULL",
        *_slot_values(slot),
    )


async def purge_idempotency(conn: Connection) -> None:
    await conn.execute("DELETE FROM idempotent_requests WHERE expires_at < now()")


# ---------------------------------------------------------------- confirm


@dataclass(frozen=True)
class Webhook:
    """A PAYMENT_STATUS_CHANGED delivery to enqueue."""

    url: str
    body: dict[str, Any]
    now: datetime


@dataclass(frozen=True)
class SlotAnswer:
    """What becomes of a claimed idempotency slot: keeps ``status`` and ``body`` for replay, or
    (``status`` None) is freed so that a retry runs afresh."""

    slot: IdempotencySlot
    status: int | None
    body: bytes | None


# A confirm in one statement, without a transaction: the columns a confirm may change are written
# only if the row is still the version the decision was made on (else nothing is written and the
# caller decides again on a fresh read), together with the webhook and the idempotent answer.
# Two concurrent confirms therefore approve once, as under SELECT … FOR UPDATE.
# NULL parameters: $12 no webhook; $15-$18 no idempotency slot; $19 free the slot (no replay).
_SAVE_CONFIRM = """
WITH changed AS (
    UPDATE payments SET status = $3, failure_code = $4, failure_message = $5,
        approved_at = $6, approvals = $7, last_transaction_key = $8, confirm_calls = $9,
        last_confirm_idempotency_key = $10
    WHERE payment_key = $1 AND xmin = $2
    RETURNING payment_key
), announced AS (
    INSERT INTO webhook_deliveries (transmission_id, url, payment_key, body, next_attempt_at)
    SELECT $11, $12, payment_key, $13, $14 FROM changed WHERE $12::text IS NOT NULL
), answered AS (
    UPDATE idempotent_requests SET status = $19, body = $20
    WHERE (idempotency_key, secret_digest, method, path) = ($15, $16, $17, $18)
    AND $19::smallint IS NOT NULL AND EXISTS (SELECT FROM changed)
), released AS (
    DELETE FROM idempotent_requests
    WHERE (idempotency_key, secret_digest, method, path) = ($15, $16, $17, $18)
    AND status IS NULL AND $19::smallint IS NULL AND EXISTS (SELECT FROM changed)
)
SELECT EXISTS (SELECT FROM changed)
"""


async def save_confirm(
    conn: Connection, read: Snapshot, webhook: Webhook | None, answer: SlotAnswer | None
) -> bool:
    """Write a confirm's changes to a payment still at ``read.version``; False when it is not."""
    p = read.payment
    saved: bool = await conn.fetchval(
        _SAVE_CONFIRM,
        p.payment_key,
        read.version,
        p.status.value,
        p.failure_code,
        p.failure_message,
        p.approved_at,
        p.approvals,
        p.last_transaction_key,
        p.confirm_calls,
        p.last_confirm_idempotency_key,
        *_webhook_values(webhook),
        *_answer_values(answer),
    )
    return saved


def _webhook_values(webhook: Webhook | None) -> tuple[Any, ...]:
    if webhook is None:
        return (None, None, None, None)
    return (uuid.uuid4(), webhook.url, webhook.body, webhook.now)


def _answer_values(answer: SlotAnswer | None) -> tuple[Any, ...]:
    if answer is None:
        return (None, None, None, None, None, None)
    return (*_slot_values(answer.slot), answer.status, answer.body)


# ---------------------------------------------------------------- faults


async def read_faults(conn: Connection) -> Faults:
    row = await conn.fetchrow(
        "SELECT confirm_latency_ms, drop_response_rate, error_rate, error_code, clock_scale"
        " FROM faults WHERE id"
    )
    return Faults(**dict(row)) if row is not None else Faults()


async def write_faults(conn: Connection, faults: Faults) -> None:
    await conn.execute(
        "INSERT INTO faults (id, confirm_latency_ms, drop_response_rate, error_rate, error_code,"
        " clock_scale) VALUES (true, $1, $2, $3, $4, $5)"
        " ON CONFLICT (id) DO UPDATE SET confirm_latency_ms = $1, drop_response_rate = $2,"
        " error_rate = $3, error_code = $4, clock_scale = $5",
        faults.confirm_latency_ms,
        faults.drop_response_rate,
        faults.error_rate,
        faults.error_code,
        faults.clock_scale,
    )


# ---------------------------------------------------------------- webhooks


@dataclass(frozen=True)
class Delivery:
    id: int
    transmission_id: uuid.UUID
    url: str
    body: dict[str, Any]
    attempts: int


async def enqueue_webhook(conn: Connection, payment_key: str, webhook: Webhook) -> None:
    await conn.execute(
        "INSERT INTO webhook_deliveries (transmission_id, url, payment_key, body, next_attempt_at)"
        " VALUES ($1, $2, $3, $4, $5)",
        uuid.uuid4(),
        webhook.url,
        payment_key,
        webhook.body,
        webhook.now,
    )


async def claim_due_webhooks(
    conn: Connection, now: datetime, lease: timedelta, limit: int
) -> list[Delivery]:
    """Due deliveries, leased (pushed ``lease`` ahead) so other processes leave them alone."""
    rows = await conn.fetch(
        "UPDATE webhook_deliveries SET next_attempt_at = $1::timestamptz + $2::interval"
        " WHERE id IN (SELECT id FROM webhook_deliveries WHERE next_attempt_at <= $1"
        " ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)"
        " RETURNING id, transmission_id, url, body, attempts",
        now,
        lease,
        limit,
    )
    return [Delivery(**dict(row)) for row in rows]


async def record_webhook_attempt(
    conn: Connection, delivery_id: int, status: int | None, next_attempt_at: datetime | None
) -> None:
    """One attempt made: delivered (status 200), retry at ``next_attempt_at``, or given up."""
    await conn.execute(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = $2,"
        " next_attempt_at = $3,"
        " delivered_at = CASE WHEN $2 = 200 THEN now() ELSE delivered_at END"
        " WHERE id = $1",
        delivery_id,
        status,
        next_attempt_at,
    )
