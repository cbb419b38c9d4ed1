"""The edge between RabbitMQ and the use cases: one handler per subscription, and one table that
says what each exception means for the message (dead-letter, wait, or the default of
``shared.messaging.disposition``: an outage waits, anything else is retried, counted)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import asyncpg

from services.approval.domain import IllegalTransition, UnexpectedEvent
from services.approval.failpoints import DISARMED, Failpoints, Point
from services.approval.pg_sync import PgSync
from services.approval.refunds import Refunds
from services.approval.service import Payments
from shared import messaging
from shared.batching import Batcher
from shared.events import (
    Event,
    OrderCanceled,
    OrderExpired,
    OrderPlaced,
    PaymentAuthenticated,
    PgReported,
    RefundRequested,
)
from shared.messaging import Disposition, Handler, PermanentFailure, Transient
from shared.topology import (
    APPROVAL_ORDER_INTENTS,
    APPROVAL_PAYMENTS,
    APPROVAL_PG_REPORTS,
    APPROVAL_REFUNDS,
)

log = logging.getLogger(__name__)


# First match wins; anything not listed takes shared.messaging's default.
DISPOSITIONS: tuple[tuple[type[BaseException], Disposition], ...] = (
    (UnexpectedEvent, Disposition.DEAD_LETTER),
    # A value PostgreSQL cannot store (an amount beyond bigint, …): it will never fit.
    (asyncpg.DataError, Disposition.DEAD_LETTER),
    # The row moved under us: trying again reads it again.
    (IllegalTransition, Disposition.WAIT),
)


def disposition(exc: BaseException) -> Disposition:
    for kind, outcome in DISPOSITIONS:
        if isinstance(exc, kind):
            return outcome
    return messaging.disposition(exc)


def translated(handler: Handler, failpoint: Failpoints = DISARMED) -> Handler:
    """``handler`` with its exceptions mapped through :data:`DISPOSITIONS`."""

    async def handle(event: Event) -> None:
        try:
            await handler(event)
            failpoint(Point.BEFORE_ACK)
        except Exception as exc:
            outcome = disposition(exc)
            if outcome is Disposition.DEAD_LETTER:
                raise PermanentFailure(f"{type(exc).__name__}: {exc}") from exc
            if outcome is Disposition.WAIT:
                raise Transient(f"{type(exc).__name__}: {exc}") from exc
            raise

    return handle


Spawn = Callable[[Awaitable[object]], None]


class Handlers:
    """Turns each wire event into a use-case call."""

    def __init__(
        self,
        payments: Payments,
        refunds: Refunds,
        sync: PgSync,
        spawn: Spawn,
        failpoints: Failpoints = DISARMED,
    ) -> None:
        self._payments = payments
        # Orders placed while one is projected are projected together (two batches at once).
        self._placed: Batcher[OrderPlaced, list[str]] = Batcher(
            APPROVAL_ORDER_INTENTS.name, payments.on_orders_placed, concurrency=2
        )
        self._refunds = refunds
        self._sync = sync
        self._spawn = spawn
        self._failpoints = failpoints

    async def order_intents(self, event: Event) -> None:
        if isinstance(event, OrderPlaced):
            waiting = await self._placed.submit(event)
            for payment_key in waiting:  # their order is known now: verify and drive them
                self._spawn(self._payments.drive(payment_key))
        elif isinstance(event, OrderExpired | OrderCanceled):
            await self._payments.on_order_ended(event)
        else:
            raise UnexpectedEvent(f"{event.type} on {APPROVAL_ORDER_INTENTS.name}")

    async def payments(self, event: Event) -> None:
        if not isinstance(event, PaymentAuthenticated):
            raise UnexpectedEvent(f"{event.type} on {APPROVAL_PAYMENTS.name}")
        await self._payments.on_authenticated(event)

    async def refunds(self, event: Event) -> None:
        if not isinstance(event, RefundRequested):
            raise UnexpectedEvent(f"{event.type} on {APPROVAL_REFUNDS.name}")
        await self._refunds.on_refund_requested(event)

    async def pg_reports(self, event: Event) -> None:
        if not isinstance(event, PgReported):
            raise UnexpectedEvent(f"{event.type} on {APPROVAL_PG_REPORTS.name}")
        await self._sync.on_reported(event)

    def table(self) -> list[tuple[str, Handler]]:
        """(subscription, handler) pairs for the consumers."""
        return [
            (APPROVAL_ORDER_INTENTS.name, translated(self.order_intents, self._failpoints)),
            (APPROVAL_PAYMENTS.name, translated(self.payments, self._failpoints)),
            (APPROVAL_REFUNDS.name, translated(self.refunds, self._failpoints)),
            (APPROVAL_PG_REPORTS.name, translated(self.pg_reports, self._failpoints)),
        ]
