"""Consumer of ``order.payment-results``: each event becomes one call, applied once via the inbox.

What happens to a message (the ack / dead-letter / retry table):
- handled, a duplicate, or about an unknown order (browser data can name anything): ack;
- an approved payment for an order we never had, or a nonsensical amount: ``PermanentFailure``
  (dead-lettered with the reason: money moved and a person must look);
- anything else raised (database down, …): retried by :mod:`shared.messaging`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.order import service
from services.order.domain import ApprovalDecision, Failure, Hold, Order
from services.order.metrics import PAYMENT_EVENTS
from shared.batching import Batcher
from shared.db import Connection
from shared.events import (
    Event,
    PaymentApproved,
    PaymentAuthenticated,
    PaymentAuthenticationFailed,
    PaymentRefunded,
    PaymentRejected,
    RefundFailed,
)
from shared.inbox import apply_once
from shared.messaging import Handler, PermanentFailure
from shared.topology import ORDER_PAYMENT_RESULTS

log = logging.getLogger(__name__)

CONSUMER = ORDER_PAYMENT_RESULTS.name


def _now() -> datetime:
    return datetime.now(UTC)


# --- events about one order: see service.apply_once_to_orders ----------------------------------

# An attempt's news: shown on a payable order, never more.
PaymentNews = PaymentAuthenticated | PaymentAuthenticationFailed | PaymentRejected


def _news_plan(event: PaymentNews) -> service.Plan:
    if isinstance(event, PaymentAuthenticated):
        return lambda order: service.authenticated(order, event.occurred_at, event.payment_key)
    if isinstance(event, PaymentRejected):
        # The buyer sees the PG's own code for a PG's decline, ours for a refusal of ours.
        rejection = Failure(event.pg_code or event.reason, event.message, event.pg_code)
        return lambda order: service.payment_failed(
            order, rejection, event.occurred_at, event.payment_key
        )
    failure = Failure(event.code, event.message)
    return lambda order: service.payment_failed(order, failure, event.occurred_at)


def _hold(event: PaymentNews | PaymentApproved) -> Hold | None:
    """An authentication opens its payment's hold on the order; its outcome settles it."""
    if isinstance(event, PaymentAuthenticated):
        return Hold(event.payment_key, settled=False)
    if isinstance(event, PaymentRejected | PaymentApproved):
        return Hold(event.payment_key, settled=True)
    return None


# Applies one event about an order, in a batch with the others that arrive meanwhile.
ApplyToOrder = Callable[[service.OrderEvent], Awaitable[bool]]


async def apply_news(apply: ApplyToOrder, event: PaymentNews) -> bool:
    async def unknown_order(conn: Connection, order: Order | None) -> None:
        # Browser-supplied data can name any order: nothing to do, nothing to retry.
        log.warning("payment result for an unknown order", extra={"order_id": event.order_id[:100]})

    plan = _news_plan(event)
    return await apply(
        service.OrderEvent(event.event_id, event.order_id, plan, unknown_order, _hold(event))
    )


async def apply_approval(apply: ApplyToOrder, event: PaymentApproved) -> bool:
    """The order takes the money, has it already, or asks for it back."""
    if event.amount <= 0:
        raise PermanentFailure(f"approved amount {event.amount} for {event.order_id}")
    approved = service.ApprovedPayment(
        order_id=event.order_id,
        payment_key=event.payment_key,
        amount=event.amount,
        method=event.method,
        approved_at=event.approved_at,
        event_id=event.event_id,
        occurred_at=event.occurred_at,
    )
    decisions: list[ApprovalDecision] = []

    def plan(order: Order) -> service.NewState | None:
        decision, state = service.approval(order, approved)
        decisions.append(decision)
        return state

    async def refund(conn: Connection, order: Order | None) -> None:
        if order is None:
            raise PermanentFailure(f"Approved payment for unknown order {event.order_id}.")
        await service.refund_unwanted_payment(conn, order, approved, _now())

    applied = await apply(
        service.OrderEvent(event.event_id, event.order_id, plan, refund, _hold(event))
    )
    if applied:
        log.info(
            "payment approved", extra={"order_id": event.order_id, "decision": decisions[-1].value}
        )
    return applied


# --- refund results: located by refund id ------------------------------------------------------


async def on_refunded(conn: Connection, event: PaymentRefunded) -> None:
    news = service.RefundNews(
        refund_id=event.refund_id,
        order_id=event.order_id,
        payment_key=event.payment_key,
        refunded_amount=event.refunded_amount,
        balance_amount=event.balance_amount,
        reason=event.reason,
    )
    await service.record_refund(conn, news, now=_now())


async def on_refund_failed(conn: Connection, event: RefundFailed) -> None:
    failure = Failure(event.code, event.message)
    await service.record_refund_failure(conn, event.refund_id, failure, _now())


Effect = Callable[[Connection, Any], Awaitable[None]]

REFUND_HANDLERS: dict[type[Event], Effect] = {
    PaymentRefunded: on_refunded,
    RefundFailed: on_refund_failed,
}


async def apply_refund_event(pool: asyncpg.Pool, event: Event) -> bool:
    """Apply the event once; returns False for a duplicate."""
    effect = REFUND_HANDLERS[type(event)]

    async def apply(conn: Connection) -> None:
        await effect(conn, event)

    return await apply_once(pool, CONSUMER, event, apply)


def handler(pool: asyncpg.Pool) -> Handler:
    """The queue's handler: the event's effect and its inbox record commit together. Events
    about orders that arrive while others are being applied are applied with them."""

    async def apply_batch(events: Sequence[service.OrderEvent]) -> list[bool | Exception]:
        return await service.apply_once_to_orders(pool, CONSUMER, events)

    # Two at once: one batch's statements in PostgreSQL while the next one's are prepared.
    orders: Batcher[service.OrderEvent, bool] = Batcher(CONSUMER, apply_batch, concurrency=2)

    async def handle(event: Event) -> None:
        if isinstance(event, PaymentApproved):
            applied = await apply_approval(orders.submit, event)
        elif isinstance(event, PaymentNews):
            applied = await apply_news(orders.submit, event)
        elif type(event) in REFUND_HANDLERS:
            applied = await apply_refund_event(pool, event)
        else:
            log.warning(
                "ignoring an event this consumer does not handle", extra={"type": event.type}
            )
            return
        if not applied:
            log.info("duplicate event ignored", extra={"event_id": str(event.event_id)})
            return
        PAYMENT_EVENTS.labels(type(event).__name__).inc()

    return handle
