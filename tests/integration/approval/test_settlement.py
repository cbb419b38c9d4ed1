"""Only the PG settles: answers that come late, disagree, or are no answer at all.

The worker runs against real PostgreSQL and RabbitMQ with the fake PG of ``fakes.py``; the
confirm window is shortened to seconds where a test needs to outlive it.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from services.approval.domain import (
    AttemptState,
    confirm_idempotency_key,
)
from services.approval.pg_client import Found
from shared.events import PaymentApproved, PaymentRejected
from tests.integration.approval.conftest import Approval, eventually, order_placed

# A window of 6 s, confirms stopped 2 s before its end, no PG call longer than 1 s.
SHORT_WINDOW: dict[str, Any] = {
    "confirm_window_seconds": 6,
    "confirm_safety_margin_seconds": 2,
    "pg_call_deadline_seconds": 1.0,
}


async def placed_and_authenticated(approval: Approval) -> tuple[str, str]:
    """An order whose intent the worker knows, and a fresh authentication of it (published)."""
    order = order_placed()
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    authenticated = approval.authenticated(order)
    await approval.publish(authenticated)
    return order.order_id, authenticated.payment_key


async def state_of(approval: Approval, payment_key: str) -> str:
    return str((await approval.attempt(payment_key)).get("state"))


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_payment_the_pg_still_shows_in_progress_after_the_window_stays_unknown(
    approval: Approval,
) -> None:
    approval.pg.faults = ["late"]
    await approval.start_worker(**SHORT_WINDOW)
    _, payment_key = await placed_and_authenticated(approval)

    async def unknown() -> bool:
        return await state_of(approval, payment_key) == "UNKNOWN"

    await eventually(unknown)
    await approval.no_more_outputs(7.0)  # past the whole window: still no verdict of ours

    assert await state_of(approval, payment_key) == "UNKNOWN"


async def test_a_late_approval_after_our_deadline_pays_the_order_once(
    approval: Approval,
) -> None:
    approval.pg.faults = ["late"]
    await approval.start_worker(**SHORT_WINDOW)
    order_id, payment_key = await placed_and_authenticated(approval)

    async def unknown() -> bool:
        return await state_of(approval, payment_key) == "UNKNOWN"

    await eventually(unknown)
    await approval.no_more_outputs(7.0)
    approval.pg.complete(payment_key)  # the PG approves after our confirm deadline

    approved = await approval.next_output(PaymentApproved, within=15)

    assert approved.payment_key == payment_key
    assert await approval.intent_status(order_id) == "PAID"
    assert approval.pg.ledger[payment_key].state_changes == 1
    assert {c.idempotency_key for c in approval.pg.confirms} == {
        confirm_idempotency_key(payment_key)
    }


async def test_an_approval_answered_after_another_worker_recorded_a_decline_is_announced(
    approval: Approval,
) -> None:
    approval.pg.latency = 0.5
    worker = await approval.start_worker()
    order_id, payment_key = await placed_and_authenticated(approval)

    async def confirming() -> bool:
        return bool(approval.pg.confirms)

    await eventually(confirming)
    # Meanwhile the attempt was recorded as declined (our record and the PG's disagree).
    await approval.db.execute(
        "UPDATE payment_attempts SET state = 'DECLINED', reason = 'PG_DECLINED'"
        " WHERE payment_key = $1",
        payment_key,
    )
    late_before = sample("approval_late_approvals_total")

    approved = await approval.next_output(PaymentApproved)

    assert approved.payment_key == payment_key
    assert await state_of(approval, payment_key) == "APPROVED"
    assert await approval.intent_status(order_id) == "PAID"
    assert sample("approval_late_approvals_total") == late_before + 1
    assert worker.owner


async def test_the_pgs_approval_of_a_declined_attempt_reaches_the_order(
    approval: Approval,
) -> None:
    approval.pg.decline_with = "REJECT_CARD_PAYMENT"
    worker = await approval.start_worker()
    _, payment_key = await placed_and_authenticated(approval)
    await approval.next_output(PaymentRejected)
    approval.pg.complete(payment_key)  # a confirm made outside our flow approved it after all
    found = await approval.pg.get_payment(payment_key)
    assert isinstance(found, Found)

    synced = await worker.sync.apply(found.payment)

    approved = await approval.next_output(PaymentApproved)
    assert (synced.attempt, approved.payment_key) == (AttemptState.APPROVED, payment_key)


async def test_an_approval_of_another_amount_is_announced_for_a_refund_never_left_unknown(
    approval: Approval,
) -> None:
    approval.pg.approve_amount = 100
    await approval.start_worker()
    order_id, payment_key = await placed_and_authenticated(approval)

    approved = await approval.next_output(PaymentApproved)

    # The order refunds what it did not store; the intent stays payable for a right payment.
    assert (approved.payment_key, approved.amount) == (payment_key, 100)
    attempt = await approval.attempt(payment_key)
    assert (attempt["state"], attempt["approved_amount"]) == ("APPROVED", 100)
    assert await approval.intent_status(order_id) == "PAYABLE"


async def test_a_merchant_configuration_error_holds_the_payment_until_it_is_fixed(
    approval: Approval,
) -> None:
    approval.pg.faults = ["misconfigured"] * 3
    errors_before = sample(
        "approval_pg_configuration_errors_total", endpoint="confirm", code="INVALID_API_KEY"
    )
    await approval.start_worker()
    _, payment_key = await placed_and_authenticated(approval)

    async def held() -> bool:
        attempt = await approval.attempt(payment_key)
        return attempt.get("state") == "UNKNOWN" and attempt["pg_code"] == "INVALID_API_KEY"

    await eventually(held)
    approved = await approval.next_output(PaymentApproved, within=15)  # fixed: faults used up

    assert approved.payment_key == payment_key
    keys = [c.idempotency_key for c in approval.pg.confirms]
    assert keys[0] == confirm_idempotency_key(payment_key)
    assert keys[-1] != keys[0]  # the refused request was never processed: a new key
    assert approval.pg.ledger[payment_key].state_changes == 1
    after = sample(
        "approval_pg_configuration_errors_total", endpoint="confirm", code="INVALID_API_KEY"
    )
    assert after >= errors_before + 3


async def test_a_merchant_configuration_error_is_never_shown_as_the_buyers_decline(
    approval: Approval,
) -> None:
    approval.pg.faults = ["misconfigured"] * 50
    await approval.start_worker()
    _, payment_key = await placed_and_authenticated(approval)

    async def held() -> bool:
        return (await approval.attempt(payment_key)).get("pg_code") == "INVALID_API_KEY"

    await eventually(held)
    await approval.no_more_outputs(2.0)


async def test_a_rate_limited_confirm_is_retried_never_declined(approval: Approval) -> None:
    approval.pg.faults = ["rate_limited", "rate_limited"]
    await approval.start_worker()
    _, payment_key = await placed_and_authenticated(approval)

    approved = await approval.next_output(PaymentApproved)

    assert approved.payment_key == payment_key
    assert len(approval.pg.confirms) == 3


async def test_a_rate_limited_lookup_leaves_the_outcome_unknown_until_the_pg_answers(
    approval: Approval,
) -> None:
    # The confirm's answer is lost, then the lookups are rate limited for a while.
    approval.pg.faults = ["timeout_after", "timeout", "timeout"]
    approval.pg.lookup_faults = ["rate_limited"] * 6
    await approval.start_worker()
    _, payment_key = await placed_and_authenticated(approval)

    approved = await approval.next_output(PaymentApproved, within=15)

    assert approved.payment_key == payment_key
    assert approval.pg.ledger[payment_key].state_changes == 1
