"""Checkout's use cases: each redirect and webhook is recorded once and announced in the same
commit; a redirect whose order was not placed (yet) is held until its OrderPlaced arrives, which
for a made-up orderId is never."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg

from services.checkout import repository
from services.checkout.domain import FailRedirect, Outcome, Receipt, SuccessRedirect
from services.checkout.webhook import Notice
from shared import inbox, outbox
from shared.db import Connection
from shared.events import OrderPlaced

log = logging.getLogger(__name__)


async def record_success(
    pool: asyncpg.Pool, handoff: outbox.Handoff, redirect: SuccessRedirect, receipt: Receipt
) -> Outcome:
    """Record a success redirect once per paymentKey and announce it if its order was placed
    (its event goes to ``handoff`` for the relay to publish at once), else hold it.

    One statement records and announces a first redirect for a placed order. Anything else
    takes the order's turn and tries that statement again (the order may have been placed
    meanwhile) before it records a repeat, a conflict, or a redirect held for its order. A
    concurrent duplicate waits on the primary key until the first insert commits, then finds
    that row: so however many redirects race, exactly one event is enqueued.
    """
    event = outbox.Outgoing.of(redirect.authenticated(receipt))
    async with pool.acquire() as conn:
        outbox_id = await repository.insert_first_success(conn, redirect, receipt, event)
        if outbox_id is None:
            async with conn.transaction():
                await repository.take_order_turn(conn, redirect.order_id)
                outbox_id = await repository.insert_first_success(conn, redirect, receipt, event)
                if outbox_id is None:
                    return await _record_unannounced(conn, redirect, receipt)
    handoff.put(event.committed(outbox_id))  # committed: the relay may publish it
    return Outcome.FIRST


async def _record_unannounced(
    conn: Connection, redirect: SuccessRedirect, receipt: Receipt
) -> Outcome:
    """A redirect that is not a first one for a placed order: a repeat, a conflict with the
    one recorded for its paymentKey, or a first one held until its order is placed. Called
    with the order's turn taken."""
    recorded = await repository.lock_success(conn, redirect.payment_key)
    if recorded is None:
        await repository.insert_held_success(conn, redirect, receipt)
        log.info("success redirect for an order not placed (yet): held, not announced")
        return Outcome.HELD
    if recorded == redirect:
        await repository.count_repeated_success(conn, redirect.payment_key, receipt)
        return Outcome.REPEAT
    log.warning(
        "success redirect conflicts with the recorded one for its paymentKey",
        extra={"orderId": redirect.order_id, "clientIp": receipt.client_ip},
    )
    await repository.insert_conflict(conn, redirect, receipt)
    return Outcome.CONFLICT


async def record_webhook(pool: asyncpg.Pool, handoff: outbox.Handoff, notice: Notice) -> bool:
    """Record a webhook's transmission and announce it, atomically, unless it was received
    before; returns whether it was new."""
    event = outbox.Outgoing.of(notice.reported())
    async with pool.acquire() as conn:
        outbox_id = await repository.insert_webhook(conn, notice, event)
    if outbox_id is None:
        return False
    handoff.put(event.committed(outbox_id))
    return True


async def record_placed_orders(
    pool: asyncpg.Pool, consumer: str, events: Sequence[OrderPlaced]
) -> list[int]:
    """Project OrderPlaced events (each once, with its inbox claim, all in one statement) and
    announce the redirects that were held waiting for them; returns how many for each event.
    Under the orders' turns, the statement that places them also sees every redirect held
    before it: a redirect holding a turn commits first."""
    async with pool.acquire() as conn, conn.transaction():
        await repository.take_order_turns(conn, [event.order_id for event in events])
        placed = await repository.claim_and_place_orders(conn, consumer, events)
        return [
            await _announce_held(conn, consumer, e, p) for e, p in zip(events, placed, strict=True)
        ]


async def _announce_held(
    conn: Connection, consumer: str, event: OrderPlaced, placed: repository.Placed
) -> int:
    if placed is repository.Placed.DUPLICATE:
        inbox.dropped(consumer)
    if placed is not repository.Placed.WITH_HELD_REDIRECTS:
        return 0
    announced = await _announce_held_successes(conn, event.order_id)
    return announced + await _announce_held_failures(conn, event.order_id)


async def _announce_held_successes(conn: Connection, order_id: str) -> int:
    held = await repository.lock_held_successes(conn, order_id)
    for redirect, receipt in held:
        event = redirect.authenticated(receipt)
        await repository.set_success_event(conn, redirect.payment_key, event.event_id)
        await outbox.enqueue(conn, event)
    return len(held)


async def _announce_held_failures(conn: Connection, order_id: str) -> int:
    held = await repository.lock_held_failures(conn, order_id)
    for failure_id, redirect in held:
        event = redirect.authentication_failed()
        assert event is not None  # it names an order
        await repository.set_failure_event(conn, failure_id, event.event_id)
        await outbox.enqueue(conn, event)
    return len(held)


async def record_failure(pool: asyncpg.Pool, redirect: FailRedirect, receipt: Receipt) -> Outcome:
    """Record a fail redirect once per (orderId, code, message); announce it if its order was
    placed, else hold it as a success redirect is held (one naming an order never placed tells
    nobody anything)."""
    async with pool.acquire() as conn, conn.transaction():
        placed = False
        if redirect.order_id is not None:
            await repository.take_order_turn(conn, redirect.order_id)
            placed = await repository.is_placed(conn, redirect.order_id)
        event = redirect.authentication_failed() if placed else None
        event_id = event.event_id if event is not None else None
        if not await repository.insert_failure(conn, redirect, receipt, event_id):
            await repository.count_repeated_failure(conn, redirect, receipt)
            return Outcome.REPEAT
        if event is not None:
            await outbox.enqueue(conn, event)
            return Outcome.FIRST
        return Outcome.HELD if redirect.order_id is not None else Outcome.FIRST
