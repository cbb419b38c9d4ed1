"""Inbox: consumers handle each ``eventId`` once, in the same transaction as their effect."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping

import asyncpg

from shared import sql
from shared.db import Connection
from shared.events import Event
from shared.metrics import INBOX_DUPLICATES


async def claim(conn: Connection, consumer: str, event_id: uuid.UUID) -> bool:
    """True the first time ``consumer`` sees ``event_id`` (inside the caller's transaction).

    A concurrent duplicate blocks on the primary key until the first transaction ends, then
    gets False if that one committed.
    """
    inserted = await conn.fetchval(
        "INSERT INTO inbox (consumer, event_id) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING RETURNING true",
        consumer,
        event_id,
    )
    if not inserted:
        INBOX_DUPLICATES.labels(consumer).inc()
    return bool(inserted)


# A FROM item of one row: the claim of an event that needs no row of the caller's first.
ALONE = "(SELECT) AS one"


def claim_from(source: str = ALONE) -> str:
    """A common table expression, ``claim``, that records the event ``:inbox_event_id`` as
    handled by the consumer ``:inbox_consumer`` (named parameters: see :mod:`shared.sql`) for
    the row of the FROM item ``source`` (no row: no claim; by default :data:`ALONE`, one row),
    and returns a row only the first
    time: :func:`claim` inside a statement that also makes the event's effect, so that both
    commit together without a transaction. The caller counts a duplicate it finds this way
    with :func:`dropped`."""
    return (
        "claim AS (INSERT INTO inbox (consumer, event_id)"
        f" SELECT :inbox_consumer::text, :inbox_event_id::uuid FROM {source}"
        " ON CONFLICT DO NOTHING RETURNING true)"
    )


def claim_each(source: str) -> str:
    """:func:`claim_from` for many events in one statement: a common table expression,
    ``claim``, that records as handled by the consumer ``:inbox_consumer`` each event of the
    column ``event_id`` of the FROM item ``source``, and returns the ``event_id`` of each one
    claimed only now (one claimed before is a duplicate: count it with :func:`dropped`)."""
    return (
        "claim AS (INSERT INTO inbox (consumer, event_id)"
        f" SELECT :inbox_consumer::text, event_id FROM {source}"
        " ON CONFLICT DO NOTHING RETURNING event_id)"
    )


def claim_events(columns: Mapping[str, str]) -> str:
    """The common table expressions that start a statement about a batch of events: ``events``
    (alias ``e``: one row per event, from array parameters named after ``columns``, which
    include ``event_id``; see :func:`shared.sql.rows_from` and :func:`event_arrays`),
    ``firsts`` (each event's first row: a copy of an event in the same batch is claimed once)
    and ``claim`` (:func:`claim_each` of the firsts). :data:`CLAIMED` says, for a row ``e`` of
    ``events``, whether it was claimed now."""
    return (
        f"events AS (SELECT * FROM {sql.rows_from(columns, 'e')}),"
        " firsts AS (SELECT DISTINCT ON (event_id) * FROM events ORDER BY event_id, n),"
        f" {claim_each('firsts')}"
    )


CLAIMED = "e.n IN (SELECT n FROM firsts JOIN claim USING (event_id))"


def event_arrays(events: Iterable[Event], columns: Mapping[str, str]) -> dict[str, list[object]]:
    """The array parameters of :func:`claim_events`: each column is the events' attribute of
    that name (``event_id``, ``order_id``, …)."""
    rows = ({name: getattr(event, name) for name in columns} for event in events)
    return sql.arrays(rows, columns)


def claim_parameters(consumer: str, event_id: uuid.UUID) -> dict[str, object]:
    """The named parameters of :func:`claim_from`."""
    return {"inbox_consumer": consumer, "inbox_event_id": event_id}


Effect = Callable[[Connection], Awaitable[None]]


async def apply_once(pool: asyncpg.Pool, consumer: str, event: Event, effect: Effect) -> bool:
    """Run ``effect`` and record the event as handled, atomically; skip it if already handled.

    Returns whether the effect ran.
    """
    async with pool.acquire() as conn:
        return await apply_once_on(conn, consumer, event.event_id, effect)


async def apply_once_on(
    conn: Connection, consumer: str, event_id: uuid.UUID, effect: Effect
) -> bool:
    """:func:`apply_once` on a connection the caller holds."""
    async with conn.transaction():
        if not await claim(conn, consumer, event_id):
            return False
        await effect(conn)
        return True


def dropped(consumer: str) -> None:
    """Count a duplicate that a one-statement claim (:func:`claim_from`) found."""
    INBOX_DUPLICATES.labels(consumer).inc()
