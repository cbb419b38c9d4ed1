"""Checkout's tables, in plain SQL: received redirects and webhooks, the placed orders it knows.

Functions whose name starts with ``lock_`` take row locks and must run inside a transaction.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from services.checkout.domain import Conflict, FailRedirect, Receipt, SuccessRedirect
from services.checkout.webhook import Notice
from shared import inbox, outbox, sql
from shared.db import Connection
from shared.events import OrderPlaced

_INSERT_SUCCESS = (
    "INSERT INTO success_redirects (payment_key, order_id, amount, payment_type,"
    " client_ip, user_agent, event_id, received_at, last_seen_at)"
)
_SUCCESS_VALUES = (
    ":payment_key, :order_id, :amount, :payment_type, :client_ip, :user_agent, :event_id,"
    " :received_at, :received_at"
)
_INSERT_FIRST_SUCCESS = outbox.announcing(
    f"{_INSERT_SUCCESS} SELECT {_SUCCESS_VALUES}"
    " WHERE EXISTS (SELECT 1 FROM placed_orders WHERE order_id = :order_id)"
    " ON CONFLICT (payment_key) DO NOTHING RETURNING 1"
)


def _success_row(
    redirect: SuccessRedirect, receipt: Receipt, event_id: uuid.UUID | None
) -> dict[str, object]:
    return {
        "payment_key": redirect.payment_key,
        "order_id": redirect.order_id,
        "amount": redirect.amount,
        "payment_type": redirect.payment_type,
        "client_ip": receipt.client_ip,
        "user_agent": receipt.user_agent,
        "event_id": event_id,
        "received_at": receipt.received_at,
    }


async def insert_first_success(
    conn: Connection, redirect: SuccessRedirect, receipt: Receipt, event: outbox.Outgoing
) -> int | None:
    """In one statement: a first redirect for a placed order, recorded with its event in the
    outbox; returns the outbox row's id, or None (nothing written) for any other redirect."""
    outbox_id: int | None = await sql.fetchval(
        conn,
        _INSERT_FIRST_SUCCESS,
        **_success_row(redirect, receipt, event.event_id),
        **event.parameters,
    )
    return outbox_id


async def insert_held_success(
    conn: Connection, redirect: SuccessRedirect, receipt: Receipt
) -> None:
    """A first redirect for an order not placed (yet): recorded without an event, held until
    the order's OrderPlaced announces it."""
    await sql.execute(
        conn,
        f"{_INSERT_SUCCESS} VALUES ({_SUCCESS_VALUES})",
        **_success_row(redirect, receipt, None),
    )


_TURN = "pg_advisory_xact_lock(7301, hashtext({}))"


async def take_order_turn(conn: Connection, order_id: str) -> None:
    """Redirects and the OrderPlaced of one order take turns, so that a redirect either sees its
    order placed or is announced by it: a transaction's advisory lock on the orderId, in a
    namespace of its own (the first key)."""
    await conn.execute(f"SELECT {_TURN.format('$1')}", order_id)


async def take_order_turns(conn: Connection, order_ids: Sequence[str]) -> None:
    """:func:`take_order_turn` for each order, in one order every caller agrees on (two
    batches taking some of the same turns cannot deadlock)."""
    await conn.execute(
        f"SELECT {_TURN.format('id')} FROM unnest($1::text[]) AS id ORDER BY hashtext(id), id",
        order_ids,
    )


async def is_placed(conn: Connection, order_id: str) -> bool:
    found = await conn.fetchval("SELECT true FROM placed_orders WHERE order_id = $1", order_id)
    return bool(found)


async def lock_success(conn: Connection, payment_key: str) -> SuccessRedirect | None:
    """The redirect recorded first for ``payment_key``, if any."""
    row = await conn.fetchrow(
        "SELECT payment_key, order_id, amount, payment_type FROM success_redirects"
        " WHERE payment_key = $1 FOR UPDATE",
        payment_key,
    )
    return None if row is None else SuccessRedirect(**dict(row))


async def count_repeated_success(conn: Connection, payment_key: str, receipt: Receipt) -> None:
    await conn.execute(
        "UPDATE success_redirects SET repeat_count = repeat_count + 1, last_seen_at = $2"
        " WHERE payment_key = $1",
        payment_key,
        receipt.received_at,
    )


async def insert_conflict(conn: Connection, redirect: SuccessRedirect, receipt: Receipt) -> None:
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


_INSERT_WEBHOOK = outbox.announcing(
    "INSERT INTO webhooks (transmission_id, event_type, payment_key, order_id, retried_count,"
    " event_id) VALUES (:transmission_id, :event_type, :payment_key, :order_id, :retried_count,"
    " :outbox_event_id) ON CONFLICT (transmission_id) DO NOTHING RETURNING 1"
)


async def insert_webhook(conn: Connection, notice: Notice, event: outbox.Outgoing) -> int | None:
    """A webhook's transmission with its event in the outbox, in one statement; returns the
    outbox row's id, or None for a transmission received before (nothing written)."""
    outbox_id: int | None = await sql.fetchval(
        conn,
        _INSERT_WEBHOOK,
        transmission_id=notice.transmission_id,
        event_type=notice.event_type,
        payment_key=notice.payment_key,
        order_id=notice.order_id,
        retried_count=notice.retried_count,
        **event.parameters,
    )
    return outbox_id


class Placed(enum.Enum):
    DUPLICATE = "DUPLICATE"  # the consumer had claimed this OrderPlaced already
    ALONE = "ALONE"
    WITH_HELD_REDIRECTS = "WITH_HELD_REDIRECTS"  # redirects wait for it to be announced


_PLACED_COLUMNS = {"event_id": "uuid", "order_id": "text", "amount": "bigint", "currency": "text"}
_CLAIM_AND_PLACE = f"""
WITH {inbox.claim_events(_PLACED_COLUMNS)}, placed AS (
    INSERT INTO placed_orders (order_id, amount, currency)
    SELECT f.order_id, f.amount, f.currency FROM firsts f JOIN claim USING (event_id)
    ON CONFLICT (order_id) DO NOTHING
)
SELECT {inbox.CLAIMED} AS claimed,
       EXISTS (SELECT FROM success_redirects WHERE order_id = e.order_id AND event_id IS NULL)
       OR EXISTS (SELECT FROM fail_redirects WHERE order_id = e.order_id AND event_id IS NULL)
       AS held
FROM events e ORDER BY e.n
"""


async def claim_and_place_orders(
    conn: Connection, consumer: str, events: Sequence[OrderPlaced]
) -> list[Placed]:
    """In one statement, for each OrderPlaced: claim it in the inbox, add its order to the
    placed ones and say whether redirects are held for it (nothing written for a duplicate).
    Call it with the orders' turns taken, so that no redirect can be held for them unseen."""
    rows = await sql.fetch(
        conn,
        _CLAIM_AND_PLACE,
        inbox_consumer=consumer,
        **inbox.event_arrays(events, _PLACED_COLUMNS),
    )
    return [_placed(row) for row in rows]


def _placed(row: asyncpg.Record) -> Placed:
    if not row["claimed"]:
        return Placed.DUPLICATE
    return Placed.WITH_HELD_REDIRECTS if row["held"] else Placed.ALONE


async def lock_held_successes(
    conn: Connection, order_id: str
) -> list[tuple[SuccessRedirect, Receipt]]:
    """The order's success redirects not announced yet, first received first."""
    rows = await conn.fetch(
        "SELECT payment_key, order_id, amount, payment_type, client_ip, user_agent, received_at"
        " FROM success_redirects WHERE order_id = $1 AND event_id IS NULL"
        " ORDER BY received_at FOR UPDATE",
        order_id,
    )
    return [
        (
            SuccessRedirect(
                row["payment_key"], row["order_id"], row["amount"], row["payment_type"]
            ),
            Receipt(row["received_at"], row["client_ip"], row["user_agent"]),
        )
        for row in rows
    ]


async def set_success_event(conn: Connection, payment_key: str, event_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE success_redirects SET event_id = $2 WHERE payment_key = $1", payment_key, event_id
    )


async def lock_held_failures(conn: Connection, order_id: str) -> list[tuple[int, FailRedirect]]:
    """The order's fail redirects not announced yet (with their row ids), first received first."""
    rows = await conn.fetch(
        "SELECT id, code, message FROM fail_redirects WHERE order_id = $1 AND event_id IS NULL"
        " ORDER BY received_at FOR UPDATE",
        order_id,
    )
    return [(row["id"], FailRedirect(row["code"], row["message"], order_id)) for row in rows]


async def set_failure_event(conn: Connection, failure_id: int, event_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE fail_redirects SET event_id = $2 WHERE id = $1", failure_id, event_id
    )


async def insert_failure(
    conn: Connection, redirect: FailRedirect, receipt: Receipt, event_id: uuid.UUID | None
) -> bool:
    """A fail redirect not seen before (per orderId, code and message); False if it was."""
    inserted = await conn.fetchval(
        "INSERT INTO fail_redirects (order_id, code, message, client_ip, user_agent,"
        " event_id, received_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"
        " ON CONFLICT ON CONSTRAINT fail_redirects_once DO NOTHING RETURNING true",
        redirect.order_id,
        redirect.code,
        redirect.message,
        receipt.client_ip,
        receipt.user_agent,
        event_id,
        receipt.received_at,
    )
    return bool(inserted)


async def count_repeated_failure(
    conn: Connection, redirect: FailRedirect, receipt: Receipt
) -> None:
    await conn.execute(
        "UPDATE fail_redirects SET repeat_count = repeat_count + 1, last_seen_at = $4"
        " WHERE order_id IS NOT DISTINCT FROM $1 AND code = $2 AND message = $3",
        redirect.order_id,
        redirect.code,
        redirect.message,
        receipt.received_at,
    )


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
