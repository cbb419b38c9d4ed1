"""Refunds: a RefundRequested becomes one PG cancel, idempotent by ``refund_id``.

Same discipline as confirms: the lease is committed before the call, the outcome commits with its
event, and an unknown outcome is retried with the same ``Idempotency-Key`` and settled by reading
the payment's ``cancels[]`` (our cancel carries the refund id in its reason). A refund ends only
on the PG's word: SUCCEEDED when our cancel is in ``cancels[]`` (or the payment was fully
canceled by someone else first), FAILED only on a definitive refusal, kept with the PG's code
for an operator (``python -m services.approval refunds``), who may retry it under a new key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

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
    REFUND_SETTLED,
    ErrorClass,
    PgPayment,
    Refund,
    RefundState,
    cancel_idempotency_key,
    find_refund,
    refund_transition,
    retry_delay,
    tagged_cancel_reason,
)
from services.approval.pg_client import (
    Canceled,
    CancelRequest,
    CancelResult,
    Declined,
    Found,
    PaymentGateway,
    Unknown,
)
from services.approval.service import Policy, keeping_lease
from shared import inbox, outbox
from shared.db import Connection
from shared.events import PaymentRefunded, RefundFailed, RefundRequested
from shared.topology import APPROVAL_REFUNDS

log = logging.getLogger(__name__)

R = RefundState


@dataclass(frozen=True)
class Succeeded:
    """The PG holds the refund: ``refunded`` is what our cancel gave back (0 when the payment
    had been canceled in full by someone else first: the buyer has the money either way)."""

    payment: PgPayment
    refunded: int


@dataclass(frozen=True)
class Refused:
    """A definitive refusal (not a lost or unclear answer)."""

    code: str
    message: str


@dataclass(frozen=True)
class Pending:
    """Not settled yet: asked again later with the same key (a new one if ``misconfigured``)."""

    reason: str
    code: str | None = None
    misconfigured: bool = False
    error_class: ErrorClass = ErrorClass.OUTCOME_UNKNOWN


Outcome = Succeeded | Refused | Pending


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
            claimed = await repo.claim_refund(
                conn, refund_id, self._owner, self._policy.lease_seconds
            )
        if claimed is not None:
            refund, previous = claimed
            lease = self._policy.lease_seconds
            renew = repo.renew_refund_lease
            async with keeping_lease(self._pool, renew, refund_id, self._owner, lease):
                outcome = await self._outcome(refund, previous)
            await self._record(refund, outcome)

    async def _outcome(self, refund: Refund, previous: RefundState) -> Outcome:
        # Only a REQUESTED refund was never sent: one that was CANCELING lost its worker during
        # a cancel, one UNKNOWN had its answer lost. Either may have gone through: look first.
        if previous is not R.REQUESTED:
            looked = await self._look_up(refund)
            if not isinstance(looked, Pending):
                return looked
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._policy.confirm_attempts),
            wait=wait_exponential(multiplier=self._policy.confirm_retry_base, max=10),
            retry=retry_if_result(_worth_asking_again),
            retry_error_callback=_last_result,
        )
        outcome: Outcome = await retrying(self._cancel_then_look, refund)
        return outcome

    async def _cancel_then_look(self, refund: Refund) -> Outcome:
        """One cancel; an unclear answer is looked up before anything is asked again. A retry
        with the same key is safe only at a PG that remembers the key: one that forgot it would
        cancel a partial amount twice, so the payment's ``cancels[]`` is read first."""
        result = await self._cancel(refund)
        if isinstance(result, Canceled):
            return Succeeded(result.payment, refunded_amount(refund, result.payment))
        if isinstance(result, Declined):
            return Refused(result.code, result.message)
        looked = await self._look_up(refund)
        if not isinstance(looked, Pending):
            return looked
        return Pending(result.reason, result.code, result.misconfigured, result.error_class)

    async def _cancel(self, refund: Refund) -> CancelResult:
        request = CancelRequest(
            payment_key=refund.payment_key,
            reason=tagged_cancel_reason(refund.reason, refund.refund_id),
            amount=refund.amount,
            idempotency_key=refund.idempotency_key,
        )
        try:
            return await self._gateway.cancel(request)
        except Exception as exc:
            return Unknown(f"cancel failed: {type(exc).__name__}")

    async def _look_up(self, refund: Refund) -> Outcome:
        """Our cancel as the PG recorded it: in ``cancels[]``, or superseded by someone else's
        cancel of the whole payment; else still pending."""
        try:
            lookup = await self._gateway.get_payment(refund.payment_key)
        except Exception as exc:
            return Pending(f"query failed: {type(exc).__name__}")
        if not isinstance(lookup, Found):
            return Pending(f"payment not readable: {lookup}")
        ours = find_refund(lookup.payment, refund.refund_id)
        if ours is not None:
            return Succeeded(lookup.payment, ours.cancel_amount)
        if lookup.payment.balance_amount == 0 and lookup.payment.approved:
            return Succeeded(lookup.payment, 0)
        return Pending("our cancel is not in cancels[] yet")

    async def _record(self, refund: Refund, outcome: Outcome) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            current = await repo.get_refund(conn, refund.refund_id, lock=True)
            if current is None or current.state in REFUND_SETTLED:
                return
            if isinstance(outcome, Succeeded):
                await self._succeeded(conn, current, outcome)
            elif isinstance(outcome, Refused):
                await self._failed(conn, current, outcome)
            else:
                await self._pending(conn, current, outcome)

    async def _pending(self, conn: Connection, refund: Refund, outcome: Pending) -> None:
        delay = retry_delay(refund.tries, self._policy.backoff_base, self._policy.backoff_max)
        next_key = None
        if outcome.misconfigured:
            next_key = cancel_idempotency_key(refund.refund_id, refund.generation + 1)
        await repo.save_refund_unknown(
            conn,
            refund.refund_id,
            self._owner,
            outcome.reason,
            delay,
            pg_code=outcome.code,
            next_key=next_key,
        )
        log.warning(
            "refund outcome unknown",
            extra={
                "order_id": refund.order_id,
                "refund_id": refund.refund_id,
                "why": outcome.reason,
            },
        )

    async def _succeeded(self, conn: Connection, refund: Refund, outcome: Succeeded) -> None:
        refund_transition(refund.state, R.SUCCEEDED)
        payment = outcome.payment
        ours = find_refund(payment, refund.refund_id)
        await repo.save_refund_result(
            conn,
            refund.refund_id,
            R.SUCCEEDED,
            refunded_amount=outcome.refunded,
            balance_amount=payment.balance_amount,
            canceled_at=ours.canceled_at if ours else None,
        )
        event = PaymentRefunded(
            correlation_id=refund.order_id,
            causation_id=refund.event_id,
            order_id=refund.order_id,
            payment_key=refund.payment_key,
            refund_id=refund.refund_id,
            refunded_amount=outcome.refunded,
            balance_amount=payment.balance_amount,
            fully_refunded=payment.balance_amount == 0,
        )
        await outbox.enqueue(conn, event)

    async def _failed(self, conn: Connection, refund: Refund, refused: Refused) -> None:
        refund_transition(refund.state, R.FAILED)
        await repo.save_refund_result(
            conn, refund.refund_id, R.FAILED, pg_code=refused.code, pg_message=refused.message
        )
        log.error(
            "the PG refused a refund; an operator must act (python -m services.approval refunds)",
            extra={
                "order_id": refund.order_id,
                "refund_id": refund.refund_id,
                "code": refused.code,
            },
        )
        event = RefundFailed(
            correlation_id=refund.order_id,
            causation_id=refund.event_id,
            order_id=refund.order_id,
            payment_key=refund.payment_key,
            refund_id=refund.refund_id,
            code=refused.code,
            message=refused.message,
        )
        await outbox.enqueue(conn, event)

    async def settle_from_pg(self, payment: PgPayment) -> int:
        """Refunds of ours the PG's record shows done (their answer was lost, say): recorded
        now, by the same rule as a cancel's answer. Returns how many."""
        async with self._pool.acquire() as conn:
            open_ = [
                r
                for r in await repo.refunds_of(conn, payment.payment_key)
                if r.state not in REFUND_SETTLED
            ]
        settled = 0
        for refund in open_:
            ours = find_refund(payment, refund.refund_id)
            if ours is not None and refund.state is not R.REQUESTED:
                await self._record(refund, Succeeded(payment, ours.cancel_amount))
                settled += 1
        return settled

    async def retry(self, refund_id: str) -> bool:
        """See :func:`retry_refund`."""
        async with self._pool.acquire() as conn:
            return await retry_refund(conn, refund_id)


async def retry_refund(conn: Connection, refund_id: str) -> bool:
    """An operator's retry of a refused refund: asked anew under a new key (the reconciler takes
    it up). False if the refund is not FAILED. The one path for the CLI and the console."""
    async with conn.transaction():
        refund = await repo.get_refund(conn, refund_id, lock=True)
        if refund is None or refund.state is not R.FAILED:
            return False
        refund_transition(refund.state, R.REQUESTED)
        next_key = cancel_idempotency_key(refund_id, refund.generation + 1)
        retried = await repo.retry_refund(conn, refund_id, next_key)
    log.warning("refund retried by an operator", extra={"refund_id": refund_id})
    return retried


def refunded_amount(refund: Refund, payment: PgPayment) -> int:
    """What this refund gave back: our entry in ``cancels[]``, else what we asked for, else the
    latest cancel (a full refund answered by a PG that does not echo our reason)."""
    ours = find_refund(payment, refund.refund_id)
    if ours is not None:
        return ours.cancel_amount
    if refund.amount is not None:
        return refund.amount
    return payment.cancels[-1].cancel_amount if payment.cancels else 0


def _worth_asking_again(outcome: Outcome) -> bool:
    """Only an unknown outcome the PG's record does not settle yet is asked again at once."""
    return isinstance(outcome, Pending) and outcome.error_class is ErrorClass.OUTCOME_UNKNOWN


def _last_result(state: RetryCallState) -> Outcome:
    assert state.outcome is not None
    outcome: Outcome = state.outcome.result()
    return outcome
