"""Refunds: a RefundRequested becomes one PG cancel, idempotent by ``refund_id``.

Same discipline as confirms: the lease is committed before the call, the outcome commits with its
event, and an unknown outcome is retried with the same ``Idempotency-Key`` and settled by reading
the payment's ``cancels[]`` (our cancel carries the refund id in its reason).
"""

from __future__ import annotations

import logging

import asyncpg
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
)

from services.approval import repository as repo
from services.approval.domain import (
    PgPayment,
    Refund,
    RefundState,
    cancel_idempotency_key,
    find_refund,
    refund_transition,
    retry_delay,
    tagged_cancel_reason,
)
from services.approval.payments import Policy, keeping_lease
from services.approval.pg_client import (
    Canceled,
    CancelRequest,
    CancelResult,
    Declined,
    Found,
    PaymentGateway,
    Unknown,
)
from shared import inbox, outbox
from shared.db import Connection
from shared.events import PaymentRefunded, RefundFailed, RefundRequested
from shared.topology import APPROVAL_REFUNDS

log = logging.getLogger(__name__)

R = RefundState
FULLY_CANCELED = "CANCELED"


class Refunds:
    def __init__(
        self, pool: asyncpg.Pool, gateway: PaymentGateway, policy: Policy, owner: str
    ) -> None:
        self._pool = pool
        self._gateway = gateway
        self._policy = policy
        self._owner = owner

    async def on_refund_requested(self, event: RefundRequested) -> None:
        async def effect(conn: Connection) -> None:
            await repo.insert_refund(
                conn,
                refund_id=event.refund_id,
                order_id=event.order_id,
                payment_key=event.payment_key,
                amount=event.amount,
                reason=event.reason,
                idempotency_key=cancel_idempotency_key(event.refund_id),
                event_id=event.event_id,
            )

        await inbox.apply_once(self._pool, APPROVAL_REFUNDS.name, event, effect)
        await self.drive(event.refund_id)

    async def drive(self, refund_id: str) -> None:
        """Cancel at the PG and record the outcome, if no other worker holds this refund."""
        async with self._pool.acquire() as conn:
            refund = await repo.claim_refund(
                conn, refund_id, self._owner, self._policy.lease_seconds
            )
        if refund is not None:
            lease = self._policy.lease_seconds
            renew = repo.renew_refund_lease
            async with keeping_lease(self._pool, renew, refund_id, self._owner, lease):
                outcome = await self._outcome(refund)
            await self._record(refund, outcome)

    async def _outcome(self, refund: Refund) -> CancelResult:
        if refund.tries > 0:  # an earlier cancel may have gone through: look before asking
            settled = await self._look_up(refund)
            if not isinstance(settled, Unknown):
                return settled
        result = await self._cancel(refund)
        if isinstance(result, Unknown):
            settled = await self._look_up(refund)
            return settled if not isinstance(settled, Unknown) else result
        return result

    async def _cancel(self, refund: Refund) -> CancelResult:
        request = CancelRequest(
            payment_key=refund.payment_key,
            reason=tagged_cancel_reason(refund.reason, refund.refund_id),
            amount=refund.amount,
            idempotency_key=refund.idempotency_key,
        )

        async def once() -> CancelResult:
            try:
                return await self._gateway.cancel(request)
            except Exception as exc:
                return Unknown(f"cancel failed: {type(exc).__name__}")

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._policy.confirm_attempts),
            wait=wait_exponential(multiplier=self._policy.confirm_retry_base, max=10),
            retry=retry_if_result(lambda result: isinstance(result, Unknown)),
            retry_error_callback=_last_result,
        )
        result: CancelResult = await retrying(once)
        return result

    async def _look_up(self, refund: Refund) -> CancelResult:
        """Our cancel as the PG recorded it: Canceled if it is in ``cancels[]``, Declined if the
        payment is fully canceled without it, Unknown otherwise."""
        try:
            lookup = await self._gateway.get_payment(refund.payment_key)
        except Exception as exc:
            return Unknown(f"query failed: {type(exc).__name__}")
        if not isinstance(lookup, Found):
            return Unknown("payment not readable")
        if find_refund(lookup.payment, refund.refund_id) is not None:
            return Canceled(lookup.payment)
        if lookup.payment.status == FULLY_CANCELED:
            return Declined("ALREADY_CANCELED_PAYMENT", "The payment was already canceled.")
        return Unknown("our cancel is not in cancels[] yet")

    async def _record(self, refund: Refund, result: CancelResult) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            current = await repo.get_refund(conn, refund.refund_id, lock=True)
            if current is None or current.state in (R.SUCCEEDED, R.FAILED):
                return
            if isinstance(result, Canceled):
                await self._succeeded(conn, current, result.payment)
            elif isinstance(result, Declined):
                await self._failed(conn, current, result)
            else:
                delay = retry_delay(
                    current.tries, self._policy.backoff_base, self._policy.backoff_max
                )
                await repo.save_refund_unknown(
                    conn, current.refund_id, self._owner, result.reason, delay
                )

    async def _succeeded(self, conn: Connection, refund: Refund, payment: PgPayment) -> None:
        refund_transition(refund.state, R.SUCCEEDED)
        amount = refunded_amount(refund, payment)
        await repo.save_refund_result(
            conn,
            refund.refund_id,
            R.SUCCEEDED,
            refunded_amount=amount,
            balance_amount=payment.balance_amount,
        )
        event = PaymentRefunded(
            correlation_id=refund.order_id,
            causation_id=refund.event_id,
            order_id=refund.order_id,
            payment_key=refund.payment_key,
            refund_id=refund.refund_id,
            refunded_amount=amount,
            balance_amount=payment.balance_amount,
            fully_refunded=payment.balance_amount == 0,
        )
        await outbox.enqueue(conn, event)

    async def _failed(self, conn: Connection, refund: Refund, declined: Declined) -> None:
        refund_transition(refund.state, R.FAILED)
        await repo.save_refund_result(
            conn, refund.refund_id, R.FAILED, pg_code=declined.code, pg_message=declined.message
        )
        event = RefundFailed(
            correlation_id=refund.order_id,
            causation_id=refund.event_id,
            order_id=refund.order_id,
            payment_key=refund.payment_key,
            refund_id=refund.refund_id,
            code=declined.code,
            message=declined.message,
        )
        await outbox.enqueue(conn, event)


def refunded_amount(refund: Refund, payment: PgPayment) -> int:
    """What this refund gave back: our entry in ``cancels[]``, else what we asked for, else the
    latest cancel (a full refund answered by a PG that does not echo our reason)."""
    ours = find_refund(payment, refund.refund_id)
    if ours is not None:
        return ours.cancel_amount
    if refund.amount is not None:
        return refund.amount
    return payment.cancels[-1].cancel_amount if payment.cancels else 0


def _last_result(state: RetryCallState) -> CancelResult:
    assert state.outcome is not None
    result: CancelResult = state.outcome.result()
    return result
