"""What a webhook changes: only what the PG, asked with the secret key, says about the payment it
names. The worker consumes ``PgReported`` from the exchange, as checkout announces it."""

from __future__ import annotations

import uuid

from services.approval.domain import tagged_cancel_reason
from services.approval.pg_client import Found
from shared.events import PaymentApproved, PaymentRefunded, PgReported, RefundRequested
from tests.integration.approval.conftest import Approval, eventually, order_placed


def reported(payment_key: str | None, order_id: str | None = None) -> PgReported:
    return PgReported(
        correlation_id=order_id or "unknown",
        transmission_id=f"whtrans_{uuid.uuid4().hex}",
        event_type="PAYMENT_STATUS_CHANGED",
        payment_key=payment_key,
        order_id=order_id,
    )


async def paid(approval: Approval, amount: int = 50_000) -> tuple[str, str]:
    order = order_placed(amount=amount)
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    authenticated = approval.authenticated(order)
    await approval.publish(authenticated)
    await approval.next_output(PaymentApproved)
    return order.order_id, authenticated.payment_key


async def test_a_webhook_about_an_approval_we_still_wait_for_settles_it_at_once(
    approval: Approval,
) -> None:
    approval.pg.faults = ["late"]
    await approval.start_worker(unknown_backoff_base_seconds=60, unknown_backoff_max_seconds=60)
    order = order_placed()
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    authenticated = approval.authenticated(order)
    await approval.publish(authenticated)

    async def unknown() -> bool:
        return (await approval.attempt(authenticated.payment_key)).get("state") == "UNKNOWN"

    await eventually(unknown)
    approval.pg.complete(authenticated.payment_key)
    await approval.publish(reported(authenticated.payment_key, order.order_id))

    approved = await approval.next_output(PaymentApproved, within=5)  # not the 60 s backoff
    assert approved.payment_key == authenticated.payment_key


async def test_a_webhook_about_a_payment_the_pg_does_not_know_changes_nothing(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order = order_placed()
    await approval.publish(order)
    await approval.intent_known(order.order_id)

    await approval.publish(reported("pk_forged_by_anyone", order.order_id))

    await approval.no_more_outputs(1.0)
    assert await approval.intent_status(order.order_id) == "PAYABLE"
    assert await approval.attempt("pk_forged_by_anyone") == {}


async def test_a_webhook_about_a_payment_still_in_progress_changes_nothing(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order = order_placed()
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    payment_key = f"pk_{uuid.uuid4().hex}"
    approval.pg.authenticate(payment_key, order.order_id, order.amount)  # not confirmed

    await approval.publish(reported(payment_key, order.order_id))

    await approval.no_more_outputs(1.0)
    assert await approval.intent_status(order.order_id) == "PAYABLE"


async def test_a_payment_confirmed_by_hand_at_the_pg_reaches_the_order(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order = order_placed()
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    payment_key = f"pk_{uuid.uuid4().hex}"
    approval.pg.authenticate(payment_key, order.order_id, order.amount)
    approval.pg.complete(payment_key)  # confirmed in the merchant console, not by us

    await approval.publish(reported(payment_key, order.order_id))

    approved = await approval.next_output(PaymentApproved)
    assert (approved.payment_key, approved.amount) == (payment_key, order.amount)
    assert await approval.intent_status(order.order_id) == "PAID"


async def test_an_approval_for_an_order_we_never_had_is_left_for_a_person(
    approval: Approval,
) -> None:
    worker = await approval.start_worker()
    payment_key = f"pk_{uuid.uuid4().hex}"
    approval.pg.authenticate(payment_key, "order-of-someone-else", 10_000)
    approval.pg.complete(payment_key)
    found = await approval.pg.get_payment(payment_key)
    assert isinstance(found, Found)

    synced = await worker.sync.apply(found.payment)

    assert synced.unmatched
    await approval.no_more_outputs(0.5)
    assert approval.pg.cancel_requests == []


async def test_console_cancels_partial_then_full_reach_the_books_once_each(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order_id, payment_key = await paid(approval)

    approval.pg.console_cancel(payment_key, 10_000)
    webhook = reported(payment_key, order_id)
    await approval.publish(webhook, webhook)  # and delivered twice
    first = await approval.next_output(PaymentRefunded)
    approval.pg.console_cancel(payment_key)
    await approval.publish(reported(payment_key, order_id))
    second = await approval.next_output(PaymentRefunded)

    assert (first.refunded_amount, first.balance_amount) == (10_000, 40_000)
    assert (second.refunded_amount, second.balance_amount, second.fully_refunded) == (
        40_000,
        0,
        True,
    )
    assert first.refund_id != second.refund_id
    await approval.no_more_outputs(0.5)


async def test_a_refund_of_ours_whose_answer_was_lost_is_settled_by_a_webhook(
    approval: Approval,
) -> None:
    await approval.start_worker(unknown_backoff_base_seconds=60, unknown_backoff_max_seconds=60)
    order_id, payment_key = await paid(approval)
    approval.pg.cancel_faults = ["timeout_after", "timeout", "timeout"]
    approval.pg.lookup_faults = ["timeout"] * 3  # the worker's own looks come up empty
    refund_id = f"refund-{uuid.uuid4().hex[:8]}"

    await approval.publish(
        RefundRequested(
            correlation_id=order_id,
            order_id=order_id,
            payment_key=payment_key,
            refund_id=refund_id,
            amount=None,
            reason="buyer asked",
        )
    )

    async def unknown() -> bool:
        row = await approval.db.fetchval(
            "SELECT state FROM refunds WHERE refund_id = $1", refund_id
        )
        return bool(row == "UNKNOWN")

    await eventually(unknown)
    await approval.publish(reported(payment_key, order_id))

    refunded = await approval.next_output(PaymentRefunded, within=5)
    assert (refunded.refund_id, refunded.balance_amount) == (refund_id, 0)
    assert approval.pg.ledger[payment_key].cancels[0].cancel_reason == tagged_cancel_reason(
        "buyer asked", refund_id
    )
