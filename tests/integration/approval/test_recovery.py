"""Duplicates, competing workers, lost answers and dead workers: still one charge per order."""

from __future__ import annotations

import asyncio
import uuid

from services.approval.domain import confirm_idempotency_key
from shared.events import PaymentApproved, utcnow
from tests.integration.approval.conftest import Approval, eventually, order_placed


async def test_one_event_delivered_five_times_to_three_workers_confirms_exactly_once(
    approval: Approval,
) -> None:
    approval.pg.latency = 0.2
    for _ in range(3):
        await approval.start_worker()
    order = order_placed()
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    authenticated = approval.authenticated(order)

    await asyncio.gather(*(approval.publish(authenticated) for _ in range(5)))

    await approval.next_output(PaymentApproved)
    await approval.no_more_outputs(1.0)
    assert len(approval.pg.confirms) == 1
    assert approval.pg.ledger[authenticated.payment_key].state_changes == 1


async def test_an_unknown_outcome_is_settled_by_a_query_with_one_idempotency_key(
    approval: Approval,
) -> None:
    # The first confirm moves the money but its answer is lost; every retry times out too.
    approval.pg.faults = ["timeout_after", "timeout", "timeout"]
    await approval.start_worker()
    order = order_placed()
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    authenticated = approval.authenticated(order)
    await approval.publish(authenticated)

    approved = await approval.next_output(PaymentApproved)

    assert approved.payment_key == authenticated.payment_key
    assert len(approval.pg.confirms) == 3
    assert {c.idempotency_key for c in approval.pg.confirms} == {
        confirm_idempotency_key(authenticated.payment_key)
    }
    assert order.order_id in approval.pg.lookups
    assert approval.pg.ledger[authenticated.payment_key].state_changes == 1


async def test_an_attempt_left_confirming_by_a_dead_worker_is_redriven_with_the_same_key(
    approval: Approval,
) -> None:
    order = order_placed()
    authenticated = approval.authenticated(order)
    key = confirm_idempotency_key(authenticated.payment_key)
    await approval.db.execute(
        "INSERT INTO order_intents (order_id, amount, currency, customer_key, expires_at, status)"
        " VALUES ($1, $2, 'KRW', $3, $4, 'PAYABLE')",
        order.order_id,
        order.amount,
        order.customer_key,
        order.expires_at,
    )
    await approval.db.execute(
        "INSERT INTO payment_attempts (payment_key, order_id, presented_amount, expected_amount,"
        " payment_type, authenticated_at, state, idempotency_key, lease_owner, lease_until,"
        " event_id) VALUES ($1, $2, $3, $3, 'NORMAL', $4, 'CONFIRMING', $5, 'dead-worker',"
        " now() - interval '1 second', $6)",
        authenticated.payment_key,
        order.order_id,
        order.amount,
        utcnow(),
        key,
        uuid.uuid4(),
    )

    await approval.start_worker()
    approved = await approval.next_output(PaymentApproved)

    assert approved.payment_key == authenticated.payment_key
    assert [c.idempotency_key for c in approval.pg.confirms] == [key]
    assert (await approval.attempt(authenticated.payment_key))["state"] == "APPROVED"


async def test_a_worker_stopped_mid_confirm_hands_the_attempt_back_for_another_to_finish(
    approval: Approval,
) -> None:
    order = order_placed()
    await approval.publish(order)
    authenticated = approval.authenticated(order)
    approval.pg.latency = 30.0  # the PG never answers the first worker
    async with approval.worker(shutdown_grace_seconds=0.2):
        await approval.intent_known(order.order_id)
        await approval.publish(authenticated)

        async def confirming() -> bool:
            return bool(approval.pg.confirms)

        await eventually(confirming)
    attempt = await approval.attempt(authenticated.payment_key)
    assert (attempt["state"], attempt["lease_until"]) == ("CONFIRMING", None)

    approval.pg.latency = 0.0
    await approval.start_worker()
    approved = await approval.next_output(PaymentApproved)

    assert approved.payment_key == authenticated.payment_key
    assert {c.idempotency_key for c in approval.pg.confirms} == {attempt["idempotency_key"]}
    assert approval.pg.ledger[authenticated.payment_key].state_changes == 1


async def test_a_slow_confirm_keeps_its_lease_so_no_other_worker_confirms_again(
    approval: Approval,
) -> None:
    approval.pg.latency = 2.5  # longer than the lease: only renewal keeps it
    for _ in range(2):
        await approval.start_worker(lease_seconds=1.0)
    order = order_placed()
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    await approval.publish(approval.authenticated(order))

    await approval.next_output(PaymentApproved)

    assert len(approval.pg.confirms) == 1


async def test_an_approval_answered_after_the_lease_was_taken_over_is_recorded_from_the_answer(
    approval: Approval,
) -> None:
    approval.pg.latency = 0.5
    await approval.start_worker()
    order = order_placed()
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    authenticated = approval.authenticated(order)
    await approval.publish(authenticated)

    async def confirming() -> bool:
        return bool(approval.pg.confirms)

    await eventually(confirming)
    # Another worker took the lease meanwhile: the answer no longer comes from the holder.
    await approval.db.execute(
        "UPDATE payment_attempts SET lease_owner = 'another-worker' WHERE payment_key = $1",
        authenticated.payment_key,
    )

    approved = await approval.next_output(PaymentApproved)

    assert approved.payment_key == authenticated.payment_key
    await approval.no_more_outputs(1.0)
    # Recorded from the confirm's own answer: no lease had to run out for a re-drive's query.
    assert (len(approval.pg.confirms), approval.pg.lookups) == (1, [])
    assert (await approval.attempt(authenticated.payment_key))["state"] == "APPROVED"
    paid_by = await approval.db.fetchval(
        "SELECT paid_by FROM order_intents WHERE order_id = $1", order.order_id
    )
    assert paid_by == authenticated.payment_key
