"""Plain SQL over the ``approval`` schema; every function runs inside the caller's transaction.

Leases and due times use the database clock (``now()``), so workers on several hosts agree.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.approval.domain import (
    LIVE,
    REFUND_CLAIMABLE,
    UNSETTLED,
    Attempt,
    AttemptState,
    Intent,
    IntentStatus,
    PgCancel,
    PgPayment,
    Reason,
    Refund,
    RefundState,
    SecurityEvent,
    SecurityFinding,
    SecurityKind,
    Verdict,
)
from shared import inbox, outbox, sql
from shared.db import Connection
from shared.events import OrderPlaced, PaymentAuthenticated

# --- order intents --------------------------------------------------------------------------


@dataclass(frozen=True)
class PlacedIntent:
    claimed: bool  # False: the OrderPlaced was handled before, nothing written
    waiting: list[str]  # the attempts waiting for this order (AWAITING_ORDER)


_PLACED_COLUMNS = {
    "event_id": "uuid",
    "order_id": "text",
    "amount": "bigint",
    "currency": "text",
    "customer_key": "text",
    "expires_at": "timestamptz",
}
_CLAIM_AND_PLACE_INTENTS = f"""
WITH {inbox.claim_events(_PLACED_COLUMNS)}, placed AS (
    INSERT INTO order_intents (order_id, amount, currency, customer_key, expires_at, status)
    SELECT f.order_id, f.amount, f.currency, f.customer_key, f.expires_at, 'PAYABLE'
    FROM firsts f JOIN claim USING (event_id)
    ON CONFLICT (order_id) DO UPDATE SET
        amount = COALESCE(order_intents.amount, EXCLUDED.amount),
        currency = COALESCE(order_intents.currency, EXCLUDED.currency),
        customer_key = COALESCE(order_intents.customer_key, EXCLUDED.customer_key),
        expires_at = COALESCE(order_intents.expires_at, EXCLUDED.expires_at),
        updated_at = now()
)
SELECT {inbox.CLAIMED} AS claimed,
       ARRAY(SELECT payment_key FROM payment_attempts a
             WHERE a.order_id = e.order_id AND a.state = 'AWAITING_ORDER') AS waiting
FROM events e ORDER BY e.n
"""


async def claim_and_place_intents(
    conn: Connection, consumer: str, events: Sequence[OrderPlaced]
) -> list[PlacedIntent]:
    """In one statement, for each OrderPlaced: claim it in the inbox and record its intent (a
    tombstone keeps its status: a late OrderPlaced revives nothing); with the attempts waiting
    for the order, also on a redelivery (the drives it kicked may have died with their worker).
    """
    rows = await sql.fetch(
        conn,
        _CLAIM_AND_PLACE_INTENTS,
        inbox_consumer=consumer,
        **inbox.event_arrays(events, _PLACED_COLUMNS),
    )
    return [PlacedIntent(row["claimed"], list(row["waiting"])) for row in rows]


async def end_intent(conn: Connection, order_id: str, status: IntentStatus) -> None:
    """Record an OrderExpired / OrderCanceled: only a PAYABLE order (or none yet) changes."""
    await conn.execute(
        "INSERT INTO order_intents (order_id, status) VALUES ($1, $2)"
        " ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, updated_at = now()"
        " WHERE order_intents.status = 'PAYABLE'",
        order_id,
        status.value,
    )


_INTENT_COLUMNS = "order_id, status, amount, expires_at, paid_by, currency"


def _intent(row: asyncpg.Record) -> Intent:
    return Intent(
        row["order_id"],
        IntentStatus(row["status"]),
        row["amount"],
        row["expires_at"],
        row["paid_by"],
        row["currency"],
    )


async def get_intent(conn: Connection, order_id: str, *, lock: bool = False) -> Intent | None:
    row = await conn.fetchrow(
        f"SELECT {_INTENT_COLUMNS} FROM order_intents"
        " WHERE order_id = $1" + (" FOR UPDATE" if lock else ""),
        order_id,
    )
    return _intent(row) if row else None


# The state of another attempt ($2 is this one's key) holding order $1 (at most one does).
# The states are a literal, not a parameter: a generic plan finds the holder through the
# partial unique index on live attempts only if its query names the index's own states.
_LIVE_STATES = sql.literals(LIVE)
_HOLDER = (
    "(SELECT state FROM payment_attempts"
    f" WHERE order_id = $1 AND payment_key <> $2 AND state IN ({_LIVE_STATES})) AS holder"
)


def _holder(row: asyncpg.Record) -> AttemptState | None:
    return AttemptState(row["holder"]) if row["holder"] else None


async def lock_intent_for_judging(
    conn: Connection, order_id: str, payment_key: str
) -> tuple[Intent | None, AttemptState | None]:
    """The order's intent, locked, and the state of another attempt holding the order (one
    in a LIVE state), in one round trip. Under the lock no other attempt
    of this order can become live, so the holder read here stays true until commit."""
    row = await conn.fetchrow(
        f"SELECT {_INTENT_COLUMNS}, {_HOLDER} FROM (SELECT 1) AS one LEFT JOIN"
        "  (SELECT * FROM order_intents WHERE order_id = $1 FOR UPDATE) AS i ON true",
        order_id,
        payment_key,
    )
    assert row is not None  # the outer side always has its one row
    return (_intent(row) if row["order_id"] is not None else None), _holder(row)


# --- payment attempts -----------------------------------------------------------------------

_ATTEMPT_COLUMNS = (
    "payment_key, order_id, presented_amount, expected_amount, authenticated_at, state, tries,"
    " idempotency_key, lease_owner, created_at, event_id, generation"
)


def _attempt(row: asyncpg.Record) -> Attempt:
    return Attempt(
        payment_key=row["payment_key"],
        order_id=row["order_id"],
        presented_amount=row["presented_amount"],
        expected_amount=row["expected_amount"],
        authenticated_at=row["authenticated_at"],
        state=AttemptState(row["state"]),
        tries=row["tries"],
        idempotency_key=row["idempotency_key"],
        lease_owner=row["lease_owner"],
        created_at=row["created_at"],
        event_id=row["event_id"],
        generation=row["generation"],
    )


# The columns of an attempt as presented, and their values as named parameters (_presented).
_PRESENTED_COLUMNS = (
    "payment_key, order_id, presented_amount, payment_type, authenticated_at, client_ip,"
    " user_agent, event_id"
)
_PRESENTED_VALUES = (
    ":payment_key, :order_id, :presented_amount, :payment_type, :authenticated_at, :client_ip,"
    " :user_agent, :event_id"
)


def _presented(event: PaymentAuthenticated) -> dict[str, object]:
    return {
        "payment_key": event.payment_key,
        "order_id": event.order_id,
        "presented_amount": event.amount,
        "payment_type": event.payment_type,
        "authenticated_at": event.received_at,
        "client_ip": event.client_ip,
        "user_agent": event.user_agent,
        "event_id": event.event_id,
    }


async def insert_attempt_from_pg(conn: Connection, payment: PgPayment) -> Attempt:
    """An attempt for a payment the PG approved without our asking (RECEIVED, for the caller to
    record the approval); the one already there if this paymentKey has one."""
    row = await conn.fetchrow(
        "INSERT INTO payment_attempts (payment_key, order_id, presented_amount, payment_type,"
        " authenticated_at, state, event_id)"
        " VALUES ($1, $2, $3, 'NORMAL', COALESCE($4, now()), 'RECEIVED', gen_random_uuid())"
        f" ON CONFLICT (payment_key) DO NOTHING RETURNING {_ATTEMPT_COLUMNS}",
        payment.payment_key,
        payment.order_id,
        payment.total_amount,
        payment.approved_at,
    )
    if row is not None:
        return _attempt(row)
    existing = await get_attempt(conn, payment.payment_key, lock=True)
    assert existing is not None
    return existing


@dataclass(frozen=True)
class IntentRead:
    """An intent read without a lock, with its row version (every write adds one) and the state
    of another attempt holding the order, if any."""

    intent: Intent
    version: int
    holder: AttemptState | None


# $1 the orderId, $2 the paymentKey presented.
READ_FOR_JUDGING = (
    f"SELECT i.version, {_INTENT_COLUMNS}, {_HOLDER} FROM order_intents i WHERE order_id = $1"
)


async def read_intent_for_judging(
    conn: Connection, order_id: str, payment_key: str
) -> IntentRead | None:
    """What :func:`lock_intent_for_judging` reads, without the lock (None: no intent yet)."""
    row = await conn.fetchrow(READ_FOR_JUDGING, order_id, payment_key)
    return None if row is None else IntentRead(_intent(row), row["version"], _holder(row))


class Received(enum.Enum):
    INSERTED = "INSERTED"  # the attempt was inserted in its verdict's state, its event claimed
    PRESENTED_AGAIN = "PRESENTED_AGAIN"  # the event is claimed; its paymentKey has an attempt
    DUPLICATE = "DUPLICATE"  # the event was handled before: nothing written
    STALE = "STALE"  # the intent changed since it was read, or another attempt became live


# The intent as judged, locked until the statement (or its transaction) ends: still at the
# version read, or still absent if there was none. No row: the judgement is stale.
_INTENT_AT_VERSION = (
    "intent AS (SELECT FROM order_intents WHERE order_id = :order_id AND version = :version"
    " FOR UPDATE)"
)
_INTENT_STILL_ABSENT = (
    "intent AS (SELECT WHERE NOT EXISTS (SELECT FROM order_intents WHERE order_id = :order_id))"
)


async def insert_judged(
    conn: Connection,
    consumer: str,
    read: IntentRead | None,
    event: PaymentAuthenticated,
    verdict: Verdict,
) -> tuple[Received, Attempt | None]:
    """In one statement: claim the event in ``consumer``'s inbox and insert its attempt in the
    state ``verdict`` gave it against ``read`` (None: no intent), only if the intent is still
    as read; else STALE, and nothing was written. A VERIFIED attempt is STALE too if another
    attempt took the order meanwhile (the one-live-attempt index refuses the insert)."""
    version = {"version": read.version} if read is not None else {}
    try:
        row = await sql.fetchrow(
            conn,
            f"WITH {_INTENT_AT_VERSION if read is not None else _INTENT_STILL_ABSENT},"
            f" {inbox.claim_from('intent')},"
            f" added AS (INSERT INTO payment_attempts ({_PRESENTED_COLUMNS}, state, reason,"
            f"  expected_amount) SELECT {_PRESENTED_VALUES}, :state, :reason, :expected"
            f"  FROM claim ON CONFLICT (payment_key) DO NOTHING RETURNING {_ATTEMPT_COLUMNS})"
            " SELECT EXISTS (SELECT FROM intent) AS current,"
            "  EXISTS (SELECT FROM claim) AS claimed, added.*"
            " FROM (SELECT 1) AS one LEFT JOIN added ON true",
            **_presented(event),
            **version,
            state=verdict.state.value,
            reason=verdict.reason.value if verdict.reason else None,
            expected=read.intent.amount if read is not None else None,
            **inbox.claim_parameters(consumer, event.event_id),
        )
    except asyncpg.UniqueViolationError:
        return Received.STALE, None
    assert row is not None
    if not row["current"]:
        return Received.STALE, None
    if not row["claimed"]:
        inbox.dropped(consumer)
        return Received.DUPLICATE, None
    if row["payment_key"] is None:
        return Received.PRESENTED_AGAIN, None
    return Received.INSERTED, _attempt(row)


async def get_attempt(conn: Connection, payment_key: str, *, lock: bool = False) -> Attempt | None:
    row = await conn.fetchrow(
        f"SELECT {_ATTEMPT_COLUMNS} FROM payment_attempts WHERE payment_key = $1"
        + (" FOR UPDATE" if lock else ""),
        payment_key,
    )
    return _attempt(row) if row else None


async def set_verdict(
    conn: Connection,
    payment_key: str,
    from_state: AttemptState,
    to_state: AttemptState,
    reason: Reason | None,
    expected_amount: int | None,
) -> bool:
    """Move an attempt out of RECEIVED / AWAITING_ORDER / VERIFIED (if it is still there)."""
    result: str = await conn.execute(
        "UPDATE payment_attempts SET state = $3, reason = $4,"
        " expected_amount = COALESCE($5, expected_amount), updated_at = now()"
        " WHERE payment_key = $1 AND state = $2",
        payment_key,
        from_state.value,
        to_state.value,
        reason.value if reason else None,
        expected_amount,
    )
    return result != "UPDATE 0"


async def claim(
    conn: Connection, payment_key: str, owner: str, lease_seconds: float, idempotency_key: str
) -> Attempt | None:
    """Take the lease: VERIFIED, or CONFIRMING/UNKNOWN whose lease ran out and whose check is
    due, becomes CONFIRMING owned by ``owner``; None if the attempt is not free to take.

    The idempotency key is set once and kept: a payment never gets a second key. Taking over an
    expired CONFIRMING lease is not a state change, only a change of owner.
    """
    row = await conn.fetchrow(
        "UPDATE payment_attempts SET state = 'CONFIRMING',"
        " idempotency_key = COALESCE(idempotency_key, $2), lease_owner = $3,"
        " lease_until = now() + make_interval(secs => $4), updated_at = now()"
        " WHERE payment_key = $1 AND (state = 'VERIFIED' OR (state IN ('CONFIRMING', 'UNKNOWN')"
        "  AND (lease_until IS NULL OR lease_until < now())"
        "  AND (next_check_at IS NULL OR next_check_at <= now())))"
        f" RETURNING {_ATTEMPT_COLUMNS}",
        payment_key,
        idempotency_key,
        owner,
        lease_seconds,
    )
    return _attempt(row) if row else None


async def save_approved(conn: Connection, payment_key: str, payment: PgPayment) -> None:
    """APPROVED for what the PG approved, from whatever state the attempt was in: for an order we
    never had (any other approval is recorded by :func:`record_approval`)."""
    await conn.execute(
        "UPDATE payment_attempts SET state = 'APPROVED', method = $2, approved_at = $3,"
        " approved_amount = $4, reason = NULL, lease_owner = NULL, lease_until = NULL,"
        " next_check_at = NULL, updated_at = now() WHERE payment_key = $1",
        payment_key,
        payment.method,
        payment.approved_at,
        payment.total_amount,
    )


# The PG approved :payment_key for :approved_amount of order :pg_order_id: the attempt becomes
# APPROVED if it is still in :from_state (and, given an :owner, under that owner's lease) and its
# order is one we have; the intent becomes PAID if the approval is for its order and amount and
# no other payment paid it; the PaymentApproved event is added to the outbox.
_RECORD_APPROVAL = (
    "WITH approved AS (UPDATE payment_attempts a SET state = 'APPROVED', method = :method,"
    "  approved_at = :approved_at, approved_amount = :approved_amount, reason = NULL,"
    "  lease_owner = NULL, lease_until = NULL, next_check_at = NULL, updated_at = now()"
    "  WHERE payment_key = :payment_key AND state = :from_state"
    "  AND (:owner::text IS NULL OR lease_owner = :owner)"
    "  AND EXISTS (SELECT FROM order_intents i WHERE i.order_id = a.order_id)"
    "  RETURNING order_id),"
    " agreeing AS (SELECT FROM order_intents WHERE order_id = (SELECT order_id FROM approved)"
    "  AND order_id = :pg_order_id AND amount = :approved_amount),"
    " paid AS (UPDATE order_intents SET status = 'PAID', paid_by = :payment_key,"
    "  updated_at = now() WHERE order_id = (SELECT order_id FROM approved)"
    "  AND EXISTS (SELECT FROM agreeing) AND (paid_by IS NULL OR paid_by = :payment_key)"
    "  RETURNING 1),"
    f" {outbox.enqueue_from('approved')}"
    " SELECT (SELECT id FROM outbox_added) AS outbox_id, EXISTS (SELECT FROM agreeing) AS agrees,"
    "  EXISTS (SELECT FROM paid) AS paid"
)


@dataclass(frozen=True)
class ApprovalRecorded:
    outbox_id: int  # of the PaymentApproved event, for the relay
    agrees: bool  # the approval is for the order's stored amount
    paid: bool  # the intent is PAID by this payment (False with ``agrees``: another paid it)


async def record_approval(
    conn: Connection,
    attempt: Attempt,
    payment: PgPayment,
    event: outbox.Outgoing,
    *,
    owner: str | None = None,
) -> ApprovalRecorded | None:
    """In one statement: the PG's approval of ``attempt``, recorded if the attempt is still in
    the state it was read in (and under ``owner``'s lease, if given) and its order is one we
    have, with its intent PAID when the approval agrees and the event in the outbox (handed to
    the relay by the caller once committed). None: nothing changed."""
    row = await sql.fetchrow(
        conn,
        _RECORD_APPROVAL,
        payment_key=attempt.payment_key,
        from_state=attempt.state.value,
        owner=owner,
        method=payment.method,
        approved_at=payment.approved_at,
        approved_amount=payment.total_amount,
        pg_order_id=payment.order_id,
        **event.parameters,
    )
    assert row is not None
    if row["outbox_id"] is None:
        return None
    return ApprovalRecorded(row["outbox_id"], row["agrees"], row["paid"])


async def save_declined(
    conn: Connection, payment_key: str, reason: Reason, pg_code: str | None, message: str
) -> None:
    await conn.execute(
        "UPDATE payment_attempts SET state = 'DECLINED', reason = $2, pg_code = $3,"
        " pg_message = $4, lease_owner = NULL, lease_until = NULL, next_check_at = NULL,"
        " updated_at = now() WHERE payment_key = $1",
        payment_key,
        reason.value,
        pg_code,
        message[:1000],
    )


async def save_unknown(
    conn: Connection,
    payment_key: str,
    owner: str,
    why: str,
    delay_seconds: float,
    *,
    pg_code: str | None = None,
    next_key: str | None = None,
) -> bool:
    """Give the lease back with the outcome still unknown; only the lease holder may.
    ``next_key`` moves the attempt to its next idempotency key generation."""
    result: str = await conn.execute(
        "UPDATE payment_attempts SET state = 'UNKNOWN', tries = tries + 1, pg_message = $3,"
        " pg_code = $5, next_check_at = now() + make_interval(secs => $4),"
        " generation = generation + ($6::text IS NOT NULL)::int,"
        " idempotency_key = COALESCE($6, idempotency_key),"
        " lease_owner = NULL, lease_until = NULL, updated_at = now()"
        " WHERE payment_key = $1 AND state = 'CONFIRMING' AND lease_owner = $2",
        payment_key,
        owner,
        why[:1000],
        delay_seconds,
        pg_code,
        next_key,
    )
    return result != "UPDATE 0"


async def renew_lease(conn: Connection, payment_key: str, owner: str, lease_seconds: float) -> bool:
    """Extend our lease while a PG call is slow; False once it is no longer ours."""
    result: str = await conn.execute(
        "UPDATE payment_attempts SET lease_until = now() + make_interval(secs => $3)"
        " WHERE payment_key = $1 AND state = 'CONFIRMING' AND lease_owner = $2",
        payment_key,
        owner,
        lease_seconds,
    )
    return result != "UPDATE 0"


async def release(conn: Connection, payment_key: str, owner: str) -> None:
    """Drop a lease without a verdict (shutdown): the attempt is due again at once."""
    await conn.execute(
        "UPDATE payment_attempts SET lease_until = NULL, updated_at = now()"
        " WHERE payment_key = $1 AND state = 'CONFIRMING' AND lease_owner = $2",
        payment_key,
        owner,
    )


async def due_attempts(conn: Connection, verified_grace: float, limit: int) -> list[str]:
    """Attempts nobody is driving: a VERIFIED one whose driver died before claiming it, a
    CONFIRMING one whose lease ran out, an UNKNOWN one whose next check has come."""
    rows = await conn.fetch(
        "SELECT payment_key FROM payment_attempts"
        " WHERE (state = 'VERIFIED' AND updated_at < now() - make_interval(secs => $1))"
        " OR (state IN ('CONFIRMING', 'UNKNOWN')"
        "  AND (lease_until IS NULL OR lease_until < now())"
        "  AND (next_check_at IS NULL OR next_check_at <= now()))"
        " ORDER BY updated_at LIMIT $2",
        verified_grace,
        limit,
    )
    return [row["payment_key"] for row in rows]


async def due_awaiting(conn: Connection, waited_seconds: float, limit: int) -> list[str]:
    """AWAITING_ORDER attempts whose order is now known, or that waited long enough."""
    rows = await conn.fetch(
        "SELECT a.payment_key FROM payment_attempts a"
        " LEFT JOIN order_intents i ON i.order_id = a.order_id"
        " WHERE a.state = 'AWAITING_ORDER'"
        " AND (i.order_id IS NOT NULL OR a.created_at < now() - make_interval(secs => $1))"
        " ORDER BY a.created_at LIMIT $2",
        waited_seconds,
        limit,
    )
    return [row["payment_key"] for row in rows]


@dataclass(frozen=True)
class Stuck:
    """An attempt still unsettled after the PG's confirm window closed."""

    order_id: str
    payment_key: str
    state: AttemptState
    age_seconds: float
    tries: int
    last_answer: str | None


async def stuck_attempts(conn: Connection, window_seconds: float, limit: int) -> list[Stuck]:
    """Attempts the PG has not settled (CONFIRMING or UNKNOWN) although its window has closed,
    oldest first (on the database's clock)."""
    rows = await conn.fetch(
        "SELECT order_id, payment_key, state, tries, pg_message,"
        "  EXTRACT(EPOCH FROM now() - authenticated_at)::float8 AS age"
        " FROM payment_attempts WHERE state IN ('CONFIRMING', 'UNKNOWN')"
        "  AND authenticated_at < now() - make_interval(secs => $1)"
        " ORDER BY authenticated_at LIMIT $2",
        window_seconds,
        limit,
    )
    return [
        Stuck(
            r["order_id"],
            r["payment_key"],
            AttemptState(r["state"]),
            r["age"],
            r["tries"],
            r["pg_message"],
        )
        for r in rows
    ]


async def count_stuck(conn: Connection, window_seconds: float) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM payment_attempts WHERE state IN ('CONFIRMING', 'UNKNOWN')"
        " AND authenticated_at < now() - make_interval(secs => $1)",
        window_seconds,
    )
    return count


async def unknown_attempts(conn: Connection) -> tuple[int, float]:
    """How many attempts are UNKNOWN, and the seconds since the oldest one's authentication."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n,"
        " coalesce(EXTRACT(EPOCH FROM now() - min(authenticated_at)), 0)::float8 AS age"
        " FROM payment_attempts WHERE state = 'UNKNOWN'"
    )
    assert row is not None
    return int(row["n"]), float(row["age"])


# As the partial index payment_attempts_unsettled lists them (see _LIVE_STATES).
_UNSETTLED_STATES = sql.literals(UNSETTLED)


# Read every reconcile round: through the unsettled partial index, whose predicate the literal
# states must imply (a parameter would not).
OLDEST_UNSETTLED = (
    "SELECT EXTRACT(EPOCH FROM now() - min(authenticated_at))::float8 FROM payment_attempts"
    f" WHERE state IN ({_UNSETTLED_STATES})"
)


async def oldest_unsettled_age(conn: Connection) -> float:
    """Seconds since the oldest authentication that is neither approved nor refused (0 if none)."""
    age = await conn.fetchval(OLDEST_UNSETTLED)
    return float(age or 0.0)


# --- refunds --------------------------------------------------------------------------------

_REFUND_COLUMNS = (
    "refund_id, order_id, payment_key, amount, reason, state, idempotency_key, tries, event_id,"
    " generation"
)


def _refund(row: asyncpg.Record) -> Refund:
    return Refund(
        refund_id=row["refund_id"],
        order_id=row["order_id"],
        payment_key=row["payment_key"],
        amount=row["amount"],
        reason=row["reason"],
        state=RefundState(row["state"]),
        idempotency_key=row["idempotency_key"],
        tries=row["tries"],
        event_id=row["event_id"],
        generation=row["generation"],
    )


async def insert_refund(
    conn: Connection,
    *,
    refund_id: str,
    order_id: str,
    payment_key: str,
    amount: int | None,
    reason: str,
    idempotency_key: str,
    event_id: uuid.UUID,
) -> bool:
    inserted = await conn.fetchval(
        "INSERT INTO refunds (refund_id, order_id, payment_key, amount, reason, state,"
        " idempotency_key, event_id) VALUES ($1, $2, $3, $4, $5, 'REQUESTED', $6, $7)"
        " ON CONFLICT (refund_id) DO NOTHING RETURNING true",
        refund_id,
        order_id,
        payment_key,
        amount,
        reason,
        idempotency_key,
        event_id,
    )
    return bool(inserted)


async def get_refund(conn: Connection, refund_id: str, *, lock: bool = False) -> Refund | None:
    row = await conn.fetchrow(
        f"SELECT {_REFUND_COLUMNS} FROM refunds WHERE refund_id = $1"
        + (" FOR UPDATE" if lock else ""),
        refund_id,
    )
    return _refund(row) if row else None


async def claim_refund(
    conn: Connection, refund_id: str, owner: str, lease_seconds: float
) -> tuple[Refund, RefundState] | None:
    """Take the refund's lease (it becomes CANCELING owned by ``owner``): the refund and its
    state before, which tells whether a cancel may have been sent already; None if the refund
    is not free to take."""
    states = [s.value for s in REFUND_CLAIMABLE | {RefundState.CANCELING}]
    row = await conn.fetchrow(
        "WITH before AS (SELECT state AS previous FROM refunds WHERE refund_id = $1 FOR UPDATE)"
        " UPDATE refunds SET state = 'CANCELING', lease_owner = $2,"
        " lease_until = now() + make_interval(secs => $3), updated_at = now() FROM before"
        " WHERE refund_id = $1 AND state = ANY($4::text[])"
        " AND (state = 'REQUESTED' OR ((lease_until IS NULL OR lease_until < now())"
        "  AND (next_check_at IS NULL OR next_check_at <= now())))"
        f" RETURNING {_REFUND_COLUMNS}, previous",
        refund_id,
        owner,
        lease_seconds,
        states,
    )
    return (_refund(row), RefundState(row["previous"])) if row else None


async def save_refund_result(
    conn: Connection,
    refund_id: str,
    state: RefundState,
    *,
    refunded_amount: int | None = None,
    balance_amount: int | None = None,
    canceled_at: datetime | None = None,
    pg_code: str | None = None,
    pg_message: str | None = None,
) -> None:
    await conn.execute(
        "UPDATE refunds SET state = $2, refunded_amount = $3, balance_amount = $4,"
        " pg_code = $5, pg_message = $6, canceled_at = $7, lease_owner = NULL, lease_until = NULL,"
        " next_check_at = NULL, updated_at = now() WHERE refund_id = $1",
        refund_id,
        state.value,
        refunded_amount,
        balance_amount,
        pg_code,
        (pg_message or "")[:1000] or None,
        canceled_at,
    )


async def refunds_of(conn: Connection, payment_key: str) -> list[Refund]:
    rows = await conn.fetch(
        f"SELECT {_REFUND_COLUMNS} FROM refunds WHERE payment_key = $1", payment_key
    )
    return [_refund(row) for row in rows]


async def insert_external_refund(
    conn: Connection,
    *,
    refund_id: str,
    order_id: str,
    payment_key: str,
    cancel: PgCancel,
    balance_amount: int,
    event: outbox.Outgoing,
) -> int | None:
    """Record a cancel the PG made without our asking, SUCCEEDED, with its announcement, in one
    statement; the outbox row's id, or None if it was recorded before."""
    outbox_id: int | None = await sql.fetchval(
        conn,
        "WITH added AS (INSERT INTO refunds (refund_id, order_id, payment_key, amount, reason,"
        "  state, idempotency_key, event_id, refunded_amount, balance_amount, canceled_at,"
        "  external)"
        "  VALUES (:refund_id, :order_id, :payment_key, :amount, :reason, 'SUCCEEDED',"
        "  'external-' || :refund_id, :outbox_event_id::uuid, :amount, :balance_amount,"
        "  :canceled_at, true)"
        "  ON CONFLICT (refund_id) DO NOTHING RETURNING 1),"
        f" {outbox.enqueue_from('added')}"
        " SELECT id FROM outbox_added",
        refund_id=refund_id,
        order_id=order_id,
        payment_key=payment_key,
        amount=cancel.cancel_amount,
        reason=cancel.cancel_reason[:200] or "canceled at the PG",
        balance_amount=balance_amount,
        canceled_at=cancel.canceled_at,
        **event.parameters,
    )
    return outbox_id


async def renew_refund_lease(
    conn: Connection, refund_id: str, owner: str, lease_seconds: float
) -> bool:
    result: str = await conn.execute(
        "UPDATE refunds SET lease_until = now() + make_interval(secs => $3)"
        " WHERE refund_id = $1 AND state = 'CANCELING' AND lease_owner = $2",
        refund_id,
        owner,
        lease_seconds,
    )
    return result != "UPDATE 0"


async def save_refund_unknown(
    conn: Connection,
    refund_id: str,
    owner: str,
    why: str,
    delay_seconds: float,
    *,
    pg_code: str | None = None,
    next_key: str | None = None,
) -> bool:
    """As :func:`save_unknown`, for a refund."""
    result: str = await conn.execute(
        "UPDATE refunds SET state = 'UNKNOWN', tries = tries + 1, pg_message = $3,"
        " pg_code = $5, next_check_at = now() + make_interval(secs => $4),"
        " generation = generation + ($6::text IS NOT NULL)::int,"
        " idempotency_key = COALESCE($6, idempotency_key),"
        " lease_owner = NULL, lease_until = NULL, updated_at = now()"
        " WHERE refund_id = $1 AND state = 'CANCELING' AND lease_owner = $2",
        refund_id,
        owner,
        why[:1000],
        delay_seconds,
        pg_code,
        next_key,
    )
    return result != "UPDATE 0"


async def count_refunds_by_state(conn: Connection) -> dict[RefundState, int]:
    """Refunds not succeeded, by state (the partial index keeps this cheap)."""
    rows = await conn.fetch(
        "SELECT state, count(*) AS n FROM refunds"
        " WHERE state IN ('REQUESTED', 'CANCELING', 'UNKNOWN', 'FAILED') GROUP BY state"
    )
    return {RefundState(r["state"]): r["n"] for r in rows}


async def retry_refund(conn: Connection, refund_id: str, next_key: str) -> bool:
    """An operator's retry of a refused refund: REQUESTED again, under a new key generation."""
    result: str = await conn.execute(
        "UPDATE refunds SET state = 'REQUESTED', generation = generation + 1,"
        " idempotency_key = $2, tries = 0, next_check_at = NULL, updated_at = now()"
        " WHERE refund_id = $1 AND state = 'FAILED'",
        refund_id,
        next_key,
    )
    return result != "UPDATE 0"


@dataclass(frozen=True)
class RefundRow:
    """A refund as operators see it."""

    refund: Refund
    pg_code: str | None
    pg_message: str | None
    updated_at: datetime


async def refunds_in(conn: Connection, states: list[RefundState], limit: int) -> list[RefundRow]:
    """Refunds in these states, the most recently changed first."""
    rows = await conn.fetch(
        f"SELECT {_REFUND_COLUMNS}, pg_code, pg_message, updated_at FROM refunds"
        " WHERE state = ANY($1::text[]) ORDER BY updated_at DESC LIMIT $2",
        [s.value for s in states],
        limit,
    )
    return [RefundRow(_refund(r), r["pg_code"], r["pg_message"], r["updated_at"]) for r in rows]


async def due_refunds(conn: Connection, grace: float, limit: int) -> list[str]:
    rows = await conn.fetch(
        "SELECT refund_id FROM refunds"
        " WHERE (state = 'REQUESTED' AND updated_at < now() - make_interval(secs => $1))"
        " OR (state IN ('CANCELING', 'UNKNOWN')"
        "  AND (lease_until IS NULL OR lease_until < now())"
        "  AND (next_check_at IS NULL OR next_check_at <= now()))"
        " ORDER BY updated_at LIMIT $2",
        grace,
        limit,
    )
    return [row["refund_id"] for row in rows]


# --- security events --------------------------------------------------------------------------


async def record_security_event(
    conn: Connection, payment_key: str, finding: SecurityFinding
) -> bool:
    """Record a finding against the attempt it was found on (with the client address and user
    agent checkout saw); False if this attempt already has one of this kind."""
    inserted = await conn.fetchval(
        "INSERT INTO security_events (kind, order_id, payment_key, expected, presented,"
        " client_ip, user_agent)"
        " SELECT $2, order_id, payment_key, $3, $4, client_ip, user_agent"
        " FROM payment_attempts WHERE payment_key = $1"
        " ON CONFLICT ON CONSTRAINT security_events_once DO NOTHING RETURNING true",
        payment_key,
        finding.kind.value,
        finding.expected[:200],
        finding.presented[:200],
    )
    return bool(inserted)


async def security_events(
    conn: Connection, since: datetime | None, limit: int
) -> list[SecurityEvent]:
    """The latest events first (at most ``limit``), those at or after ``since`` if given."""
    rows = await conn.fetch(
        "SELECT occurred_at, kind, order_id, payment_key, expected, presented, client_ip,"
        " user_agent FROM security_events WHERE $1::timestamptz IS NULL OR occurred_at >= $1"
        " ORDER BY occurred_at DESC, id DESC LIMIT $2",
        since,
        limit,
    )
    return [
        SecurityEvent(
            occurred_at=row["occurred_at"],
            kind=SecurityKind(row["kind"]),
            order_id=row["order_id"],
            payment_key=row["payment_key"],
            expected=row["expected"],
            presented=row["presented"],
            client_ip=row["client_ip"],
            user_agent=row["user_agent"],
        )
        for row in rows
    ]
