"""The PG's record of a payment, applied to our books: the one path for webhooks and for daily
reconciliation (and for nothing else that learns of a payment without having asked for it).

Nothing a webhook says is believed: the payment is fetched from the PG with the secret key, and
only that answer changes anything. Applying it follows the same rules as our own flow:

- an approval outranks any record of ours (``Payments.apply_pg_record``); one we never saw at
  all, for an order we have, is recorded as an attempt and announced, so that the order takes
  the money or refunds it; one for an order we never had is left for a person (no clear rule);
- ABORTED or EXPIRED settles an attempt that was waiting on the PG's word;
- a refund of ours the PG shows done is recorded; a cancel the PG made without our asking (the
  merchant console) is recorded once, by its transaction key, and announced: the order follows
  the PG's balance, with points back in proportion.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import asyncpg

from services.approval import repository as repo
from services.approval.domain import AttemptState, PgCancel, PgPayment, refund_id_in
from services.approval.pg_client import Found, NotFound, PaymentGateway
from services.approval.refunds import Refunds
from services.approval.service import Payments
from shared import outbox
from shared.db import Connection
from shared.events import PaymentRefunded, PgReported
from shared.messaging import Transient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Synced:
    """What applying the PG's record did."""

    attempt: AttemptState | None  # the attempt's state after it (None: no attempt of ours)
    unmatched: bool = False  # the PG approved money for an order we never had: a person looks
    refunds_settled: int = 0
    external_cancels: int = 0


class PgSync:
    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: PaymentGateway,
        payments: Payments,
        refunds: Refunds,
        handoff: outbox.Handoff,
    ) -> None:
        self._pool = pool
        self._gateway = gateway
        self._payments = payments
        self._refunds = refunds
        self._handoff = handoff

    async def on_reported(self, event: PgReported) -> Synced | None:
        """A webhook named a payment: ask the PG about it, and apply its answer. None when the
        PG does not know the payment (a forged webhook): nothing changes."""
        if event.payment_key:
            lookup = await self._gateway.get_payment(event.payment_key)
        elif event.order_id:
            lookup = await self._gateway.get_payment_by_order(event.order_id)
        else:
            return None
        if isinstance(lookup, NotFound):
            log.warning(
                "a webhook about a payment the PG does not know; ignored",
                extra={"transmission_id": event.transmission_id[:80]},
            )
            return None
        if not isinstance(lookup, Found):
            raise Transient(f"the PG did not answer about a reported payment: {lookup.reason}")
        return await self.apply(lookup.payment)

    async def apply(self, payment: PgPayment) -> Synced:
        state = await self._payments.apply_pg_record(payment)
        if state is None and payment.approved:
            state = await self._payments.record_unrecorded_approval(payment)
            if state is None:
                log.error(
                    "the PG holds an approval for an order we never had; a person must look",
                    extra={"order_id": payment.order_id[:100]},
                )
                return Synced(None, unmatched=True)
        if state is not AttemptState.APPROVED:
            return Synced(state)
        settled = await self._refunds.settle_from_pg(payment)
        external = await self._record_external_cancels(payment)
        return Synced(state, refunds_settled=settled, external_cancels=external)

    async def _record_external_cancels(self, payment: PgPayment) -> int:
        async with self._pool.acquire() as conn:
            ours = {r.refund_id for r in await repo.refunds_of(conn, payment.payment_key)}
            recorded = 0
            for cancel in payment.cancels:
                if refund_id_in(cancel) in ours or external_refund_id(cancel) in ours:
                    continue
                recorded += await self._record_external(conn, payment, cancel)
        return recorded

    async def _record_external(self, conn: Connection, payment: PgPayment, cancel: PgCancel) -> int:
        refund_id = external_refund_id(cancel)
        event = outbox.Outgoing.of(
            PaymentRefunded(
                correlation_id=payment.order_id,
                order_id=payment.order_id,
                payment_key=payment.payment_key,
                refund_id=refund_id,
                refunded_amount=cancel.cancel_amount,
                balance_amount=payment.balance_amount,
                fully_refunded=payment.balance_amount == 0,
                reason=cancel.cancel_reason[:200] or None,
            )
        )
        outbox_id = await repo.insert_external_refund(
            conn,
            refund_id=refund_id,
            order_id=payment.order_id,
            payment_key=payment.payment_key,
            cancel=cancel,
            balance_amount=payment.balance_amount,
            event=event,
        )
        if outbox_id is None:
            return 0
        self._handoff.put(event.committed(outbox_id))
        log.warning(
            "a cancel made at the PG without us is recorded",
            extra={"order_id": payment.order_id, "refund_id": refund_id},
        )
        return 1


def external_refund_id(cancel: PgCancel) -> str:
    """One id per cancel of the PG's, the same every time it is seen: its transaction key (or,
    from a PG that gives none, what identifies the cancel)."""
    if cancel.transaction_key:
        return f"pg_{cancel.transaction_key}"[:100]
    seen = f"{cancel.canceled_at}|{cancel.cancel_amount}|{cancel.cancel_reason}"
    return "pg_" + hashlib.sha256(seen.encode()).hexdigest()[:40]
