"""The sandbox's tables in plain SQL: payments, transactions, idempotent responses, knobs,
scripts and webhook deliveries.

Rows travel as one JSON record each (``jsonb_populate_record``) rather than one parameter per
column, so a statement that writes a payment, its webhook and its transactions together stays
readable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg

from services.sandbox import domain
from services.sandbox.domain import (
    GenerateRequest,
    IdempotencySlot,
    Payment,
    Status,
    Transaction,
    TransactionQuery,
)
from services.sandbox.faults import ConfirmScript, Faults, faults_from_json, parse_script
from shared.db import Connection

_COLUMNS = (
    "payment_key", "order_id", "order_name", "customer_key", "total_amount", "balance_amount",
    "status", "card_number", "secret", "requested_at", "authenticated_at", "approved_at",
    "expires_at", "last_transaction_key", "failure_code", "failure_message", "cancels",
    "confirm_calls", "approvals", "last_confirm_idempotency_key", "pending",
)  # fmt: skip
_PAYMENT_COLUMNS = ", ".join(_COLUMNS)
_QUALIFIED_COLUMNS = ", ".join(f"payments.{name}" for name in _COLUMNS)
# What a locked change (window, cancel, expiry, completion) may write; a confirm writes less.
_MUTABLE = (
    "order_name", "total_amount", "balance_amount", "status", "card_number",
    "authenticated_at", "approved_at", "expires_at", "last_transaction_key", "failure_code",
    "failure_message", "cancels", "confirm_calls", "approvals", "last_confirm_idempotency_key",
    "pending", "pending_due_at",
)  # fmt: skip
_CONFIRM_WRITES = (
    "status", "failure_code", "failure_message", "approved_at", "approvals",
    "last_transaction_key", "confirm_calls", "last_confirm_idempotency_key", "pending",
    "pending_due_at",
)  # fmt: skip


def _assign(columns: tuple[str, ...], source: str) -> str:
    """``(a, b) = (source.a, source.b)`` for an UPDATE."""
    return f"({', '.join(columns)}) = ({', '.join(f'{source}.{c}' for c in columns)})"


def _payment(row: asyncpg.Record) -> Payment:
    values = {name: row[name] for name in _COLUMNS}
    values["status"] = Status(values["status"])
    values["pending"] = domain.pending_from_json(values["pending"])
    return Payment(**values)


def _payment_row(p: Payment) -> dict[str, Any]:
    """The payment as a ``payments`` record for ``jsonb_populate_record``."""
    row = {name: getattr(p, name) for name in _COLUMNS}
    row["status"] = p.status.value
    row["pending"] = domain.pending_to_json(p.pending)
    row["pending_due_at"] = p.pending.due_at if p.pending else None
    return row


def _transaction_rows(p: Payment) -> list[dict[str, Any]]:
    return [
        {
            "transaction_key": t.transaction_key,
            "payment_key": t.payment_key,
            "order_id": t.order_id,
            "customer_key": t.customer_key,
            "status": t.status.value,
            "amount": t.amount,
            "transaction_at": t.transaction_at,
        }
        for t in p.recorded
    ]


_TRANSACTION_COLUMNS = (
    "transaction_key, payment_key, order_id, customer_key, status, amount, transaction_at"
)


# ---------------------------------------------------------------- payments


async def insert_payment(conn: Connection, p: Payment) -> None:
    await conn.execute(
        f"INSERT INTO payments ({_PAYMENT_COLUMNS}, pending_due_at)"
        f" SELECT {_PAYMENT_COLUMNS}, pending_due_at"
        " FROM jsonb_populate_record(NULL::payments, $1)",
        _payment_row(p),
    )


# Every mutable column of the payment ($2: a payments record), and the transactions it
# recorded ($3: an array of transactions records).
_SAVE = f"""
WITH saved AS (
    UPDATE payments SET {_assign(_MUTABLE, "r")}
    FROM jsonb_populate_record(NULL::payments, $2) AS r
    WHERE payments.payment_key = $1
)
INSERT INTO transactions ({_TRANSACTION_COLUMNS})
SELECT {_TRANSACTION_COLUMNS} FROM jsonb_populate_recordset(NULL::transactions, $3)
"""


async def save_payment(conn: Connection, p: Payment) -> None:
    """Write back a payment read (and locked) in this transaction, with the transactions it
    recorded since."""
    await conn.execute(
        _SAVE,
        p.payment_key,
        _payment_row(p),
        _transaction_rows(p),
    )
    p.recorded.clear()


@dataclass(frozen=True)
class Snapshot:
    """A payment as read, with its row version (every write adds one) and the script its
    order's first confirm is to follow, if one is waiting."""

    payment: Payment
    version: int
    script: ConfirmScript | None = None


def _snapshot(row: asyncpg.Record) -> Snapshot:
    script = parse_script(row["script"]) if row["script"] is not None else None
    return Snapshot(_payment(row), row["version"], script)


_READ = (
    f"SELECT payments.version, {_QUALIFIED_COLUMNS}, scripts.script"
    " FROM payments LEFT JOIN scripts"
    " ON scripts.order_id = payments.order_id AND scripts.used_by IS NULL"
)


async def read_payment(conn: Connection, payment_key: str) -> Snapshot | None:
    row = await conn.fetchrow(f"{_READ} WHERE payments.payment_key = $1", payment_key)
    return _snapshot(row) if row is not None else None


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
    """Open payments past their deadline, locked; ones another change holds now are skipped, and
    so are ones waiting for a pending completion."""
    rows = await conn.fetch(
        f"SELECT {_PAYMENT_COLUMNS} FROM payments"
        " WHERE status IN ('READY', 'IN_PROGRESS') AND expires_at <= $1 AND pending IS NULL"
        " ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [_payment(row) for row in rows]


async def lock_due_completions(conn: Connection, now: datetime, limit: int) -> list[Payment]:
    """Payments whose pending completion is due, locked (others hold the rest)."""
    rows = await conn.fetch(
        f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE pending_due_at <= $1"
        " ORDER BY pending_due_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [_payment(row) for row in rows]


# ---------------------------------------------------------------- idempotency


@dataclass(frozen=True)
class StoredResponse:
    status: int | None  # None: the first request is still in flight (or waits for a completion)
    body: bytes | None


@dataclass(frozen=True)
class SlotPolicy:
    """When a held slot is taken over anyway: in flight for longer than ``stale_after`` (its
    process died), always (``forget``: as if 15 days had passed), or when it holds an error and
    errors are not replayed."""

    stale_after: timedelta
    forget: bool = False
    replay_errors: bool = True


# Takes the slot: a new one, an expired one, or one the policy lets go. Answers true when
# taken, no row when someone else holds the slot.
_CLAIM = (
    "INSERT INTO idempotent_requests (idempotency_key, secret_digest, method, path)"
    " VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (idempotency_key, secret_digest, method, path) DO UPDATE"
    " SET status = NULL, body = NULL, pending = false, created_at = now(),"
    " expires_at = now() + interval '15 days'"
    " WHERE idempotent_requests.expires_at < now() OR $6::boolean"
    " OR (NOT $7::boolean AND idempotent_requests.status >= 400)"
    " OR (idempotent_requests.status IS NULL AND NOT idempotent_requests.pending"
    " AND idempotent_requests.created_at < now() - $5::interval)"
    " RETURNING true"
)


def _claim_values(slot: IdempotencySlot, policy: SlotPolicy) -> tuple[Any, ...]:
    return (*_slot_values(slot), policy.stale_after, policy.forget, policy.replay_errors)


async def claim_idempotency(
    conn: Connection, slot: IdempotencySlot, policy: SlotPolicy
) -> StoredResponse | None:
    """None when this request may run (the slot is now in flight), else what the slot holds."""
    claimed = await conn.fetchval(_CLAIM, *_claim_values(slot, policy))
    if claimed:
        return None
    return await _held_slot(conn, slot, policy)


async def claim_and_read(
    conn: Connection, slot: IdempotencySlot | None, payment_key: str, policy: SlotPolicy
) -> tuple[StoredResponse | None, Snapshot | None]:
    """:func:`claim_idempotency` (when there is a slot) and :func:`read_payment`, in one trip.

    The payment is only worth reading when the slot was taken (the first item is None).
    """
    if slot is None:
        return None, await read_payment(conn, payment_key)
    row = await conn.fetchrow(
        f"WITH claim AS ({_CLAIM})"
        " SELECT c.claimed, found.* FROM (SELECT EXISTS (SELECT FROM claim) AS claimed) AS c"
        f" LEFT JOIN ({_READ} WHERE payments.payment_key = $8) AS found ON true",
        *_claim_values(slot, policy),
        payment_key,
    )
    assert row is not None  # one row, with or without a payment
    if not row["claimed"]:
        stored = await _held_slot(conn, slot, policy)
        if stored is not None:
            return stored, None
        return None, await read_payment(conn, payment_key)  # taken after a release after all
    return None, _snapshot(row) if row["payment_key"] is not None else None


async def _held_slot(
    conn: Connection, slot: IdempotencySlot, policy: SlotPolicy
) -> StoredResponse | None:
    row = await conn.fetchrow(
        "SELECT status, body FROM idempotent_requests WHERE idempotency_key = $1"
        " AND secret_digest = $2 AND method = $3 AND path = $4",
        *_slot_values(slot),
    )
    if row is None:  # released between our insert and select: run it
        return await claim_idempotency(conn, slot, policy)
    return StoredResponse(row["status"], row["body"])


def _slot_values(slot: IdempotencySlot) -> tuple[str, str, str, str]:
    return (slot.key, slot.secret_digest, slot.method, slot.path)


class SlotFate(StrEnum):
    """What becomes of a claimed idempotency slot once its request has been handled."""

    KEEP = "KEEP"  # keeps the answer for replay
    FREE = "FREE"  # forgotten: a retry runs afresh
    HOLD = "HOLD"  # waits for a pending completion's answer


@dataclass(frozen=True)
class SlotAnswer:
    slot: IdempotencySlot
    fate: SlotFate
    status: int | None = None
    body: bytes | None = None


async def settle_slot(conn: Connection, answer: SlotAnswer) -> None:
    """Keep, free or hold a slot this request claimed (its status is still NULL)."""
    if answer.fate is SlotFate.FREE:
        await release_idempotency(conn, answer.slot)
        return
    await conn.execute(
        "UPDATE idempotent_requests SET status = $5, body = $6, pending = $7"
        " WHERE idempotency_key = $1 AND secret_digest = $2 AND method = $3 AND path = $4",
        *_slot_values(answer.slot),
        answer.status,
        answer.body,
        answer.fate is SlotFate.HOLD,
    )


async def answer_slot(conn: Connection, slot: IdempotencySlot, status: int, body: bytes) -> None:
    """A pending completion's answer for the slot that waited for it (even if it was taken over
    and freed meanwhile)."""
    await conn.execute(
        "INSERT INTO idempotent_requests (idempotency_key, secret_digest, method, path,"
        " status, body) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (idempotency_key, secret_digest, method, path)"
        " DO UPDATE SET status = $5, body = $6, pending = false",
        *_slot_values(slot),
        status,
        body,
    )


async def release_idempotency(conn: Connection, slot: IdempotencySlot) -> None:
    """Forget an in-flight slot whose answer is not to be replayed (a retry runs afresh)."""
    await conn.execute(
        "DELETE FROM idempotent_requests WHERE idempotency_key = $1 AND secret_digest = $2"
        " AND method = $3 AND path = $4 AND status IS NULL AND NOT pending",
        *_slot_values(slot),
    )


async def forget_slot(conn: Connection, slot: IdempotencySlot) -> None:
    """Forget a slot that waited for a completion whose answer is not to be replayed."""
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
    """A PAYMENT_STATUS_CHANGED delivery to enqueue, first sent at ``due_at``."""

    url: str
    payment_key: str
    body: dict[str, Any]
    due_at: datetime

    def row(self) -> dict[str, Any]:
        return {
            "transmission_id": domain.new_transmission_id(),
            "url": self.url,
            "payment_key": self.payment_key,
            "body": self.body,
            "next_attempt_at": self.due_at,
        }


# A confirm in one statement, without a transaction: the columns a confirm may change are written
# only if the row is still the version the decision was made on (else nothing is written and the
# caller decides again on a fresh read), together with its webhooks, its transactions, the
# script it followed and its idempotency slot. Two concurrent confirms therefore approve once,
# as under SELECT … FOR UPDATE.
_SAVE_CONFIRM = f"""
WITH changed AS (
    UPDATE payments SET {_assign(_CONFIRM_WRITES, "r")}
    FROM jsonb_populate_record(NULL::payments, $3) AS r
    WHERE payments.payment_key = $1 AND payments.version = $2
    RETURNING payments.payment_key
), announced AS (
    INSERT INTO webhook_deliveries (transmission_id, url, payment_key, body, next_attempt_at)
    SELECT w.transmission_id, w.url, w.payment_key, w.body, w.next_attempt_at
    FROM changed, jsonb_populate_recordset(NULL::webhook_deliveries, $4) AS w
), recorded AS (
    INSERT INTO transactions ({_TRANSACTION_COLUMNS})
    SELECT t.transaction_key, t.payment_key, t.order_id, t.customer_key, t.status, t.amount,
        t.transaction_at
    FROM changed, jsonb_populate_recordset(NULL::transactions, $5) AS t
), followed AS (
    UPDATE scripts SET used_by = changed.payment_key, used_at = now()
    FROM changed WHERE scripts.order_id = $6 AND scripts.used_by IS NULL
), settled AS (
    UPDATE idempotent_requests SET status = $9, body = $10, pending = ($8::text = 'HOLD')
    FROM changed
    WHERE (idempotency_key, secret_digest, method, path)
        = (($7::text[])[1], ($7::text[])[2], ($7::text[])[3], ($7::text[])[4])
    AND $8::text <> 'FREE'
), released AS (
    DELETE FROM idempotent_requests USING changed
    WHERE (idempotency_key, secret_digest, method, path)
        = (($7::text[])[1], ($7::text[])[2], ($7::text[])[3], ($7::text[])[4])
    AND $8::text = 'FREE' AND status IS NULL AND NOT pending
)
SELECT EXISTS (SELECT FROM changed)
"""


async def save_confirm(
    conn: Connection,
    read: Snapshot,
    webhook: Webhook | None,
    answer: SlotAnswer | None,
    followed_script: bool = False,
) -> bool:
    """Write a confirm's changes to a payment still at ``read.version``; False when it is not."""
    p = read.payment
    slot = list(_slot_values(answer.slot)) if answer else []
    saved: bool = await conn.fetchval(
        _SAVE_CONFIRM,
        p.payment_key,
        read.version,
        _payment_row(p),
        [webhook.row()] if webhook else [],
        _transaction_rows(p),
        p.order_id if followed_script else None,
        slot,
        answer.fate.value if answer else SlotFate.FREE.value,
        answer.status if answer else None,
        answer.body if answer else None,
    )
    if saved:
        p.recorded.clear()
    return saved


# ---------------------------------------------------------------- knobs


@dataclass(frozen=True)
class Knobs:
    """What every sandbox process shares and reads often: the faults and the webhook URL."""

    faults: Faults
    webhook_url: str | None


async def read_knobs(conn: Connection) -> Knobs:
    row = await conn.fetchrow(
        "SELECT (SELECT knobs FROM faults WHERE id) AS knobs,"
        " (SELECT url FROM webhook_endpoint WHERE id) AS url"
    )
    assert row is not None
    return Knobs(faults_from_json(row["knobs"] or {}), row["url"])


async def write_faults(conn: Connection, faults: Faults) -> None:
    await conn.execute(
        "INSERT INTO faults (id, knobs) VALUES (true, $1)"
        " ON CONFLICT (id) DO UPDATE SET knobs = $1",
        faults.to_json(),
    )


async def write_webhook_url(conn: Connection, url: str | None) -> None:
    await conn.execute(
        "INSERT INTO webhook_endpoint (id, url) VALUES (true, $1)"
        " ON CONFLICT (id) DO UPDATE SET url = $1",
        url,
    )


# ---------------------------------------------------------------- scripts


async def put_script(conn: Connection, order_id: str, script: ConfirmScript) -> None:
    """Set (or replace, unused again) the script of an order."""
    await conn.execute(
        "INSERT INTO scripts (order_id, script) VALUES ($1, $2)"
        " ON CONFLICT (order_id) DO UPDATE"
        " SET script = $2, created_at = now(), used_by = NULL, used_at = NULL",
        order_id,
        script.to_json(),
    )


@dataclass(frozen=True)
class StoredScript:
    order_id: str
    script: ConfirmScript
    created_at: datetime
    used_by: str | None  # the paymentKey whose first confirm followed it
    used_at: datetime | None


async def list_scripts(conn: Connection) -> list[StoredScript]:
    rows = await conn.fetch(
        "SELECT order_id, script, created_at, used_by, used_at FROM scripts ORDER BY created_at"
    )
    return [
        StoredScript(
            row["order_id"],
            parse_script(row["script"]),
            row["created_at"],
            row["used_by"],
            row["used_at"],
        )
        for row in rows
    ]


async def delete_script(conn: Connection, order_id: str) -> bool:
    deleted = await conn.fetchval(
        "DELETE FROM scripts WHERE order_id = $1 RETURNING true", order_id
    )
    return bool(deleted)


# ---------------------------------------------------------------- transactions


def _transaction(row: asyncpg.Record) -> Transaction:
    return Transaction(
        transaction_key=row["transaction_key"],
        payment_key=row["payment_key"],
        order_id=row["order_id"],
        customer_key=row["customer_key"],
        status=Status(row["status"]),
        amount=row["amount"],
        transaction_at=row["transaction_at"],
    )


async def transaction_id(conn: Connection, transaction_key: str) -> int | None:
    found: int | None = await conn.fetchval(
        "SELECT id FROM transactions WHERE transaction_key = $1", transaction_key
    )
    return found


async def transactions(
    conn: Connection, query: TransactionQuery, after_id: int
) -> list[Transaction]:
    """The query's page: transactions in its time range after ``after_id``, in id order."""
    rows = await conn.fetch(
        f"SELECT {_TRANSACTION_COLUMNS} FROM transactions"
        " WHERE transaction_at >= $1 AND transaction_at < $2 AND id > $3"
        " ORDER BY id LIMIT $4",
        query.start,
        query.end,
        after_id,
        query.limit,
    )
    return [_transaction(row) for row in rows]


# ---------------------------------------------------------------- bulk generator

# N DONE payments approved at random moments of one day, a share of them canceled (a coin
# decides full or half) before the day ends, and their transactions in time order; set-based.
_GENERATE = """
WITH made AS MATERIALIZED (
    SELECT n,
        'tsbx_gen_' || $6::text || '_' || n AS payment_key,
        $4::text || $6::text || '-' || n AS order_id,
        'cust_gen_' || substr(md5($6::text || n), 1, 12) AS customer_key,
        (10 + floor(random() * 1990))::bigint * 100 AS amount,
        $1::timestamptz + random() * ($2::timestamptz - $1::timestamptz) AS approved_at,
        random() < $5::float8 AS canceled,
        random() < 0.5 AS partial,
        random() AS cancel_point
    FROM generate_series(1, $3::integer) AS n
), shaped AS MATERIALIZED (
    SELECT made.*,
        'txrd_' || md5('approval' || payment_key) AS approval_key,
        'txrd_' || md5('cancel' || payment_key) AS cancel_key,
        CASE WHEN partial THEN amount / 200 * 100 ELSE amount END AS cancel_amount,
        approved_at + cancel_point * ($2::timestamptz - approved_at) AS canceled_at
    FROM made
), payments_made AS (
    INSERT INTO payments (payment_key, order_id, order_name, customer_key, total_amount,
        balance_amount, status, card_number, secret, requested_at, authenticated_at,
        approved_at, expires_at, last_transaction_key, cancels, confirm_calls, approvals)
    SELECT payment_key, order_id, 'Generated order', customer_key, amount,
        amount - CASE WHEN canceled THEN cancel_amount ELSE 0 END,
        CASE WHEN NOT canceled THEN 'DONE' WHEN partial THEN 'PARTIAL_CANCELED'
             ELSE 'CANCELED' END,
        '43301234****123*', 'ps_' || substr(md5('secret' || payment_key), 1, 24),
        approved_at - interval '30 seconds', approved_at - interval '20 seconds',
        approved_at, approved_at + interval '10 minutes',
        CASE WHEN canceled THEN cancel_key ELSE approval_key END,
        CASE WHEN NOT canceled THEN '[]'::jsonb ELSE jsonb_build_array(jsonb_build_object(
            'transactionKey', cancel_key, 'cancelReason', 'generated cancel',
            'taxExemptionAmount', 0,
            'canceledAt', to_char(canceled_at AT TIME ZONE 'Asia/Seoul',
                                  'YYYY-MM-DD"T"HH24:MI:SS"+09:00"'),
            'easyPayDiscountAmount', 0, 'receiptKey', NULL, 'cancelAmount', cancel_amount,
            'taxFreeAmount', 0, 'refundableAmount', amount - cancel_amount,
            'cancelStatus', 'DONE', 'cancelRequestId', NULL)) END,
        1, 1
    FROM shaped
    RETURNING payment_key
), recorded AS (
    INSERT INTO transactions (transaction_key, payment_key, order_id, customer_key, status,
        amount, transaction_at)
    SELECT transaction_key, payment_key, order_id, customer_key, status, amount, transaction_at
    FROM (
        SELECT approval_key AS transaction_key, payment_key, order_id, customer_key,
            'DONE' AS status, amount, approved_at AS transaction_at
        FROM shaped
        UNION ALL
        SELECT cancel_key, payment_key, order_id, customer_key,
            CASE WHEN partial THEN 'PARTIAL_CANCELED' ELSE 'CANCELED' END,
            cancel_amount, canceled_at
        FROM shaped WHERE canceled
    ) AS made_transactions
    ORDER BY transaction_at
)
SELECT count(*) AS payments,
    count(*) FILTER (WHERE canceled AND NOT partial) AS canceled,
    count(*) FILTER (WHERE canceled AND partial) AS partially_canceled,
    coalesce(sum(amount), 0) AS total_amount,
    coalesce(sum(cancel_amount) FILTER (WHERE canceled), 0) AS canceled_amount,
    min(order_id) AS first_order_id
FROM shaped
"""


async def generate(conn: Connection, request: GenerateRequest, batch: str) -> asyncpg.Record:
    """Insert the generated payments and transactions; the counts and sums of what was made."""
    start = request.day_start
    row = await conn.fetchrow(
        _GENERATE,
        start,
        start + timedelta(days=1),
        request.payments,
        request.order_id_prefix,
        request.cancel_rate,
        batch,
    )
    assert row is not None
    return row


# ---------------------------------------------------------------- webhooks


@dataclass(frozen=True)
class Delivery:
    id: int
    transmission_id: str
    url: str
    body: dict[str, Any]
    attempts: int


async def enqueue_webhook(conn: Connection, webhook: Webhook) -> None:
    await conn.execute(
        "INSERT INTO webhook_deliveries (transmission_id, url, payment_key, body, next_attempt_at)"
        " SELECT transmission_id, url, payment_key, body, next_attempt_at"
        " FROM jsonb_populate_record(NULL::webhook_deliveries, $1)",
        webhook.row(),
    )


async def claim_due_webhooks(
    conn: Connection, now: datetime, lease: timedelta, limit: int
) -> list[Delivery]:
    """Due deliveries (oldest first), leased (pushed ``lease`` ahead) so other processes leave
    them alone."""
    rows = await conn.fetch(
        "UPDATE webhook_deliveries SET next_attempt_at = $1::timestamptz + $2::interval"
        " WHERE id IN (SELECT id FROM webhook_deliveries WHERE next_attempt_at <= $1"
        " ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)"
        " RETURNING id, transmission_id, url, body, attempts",
        now,
        lease,
        limit,
    )
    return sorted((Delivery(**dict(row)) for row in rows), key=lambda d: d.id)


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


async def record_webhook_dropped(conn: Connection, delivery_id: int) -> None:
    """A delivery dropped on purpose: never sent, never retried."""
    await conn.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = NULL, dropped_at = now() WHERE id = $1",
        delivery_id,
    )
