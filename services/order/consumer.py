"""Consumer of ``order.payment-results``: each event becomes one call, applied once via the inbox.

What happens to a message (the ack / dead-letter / retry table):
- handled, a duplicate, or about an unknown order (browser data can name anything): ack;
- an approved payment for an order we never had, or a nonsensical amount: ``PermanentFailure``
  (dead-lettered with the reason: money moved and a person must look);
- anything else raised (database down, …): retried by :mod:`shared.messaging`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.order import service
from services.order.domain import Failure, OrderNotFound
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


async def on_authenticated(conn: Connection, event: PaymentAuthenticated) -> None:
    await service.record_authenticated(
        conn, event.order_id, event.occurred_at, payment_key=event.payment_key
    )


async def on_authentication_failed(conn: Connection, event: PaymentAuthenticationFailed) -> None:
    failure = Failure(event.code, event.message)
    await service.record_payment_failure(conn, event.order_id, failure, event.occurred_at)


async def on_rejected(conn: Connection, event: PaymentRejected) -> None:
    failure = Failure(event.reason, event.message, event.pg_code)
    await service.record_payment_failure(
        conn, event.order_id, failure, event.occurred_at, payment_key=event.payment_key
    )


async def on_approved(conn: Connection, event: PaymentApproved) -> None:
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
    try:
        decision = await service.record_approval(conn, approved, _now())
    except OrderNotFound as exc:
        raise PermanentFailure(str(exc)) from exc
    log.info("payment approved", extra={"order_id": event.order_id, "decision": decision.value})


async def on_refunded(conn: Connection, event: PaymentRefunded) -> None:
    await service.record_refund(
        conn, event.refund_id, event.refunded_amount, fully=event.fully_refunded, now=_now()
    )


async def on_refund_failed(conn: Connection, event: RefundFailed) -> None:
    failure = Failure(event.code, event.message)
    await service.record_refund_failure(conn, event.refund_id, failure, _now())


Effect = Callable[[Connection, Any], Awaitable[None]]

HANDLERS: dict[type[Event], Effect] = {
    PaymentAuthenticated: on_authenticated,
    PaymentAuthenticationFailed: on_authentication_failed,
    PaymentRejected: on_rejected,
    PaymentApproved: on_approved,
    PaymentRefunded: on_refunded,
    RefundFailed: on_refund_failed,
}


def handler(pool: asyncpg.Pool) -> Handler:
    """The queue's handler: the event's effect and its inbox record commit together."""

    async def handle(event: Event) -> None:
        effect = HANDLERS.get(type(event))
        if effect is None:
            log.warning(
                "ignoring an event this consumer does not handle", extra={"type": event.type}
            )
            return

        async def apply(conn: Connection) -> None:
            await effect(conn, event)

        if not await apply_once(pool, CONSUMER, event, apply):
            log.info("duplicate event ignored", extra={"event_id": str(event.event_id)})

    return handle
