"""Authentications in, one verdict out: confirmed with the stored amount, or refused."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.approval import repository as repo
from services.approval.domain import VERIFIED, AttemptState
from shared.db import Connection
from shared.events import (
    OrderCanceled,
    OrderExpired,
    PaymentApproved,
    PaymentAuthenticated,
    PaymentRejected,
)
from shared.topology import APPROVAL_PAYMENTS
from tests.integration.approval.conftest import Approval, eventually, order_placed


async def test_a_matching_authentication_is_confirmed_once_with_the_stored_amount(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order = order_placed(amount=50_000)
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    authenticated = approval.authenticated(order)
    await approval.publish(authenticated)

    approved = await approval.next_output(PaymentApproved)

    assert (approved.order_id, approved.payment_key) == (order.order_id, authenticated.payment_key)
    assert approved.amount == 50_000
    assert approved.authenticated_at == authenticated.received_at
    assert [(c.payment_key, c.order_id, c.amount) for c in approval.pg.confirms] == [
        (authenticated.payment_key, order.order_id, 50_000)
    ]
    assert await approval.intent_status(order.order_id) == "PAID"


async def test_a_tampered_amount_is_rejected_without_any_confirm(approval: Approval) -> None:
    await approval.start_worker()
    order = order_placed(amount=50_000)
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    await approval.publish(approval.authenticated(order, amount=100))

    rejected = await approval.next_output(PaymentRejected)

    assert rejected.reason == "AMOUNT_MISMATCH"
    assert approval.pg.confirms == []


async def test_an_authentication_for_an_unknown_order_waits_for_the_order(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order = order_placed()
    authenticated = approval.authenticated(order)
    await approval.publish(authenticated)

    async def waiting() -> bool:
        attempt = await approval.attempt(authenticated.payment_key)
        return attempt.get("state") == "AWAITING_ORDER"

    await eventually(waiting)
    await approval.publish(order)

    approved = await approval.next_output(PaymentApproved)
    assert approved.payment_key == authenticated.payment_key
    assert len(approval.pg.confirms) == 1


async def test_an_authentication_for_an_expired_order_is_rejected(approval: Approval) -> None:
    await approval.start_worker()
    order = order_placed()
    expired = OrderExpired(correlation_id=order.order_id, order_id=order.order_id)
    await approval.publish(order, expired)
    await approval.intent_known(order.order_id, "EXPIRED")
    await approval.publish(approval.authenticated(order))

    rejected = await approval.next_output(PaymentRejected)

    assert rejected.reason == "ORDER_EXPIRED"
    assert approval.pg.confirms == []


async def test_an_authentication_for_a_canceled_order_is_rejected(approval: Approval) -> None:
    await approval.start_worker()
    order = order_placed()
    canceled = OrderCanceled(correlation_id=order.order_id, order_id=order.order_id, reason="x")
    await approval.publish(order, canceled)
    await approval.intent_known(order.order_id, "CANCELED")
    await approval.publish(approval.authenticated(order))

    rejected = await approval.next_output(PaymentRejected)

    assert rejected.reason == "ORDER_NOT_PAYABLE"
    assert approval.pg.confirms == []


async def test_an_expiry_seen_before_its_order_keeps_the_order_unpayable(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order = order_placed()
    await approval.publish(OrderExpired(correlation_id=order.order_id, order_id=order.order_id))
    await approval.intent_known(order.order_id, "EXPIRED")
    await approval.publish(order)
    await approval.publish(approval.authenticated(order))

    rejected = await approval.next_output(PaymentRejected)

    assert rejected.reason == "ORDER_EXPIRED"
    assert await approval.intent_status(order.order_id) == "EXPIRED"


async def test_a_second_authentication_for_a_paid_order_is_rejected_without_a_confirm(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order = order_placed()
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    first = approval.authenticated(order)
    await approval.publish(first)
    await approval.next_output(PaymentApproved)

    await approval.publish(approval.authenticated(order))
    rejected = await approval.next_output(PaymentRejected)

    assert rejected.reason == "ALREADY_PAID"
    assert [c.payment_key for c in approval.pg.confirms] == [first.payment_key]
    assert len(approval.pg.approved(order.order_id)) == 1


async def test_a_confirm_declined_by_the_pg_is_rejected_pg_declined_with_its_code(
    approval: Approval,
) -> None:
    approval.pg.decline_with = "REJECT_CARD_PAYMENT"
    await approval.start_worker()
    order = order_placed()
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    await approval.publish(approval.authenticated(order))

    rejected = await approval.next_output(PaymentRejected)

    assert (rejected.reason, rejected.pg_code) == ("PG_DECLINED", "REJECT_CARD_PAYMENT")
    assert await approval.intent_status(order.order_id) == "PAYABLE"


async def test_an_order_that_never_arrives_is_rejected_order_not_found_by_the_reconciler(
    approval: Approval,
) -> None:
    await approval.start_worker(awaiting_order_timeout_seconds=0.5)
    await approval.publish(approval.authenticated(order_placed()))

    rejected = await approval.next_output(PaymentRejected)

    assert rejected.reason == "ORDER_NOT_FOUND"
    assert approval.pg.confirms == []


async def test_an_authentication_past_the_confirm_window_is_never_confirmed(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order = order_placed(amount=50_000)
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    fresh = approval.authenticated(order)
    stale = fresh.model_copy(update={"received_at": fresh.received_at - timedelta(minutes=11)})
    await approval.publish(stale)

    rejected = await approval.next_output(PaymentRejected)

    assert rejected.reason == "CONFIRM_WINDOW_CLOSED"
    assert approval.pg.confirms == []


async def verified_then_expired(approval: Approval) -> PaymentAuthenticated:
    """An authentication verified by a worker that died before driving it, whose order then
    expired."""
    order = order_placed()
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    authenticated = approval.authenticated(order)
    read = await approval.intent_as_read(authenticated)
    async with approval.db.acquire() as conn:
        await repo.insert_judged(conn, APPROVAL_PAYMENTS.name, read, authenticated, VERIFIED)
    await approval.db.execute(
        "UPDATE order_intents SET status = 'EXPIRED' WHERE order_id = $1", order.order_id
    )
    return authenticated


async def test_a_verified_attempt_whose_order_expired_before_its_confirm_is_refused_unconfirmed(
    approval: Approval,
) -> None:
    worker = await approval.start_worker()
    authenticated = await verified_then_expired(approval)

    await worker.payments.drive(authenticated.payment_key)

    attempt = await approval.attempt(authenticated.payment_key)
    assert (attempt["state"], attempt["reason"]) == ("REJECTED", "ORDER_EXPIRED")
    assert (await approval.next_output(PaymentRejected)).reason == "ORDER_EXPIRED"
    assert approval.pg.confirms == []


async def test_a_refusal_that_lost_the_attempt_to_another_worker_s_lease_leaves_it_to_that_worker(
    approval: Approval, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = await approval.start_worker()
    key = (await verified_then_expired(approval)).payment_key
    set_verdict = repo.set_verdict

    async def claimed_by_another_worker_first(conn: Connection, *args: object) -> bool:
        await approval.db.execute(
            "UPDATE payment_attempts SET state = 'CONFIRMING', lease_owner = 'other-worker',"
            " lease_until = now() + interval '1 minute', idempotency_key = 'other-key'"
            " WHERE payment_key = $1",
            key,
        )
        refused: bool = await set_verdict(conn, *args)  # type: ignore[arg-type]
        return refused

    monkeypatch.setattr(repo, "set_verdict", claimed_by_another_worker_first)

    assert await worker.payments.drive(key) is AttemptState.CONFIRMING
    attempt = await approval.attempt(key)
    assert (attempt["state"], attempt["lease_owner"]) == ("CONFIRMING", "other-worker")
    await approval.no_more_outputs()
    assert approval.pg.confirms == []


async def test_an_authentication_judged_on_an_intent_that_expired_meanwhile_is_judged_again(
    approval: Approval, monkeypatch: pytest.MonkeyPatch
) -> None:
    await approval.start_worker()
    order = order_placed()
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    read_intent = repo.read_intent_for_judging
    reads = 0

    async def read_then_expire(conn: Connection, order_id: str, key: str) -> repo.IntentRead | None:
        nonlocal reads
        reads += 1
        read = await read_intent(conn, order_id, key)  # still PAYABLE: the verdict is VERIFIED
        if reads == 1:
            await approval.db.execute(
                "UPDATE order_intents SET status = 'EXPIRED' WHERE order_id = $1", order_id
            )
        return read

    monkeypatch.setattr(repo, "read_intent_for_judging", read_then_expire)
    await approval.publish(approval.authenticated(order))

    assert (await approval.next_output(PaymentRejected)).reason == "ORDER_EXPIRED"
    assert reads == 2
    assert approval.pg.confirms == []
