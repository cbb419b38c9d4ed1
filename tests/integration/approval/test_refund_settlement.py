"""Refunds always finish: lost answers, a PG that forgot our key, someone else's cancel, a
definitive refusal an operator retries, and money approved for an order we never had."""

from __future__ import annotations

import uuid

from services.approval import repository as repo
from services.approval.domain import cancel_idempotency_key, tagged_cancel_reason
from services.approval.pg_client import CancelRequest, Found
from shared.events import (
    PaymentApproved,
    PaymentAuthenticated,
    PaymentRefunded,
    PaymentRejected,
    RefundFailed,
    RefundRequested,
    utcnow,
)
from tests.integration.approval.conftest import Approval, order_placed


async def paid(approval: Approval, amount: int = 50_000) -> tuple[str, str]:
    """An order approved at the (fake) PG: its id and paymentKey."""
    order = order_placed(amount=amount)
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    authenticated = approval.authenticated(order)
    await approval.publish(authenticated)
    await approval.next_output(PaymentApproved)
    return order.order_id, authenticated.payment_key


def refund_of(order_id: str, payment_key: str, amount: int | None = None) -> RefundRequested:
    return RefundRequested(
        correlation_id=order_id,
        order_id=order_id,
        payment_key=payment_key,
        refund_id=f"refund-{uuid.uuid4().hex[:8]}",
        amount=amount,
        reason="buyer changed their mind",
    )


async def refund_state(approval: Approval, refund_id: str) -> dict[str, object]:
    row = await approval.db.fetchrow("SELECT * FROM refunds WHERE refund_id = $1", refund_id)
    return dict(row) if row else {}


async def test_a_cancel_whose_answer_was_lost_at_a_pg_that_forgot_the_key_still_succeeds(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order_id, payment_key = await paid(approval)
    # Our cancel goes through but its answer is lost; the retry meets ALREADY_CANCELED_PAYMENT.
    approval.pg.cancel_faults = ["timeout_after"]
    approval.pg.forget_keys = True
    refund = refund_of(order_id, payment_key)

    await approval.publish(refund)
    refunded = await approval.next_output(PaymentRefunded)

    assert (refunded.refund_id, refunded.refunded_amount, refunded.balance_amount) == (
        refund.refund_id,
        50_000,
        0,
    )
    assert (await refund_state(approval, refund.refund_id))["state"] == "SUCCEEDED"
    assert len(approval.pg.ledger[payment_key].cancels) == 1


async def test_a_refund_overtaken_by_a_full_cancel_in_the_console_succeeds_with_nothing_of_ours(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order_id, payment_key = await paid(approval)
    approval.pg.console_cancel(payment_key)
    refund = refund_of(order_id, payment_key, amount=10_000)

    await approval.publish(refund)
    refunded = await approval.next_output(PaymentRefunded)

    assert (refunded.refunded_amount, refunded.balance_amount, refunded.fully_refunded) == (
        0,
        0,
        True,
    )


async def test_a_definitive_refusal_is_kept_failed_with_the_pgs_code(approval: Approval) -> None:
    await approval.start_worker()
    order_id, payment_key = await paid(approval)
    approval.pg.refuse_cancel_with = "REFUND_REJECTED"
    refund = refund_of(order_id, payment_key)

    await approval.publish(refund)
    failed = await approval.next_output(RefundFailed)

    assert failed.code == "REFUND_REJECTED"
    row = await refund_state(approval, refund.refund_id)
    assert (row["state"], row["pg_code"]) == ("FAILED", "REFUND_REJECTED")


async def test_an_operators_retry_of_a_refused_refund_asks_again_under_a_new_key(
    approval: Approval,
) -> None:
    worker = await approval.start_worker()
    order_id, payment_key = await paid(approval)
    approval.pg.refuse_cancel_with = "REFUND_REJECTED"
    refund = refund_of(order_id, payment_key)
    await approval.publish(refund)
    await approval.next_output(RefundFailed)
    approval.pg.refuse_cancel_with = None  # the operator sorted it out with the PG

    assert await worker.refunds.retry(refund.refund_id)
    refunded = await approval.next_output(PaymentRefunded, within=15)

    assert refunded.refund_id == refund.refund_id
    keys = [r.idempotency_key for r in approval.pg.cancel_requests]
    assert keys == [
        cancel_idempotency_key(refund.refund_id),
        cancel_idempotency_key(refund.refund_id, 1),
    ]


async def test_a_refund_refused_for_our_configuration_is_held_not_failed(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order_id, payment_key = await paid(approval)
    approval.pg.cancel_faults = ["misconfigured"] * 2
    refund = refund_of(order_id, payment_key)

    await approval.publish(refund)
    refunded = await approval.next_output(PaymentRefunded, within=15)

    assert refunded.refund_id == refund.refund_id
    assert len(approval.pg.ledger[payment_key].cancels) == 1


async def test_money_approved_for_an_order_we_never_had_is_refunded_by_approval(
    approval: Approval,
) -> None:
    worker = await approval.start_worker(awaiting_order_timeout_seconds=0.5)
    order_id = f"order-{uuid.uuid4().hex[:12]}"  # never placed
    payment_key = f"pk_{uuid.uuid4().hex}"
    approval.pg.authenticate(payment_key, order_id, 30_000)
    await approval.publish(
        PaymentAuthenticated(
            correlation_id=order_id,
            order_id=order_id,
            payment_key=payment_key,
            amount=30_000,
            payment_type="NORMAL",
            received_at=utcnow(),
        )
    )
    rejected = await approval.next_output(PaymentRejected, within=15)
    assert rejected.reason == "ORDER_NOT_FOUND"
    approval.pg.complete(payment_key)  # confirmed outside our flow
    found = await approval.pg.get_payment(payment_key)
    assert isinstance(found, Found)

    await worker.sync.apply(found.payment)

    refunded = await approval.next_output(PaymentRefunded, within=15)

    assert (refunded.payment_key, refunded.balance_amount) == (payment_key, 0)
    assert approval.pg.ledger[payment_key].status == "CANCELED"
    await approval.no_more_outputs(0.5)  # no PaymentApproved: no order can take this money


async def test_a_partial_refund_whose_answer_is_lost_at_a_forgetful_pg_is_canceled_once(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order_id, payment_key = await paid(approval)
    # The cancel goes through but its answer is lost, and the PG would run a retry afresh:
    # asked again blindly, it would give 10,000 back twice.
    approval.pg.cancel_faults = ["timeout_after"]
    approval.pg.forget_keys = True
    refund = refund_of(order_id, payment_key, amount=10_000)

    await approval.publish(refund)
    refunded = await approval.next_output(PaymentRefunded)

    assert (refunded.refunded_amount, refunded.balance_amount) == (10_000, 40_000)
    assert [c.cancel_amount for c in approval.pg.ledger[payment_key].cancels] == [10_000]
    await approval.no_more_outputs(1.0)


async def test_a_partial_refund_whose_worker_died_mid_cancel_is_looked_up_before_it_is_asked_again(
    approval: Approval,
) -> None:
    async with approval.worker():
        order_id, payment_key = await paid(approval)
    refund = refund_of(order_id, payment_key, amount=10_000)
    await died_mid_cancel(approval, refund)
    approval.pg.forget_keys = True  # asked again blindly, it would give 10,000 back twice

    await approval.start_worker()  # its reconciler takes the refund over once the lease ran out
    refunded = await approval.next_output(PaymentRefunded, within=15)

    assert (refunded.refunded_amount, refunded.balance_amount) == (10_000, 40_000)
    assert [c.cancel_amount for c in approval.pg.ledger[payment_key].cancels] == [10_000]
    assert len(approval.pg.cancel_requests) == 1


async def died_mid_cancel(approval: Approval, refund: RefundRequested) -> None:
    """What a worker killed during its first cancel leaves: the refund CANCELING under a lease
    that ran out, and its cancel done at the PG (its answer never recorded)."""
    key = cancel_idempotency_key(refund.refund_id)
    async with approval.db.acquire() as conn:
        await repo.insert_refund(
            conn,
            refund_id=refund.refund_id,
            order_id=refund.order_id,
            payment_key=refund.payment_key,
            amount=refund.amount,
            reason=refund.reason,
            idempotency_key=key,
            event_id=refund.event_id,
        )
        assert await repo.claim_refund(conn, refund.refund_id, "the-dead-worker", 0.0)
    reason = tagged_cancel_reason(refund.reason, refund.refund_id)
    await approval.pg.cancel(CancelRequest(refund.payment_key, reason, refund.amount, key))
