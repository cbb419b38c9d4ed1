"""Checkout's tables: received redirects, each recorded once, with its event in the same commit."""

from __future__ import annotations

import logging
from datetime import datetime

import asyncpg

from services.checkout.domain import (
    Conflict,
    FailRedirect,
    Outcome,
    Receipt,
    SuccessRedirect,
)
from services.checkout.webhook import Notice
from shared import inbox, outbox, sql
from shared.db import Connection
from shared.events import OrderPlaced, PaymentAuthenticated

log = logging.getLogger(__name__)


_INSERT_SUCCESS = (
    "INSERT INTO success_redirects (payment_key, order_id, amount, payment_type,"
    " client_ip, user_agent, event_id, received_at, last_seen_at)"
)
# The usual case, in one statement: a first redirect for a placed order, recorded and announced.
_SUCCESS_VALUES = (
    ":payment_key, :order_id, :amount, :payment_type, :client_ip, :user_agent, :event_id,"
    " :received_at, :received_at"
)
_RECORD_FIRST_SUCCESS = outbox.announcing(
    f"{_INSERT_SUCCESS} SELECT {_SUCCESS_VALUES}"
    " WHERE EXISTS (SELECT 1 FROM placed_orders WHERE order_id = :order_id)"
    " ON CONFLICT (payment_key) DO NOTHING RETURNING 1"
)
# Redirects and OrderPlaced of one order take turns (see record_placed_order): a transaction's
# advisory lock on the orderId, in a namespace of its own (the first key).
_ORDER_TURN = "SELECT pg_advisory_xact_lock(7301, hashtext($1))"


async def record_success(
    pool: asyncpg.Pool, handoff: outbox.Handoff, redirect: SuccessRedirect, receipt: Receipt
) -> Outcome:
    """Record a success redirect once per paymentKey; announce it, atomically, if its order was
    placed (a first one's event goes to ``handoff`` for the relay to publish at once), else
    hold it until its OrderPlaced arrives, which for a made-up orderId is never.

    A concurrent duplicate waits on the primary key until the first insert commits, then finds
    that row: so however many redirects race, exactly one event is enqueued.
    """
    authenticated = redirect.authenticated(receipt)
    event = outbox.Outgoing.of(authenticated)
    async with pool.acquire() as conn:
        outbox_id = await sql.fetchval(
            conn,
            _RECORD_FIRST_SUCCESS,
            **_success_row(redirect, receipt, event),
            **event.parameters,
        )
        if outbox_id is not None:
            handoff.put(event.committed(outbox_id))
            return Outcome.FIRST
        async with conn.transaction():
            await conn.execute(_ORDER_TURN, redirect.order_id)
            if await _known_payment_key(conn, redirect.payment_key):
                return await _record_known_payment_key(conn, redirect, receipt)
            return await _record_new(conn, redirect, receipt, authenticated)


def _success_row(
    redirect: SuccessRedirect,
    receipt: Receipt,
    event: outbox.Outgoing | PaymentAuthenticated | None,
) -> dict[str, object]:
    return {
        "payment_key": redirect.payment_key,
        "order_id": redirect.order_id,
        "amount": redirect.amount,
        "payment_type": redirect.payment_type,
        "client_ip": receipt.client_ip,
        "user_agent": receipt.user_agent,
        "event_id": event.event_id if event is not None else None,
        "received_at": receipt.received_at,
    }


async def _known_payment_key(conn: Connection, payment_key: str) -> bool:
    found = await conn.fetchval(
        "SELECT true FROM success_redirects WHERE payment_key = $1", payment_key
    )
    return bool(found)


async def _record_new(
    conn: Connection, redirect: SuccessRedirect, receipt: Receipt, event: PaymentAuthenticated
) -> Outcome:
    """A first redirect whose order was not placed when the fast path looked: announced if it
    is placed now, else held. Called with the order's turn taken."""
    placed = await conn.fetchval(
        "SELECT true FROM placed_orders WHERE order_id = $1", redirect.order_id
    )
    await sql.execute(
        conn,
        f"{_INSERT_SUCCESS} VALUES ({_SUCCESS_VALUES})",
        **_success_row(redirect, receipt, event if placed else None),
    )
    if not placed:
        log.info("success redirect for an order not placed (yet): held, not announced")
        return Outcome.HELD
    await outbox.enqueue(conn, event)
    return Outcome.FIRST


_RECORD_WEBHOOK = outbox.announcing(
    "INSERT INTO webhooks (transmission_id, event_type, payment_key, order_id, retried_count,"
    " event_id) VALUES (:transmission_id, :event_type, :payment_key, :order_id, :retried_count,"
    " :outbox_event_id) ON CONFLICT (transmission_id) DO NOTHING RETURNING 1"
)


async def record_webhook(pool: asyncpg.Pool, handoff: outbox.Handoff, notice: Notice) -> bool:
    """Record a webhook's transmission and announce it, atomically, unless it was received
    before; returns whether it was new."""
    event = outbox.Outgoing.of(notice.reported())
    async with pool.acquire() as conn:
        outbox_id = await sql.fetchval(
            conn,
            _RECORD_WEBHOOK,
            transmission_id=notice.transmission_id,
            event_type=notice.event_type,
            payment_key=notice.payment_key,
            order_id=notice.order_id,
            retried_count=notice.retried_count,
            **event.parameters,
        )
    if outbox_id is None:
        return False
    handoff.put(event.committed(outbox_id))
    return True


async def _record_known_payment_key(
    conn: Connection, redirect: SuccessRedirect, receipt: Receipt
) -> Outcome:
    row = await conn.fetchrow(
        "SELECT payment_key, order_id, amount, payment_type FROM success_redirects"
        " WHERE payment_key = $1 FOR UPDATE",
        redirect.payment_key,
    )
    assert row is not None  # it was found a moment ago, in this transaction's turn
    if SuccessRedirect(**dict(row)) == redirect:
        await conn.execute(
            "UPDATE success_redirects SET repeat_count = repeat_count + 1, last_seen_at = $2"
            " WHERE payment_key = $1",
            redirect.payment_key,
            receipt.received_at,
        )
        return Outcome.REPEAT
    await _record_conflict(conn, redirect, receipt)
    return Outcome.CONFLICT


async def _record_conflict(conn: Connection, redirect: SuccessRedirect, receipt: Receipt) -> None:
    log.warning(
        "success redirect conflicts with the recorded one for its paymentKey",
        extra={"orderId": redirect.order_id, "clientIp": receipt.client_ip},
    )
    await conn.execute(
        "INSERT INTO conflicting_redirects (payment_key, order_id, amount, payment_type,"
        " client_ip, user_agent, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        redirect.payment_key,
        redirect.order_id,
        redirect.amount,
        redirect.payment_type,
        receipt.client_ip,
        receipt.user_agent,
        receipt.received_at,
    )


async def record_placed_order(pool: asyncpg.Pool, consumer: str, event: OrderPlaced) -> int:
    """Project an OrderPlaced (once, with its inbox claim) and announce the success redirects
    that were held waiting for it; returns how many."""
    announced = 0

    async def effect(conn: Connection) -> None:
        nonlocal announced
        await conn.execute(_ORDER_TURN, event.order_id)
        await conn.execute(
            "INSERT INTO placed_orders (order_id, amount, currency) VALUES ($1, $2, $3)"
            " ON CONFLICT (order_id) DO NOTHING",
            event.order_id,
            event.amount,
            event.currency,
        )
        announced = await _announce_held(conn, event.order_id)
        announced += await _announce_held_failures(conn, event.order_id)

    await inbox.apply_once(pool, consumer, event, effect)
    return announced


async def _announce_held(conn: Connection, order_id: str) -> int:
    rows = await conn.fetch(
        "SELECT payment_key, order_id, amount, payment_type, client_ip, user_agent, received_at"
        " FROM success_redirects WHERE order_id = $1 AND event_id IS NULL"
        " ORDER BY received_at FOR UPDATE",
        order_id,
    )
    for row in rows:
        redirect = SuccessRedirect(
            row["payment_key"], row["order_id"], row["amount"], row["payment_type"]
        )
        receipt = Receipt(row["received_at"], row["client_ip"], row["user_agent"])
        event = redirect.authenticated(receipt)
        await conn.execute(
            "UPDATE success_redirects SET event_id = $2 WHERE payment_key = $1",
            redirect.payment_key,
            event.event_id,
        )
        await outbox.enqueue(conn, event)
    return len(rows)


async def _announce_held_failures(conn: Connection, order_id: str) -> int:
    rows = await conn.fetch(
        "SELECT id, code, message FROM fail_redirects WHERE order_id = $1 AND event_id IS NULL"
        " ORDER BY received_at FOR UPDATE",
        order_id,
    )
    for row in rows:
        event = FailRedirect(row["code"], row["message"], order_id).authentication_failed()
        assert event is not None  # it names an order
        await conn.execute(
            "UPDATE fail_redirects SET event_id = $2 WHERE id = $1", row["id"], event.event_id
        )
        await outbox.enqueue(conn, event)
    return len(rows)


async def record_failure(pool: asyncpg.Pool, redirect: FailRedirect, receipt: Receipt) -> Outcome:
    """Record a fail redirect once per (orderId, code, message); announce it if its order was
    placed, else hold it as a success redirect is held (one naming an order never placed tells
    nobody anything)."""
    async with pool.acquire() as conn, conn.transaction():
        placed = False
        if redirect.order_id is not None:
            await conn.execute(_ORDER_TURN, redirect.order_id)
            placed = bool(
                await conn.fetchval(
                    "SELECT true FROM placed_orders WHERE order_id = $1", redirect.order_id
                )
            )
        event = redirect.authentication_failed() if placed else None
        inserted = await conn.fetchval(
            "INSERT INTO fail_redirects (order_id, code, message, client_ip, user_agent,"
            " event_id, received_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"
            " ON CONFLICT ON CONSTRAINT fail_redirects_once DO NOTHING RETURNING true",
            redirect.order_id,
            redirect.code,
            redirect.message,
            receipt.client_ip,
            receipt.user_agent,
            event.event_id if event is not None else None,
            receipt.received_at,
        )
        if not inserted:
            await conn.execute(
                "UPDATE fail_redirects SET repeat_count = repeat_count + 1, last_seen_at = $4"
                " WHERE order_id IS NOT DISTINCT FROM $1 AND code = $2 AND message = $3",
                redirect.order_id,
                redirect.code,
                redirect.message,
                receipt.received_at,
            )
            return Outcome.REPEAT
        if event is not None:
            await outbox.enqueue(conn, event)
            return Outcome.FIRST
        return Outcome.HELD if redirect.order_id is not None else Outcome.FIRST


async def is_ready(pool: asyncpg.Pool) -> bool:
    """Whether the database answers (for the health check)."""
    try:
        return bool(await pool.fetchval("SELECT true"))
    except (OSError, asyncpg.PostgresError):
        return False


async def conflicts(conn: Connection, since: datetime | None, limit: int) -> list[Conflict]:
    """Conflicting redirects, latest first, beside the redirect first recorded for their key."""
    rows = await conn.fetch(
        "SELECT c.received_at, c.payment_key, c.order_id, c.amount, c.payment_type,"
        " c.client_ip, c.user_agent, s.order_id AS recorded_order_id,"
        " s.amount AS recorded_amount, s.payment_type AS recorded_payment_type"
        " FROM conflicting_redirects c JOIN success_redirects s USING (payment_key)"
        " WHERE $1::timestamptz IS NULL OR c.received_at >= $1"
        " ORDER BY c.received_at DESC, c.id DESC LIMIT $2",
        since,
        limit,
    )
    return [
        Conflict(
            received_at=row["received_at"],
            payment_key=row["payment_key"],
            recorded=SuccessRedirect(
                row["payment_key"],
                row["recorded_order_id"],
                row["recorded_amount"],
                row["recorded_payment_type"],
            ),
            presented=SuccessRedirect(
                row["payment_key"], row["order_id"], row["amount"], row["payment_type"]
            ),
            client_ip=row["client_ip"],
            user_agent=row["user_agent"],
        )
        for row in rows
    ]
