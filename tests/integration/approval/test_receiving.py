"""Receiving an authentication in one statement: the attempt is written in its verdict's state with
its inbox claim, only against the intent as read (or still absent)."""

from __future__ import annotations

from services.approval import repository as repo
from services.approval.domain import AWAIT_ORDER, VERIFIED, Reason, Verdict, rejected
from services.approval.repository import IntentRead, Received
from shared.events import PaymentAuthenticated
from shared.topology import APPROVAL_PAYMENTS
from tests.integration.approval.conftest import Approval, order_placed
from tests.plans import generic_plan

CONSUMER = APPROVAL_PAYMENTS.name


async def insert(
    approval: Approval,
    intent: IntentRead | None,
    event: PaymentAuthenticated,
    verdict: Verdict = VERIFIED,
) -> Received:
    async with approval.db.acquire() as conn:
        received, _ = await repo.insert_judged(conn, CONSUMER, intent, event, verdict)
    return received


async def written(approval: Approval, event: PaymentAuthenticated) -> tuple[int, int]:
    """(attempts with the event's paymentKey, inbox claims of the event)."""
    attempts = await approval.db.fetchval(
        "SELECT count(*) FROM payment_attempts WHERE payment_key = $1", event.payment_key
    )
    claims = await approval.db.fetchval(
        "SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id = $2",
        CONSUMER,
        event.event_id,
    )
    return attempts, claims


async def test_an_attempt_is_inserted_verified_with_its_event_claimed(approval: Approval) -> None:
    event = approval.authenticated(await approval.placed_intent())

    received = await insert(approval, await approval.intent_as_read(event), event)

    assert received is Received.INSERTED
    assert await written(approval, event) == (1, 1)
    attempt = await approval.attempt(event.payment_key)
    assert (attempt["state"], attempt["expected_amount"]) == ("VERIFIED", event.amount)


async def test_an_intent_changed_since_it_was_read_writes_nothing(approval: Approval) -> None:
    event = approval.authenticated(await approval.placed_intent())
    as_read = await approval.intent_as_read(event)
    await approval.db.execute(
        "UPDATE order_intents SET status = 'EXPIRED' WHERE order_id = $1", event.order_id
    )

    assert await insert(approval, as_read, event) is Received.STALE
    assert await written(approval, event) == (0, 0)


async def test_another_attempt_taking_the_order_meanwhile_makes_the_write_stale(
    approval: Approval,
) -> None:
    order = await approval.placed_intent()
    first, second = approval.authenticated(order), approval.authenticated(order)
    read_by_second = await approval.intent_as_read(second)
    assert await insert(approval, await approval.intent_as_read(first), first) is Received.INSERTED

    assert await insert(approval, read_by_second, second) is Received.STALE
    assert await written(approval, second) == (0, 0)


async def test_an_event_handled_before_writes_nothing_again(approval: Approval) -> None:
    event = approval.authenticated(await approval.placed_intent())
    await insert(approval, await approval.intent_as_read(event), event)

    again = await insert(approval, await approval.intent_as_read(event), event)

    assert again is Received.DUPLICATE
    assert await written(approval, event) == (1, 1)


async def test_a_payment_key_presented_again_keeps_the_first_attempt(approval: Approval) -> None:
    order = await approval.placed_intent()
    first = approval.authenticated(order)
    await insert(approval, await approval.intent_as_read(first), first)
    second = approval.authenticated(order, payment_key=first.payment_key)

    again = await insert(approval, await approval.intent_as_read(second), second)

    assert again is Received.PRESENTED_AGAIN
    assert await written(approval, second) == (1, 1)


async def test_a_refused_attempt_is_inserted_rejected_with_its_reason(approval: Approval) -> None:
    event = approval.authenticated(await approval.placed_intent())

    received = await insert(
        approval, await approval.intent_as_read(event), event, rejected(Reason.AMOUNT_MISMATCH)
    )

    assert received is Received.INSERTED
    attempt = await approval.attempt(event.payment_key)
    assert (attempt["state"], attempt["reason"]) == ("REJECTED", "AMOUNT_MISMATCH")
    assert await written(approval, event) == (1, 1)


async def test_an_attempt_for_an_order_not_placed_yet_is_inserted_awaiting_it(
    approval: Approval,
) -> None:
    event = approval.authenticated(order_placed())

    assert await insert(approval, None, event, AWAIT_ORDER) is Received.INSERTED
    assert (await approval.attempt(event.payment_key))["state"] == "AWAITING_ORDER"


async def test_an_order_placed_names_its_waiting_attempts_and_again_when_redelivered(
    approval: Approval,
) -> None:
    order = order_placed()
    event = approval.authenticated(order)
    await insert(approval, None, event, AWAIT_ORDER)

    async with approval.db.acquire() as conn:
        [first] = await repo.claim_and_place_intents(conn, "test-intents", [order])
        [again] = await repo.claim_and_place_intents(conn, "test-intents", [order])

    assert (first.claimed, first.waiting) == (True, [event.payment_key])
    assert (again.claimed, again.waiting) == (False, [event.payment_key])
    assert await approval.intent_status(order.order_id) == "PAYABLE"


async def test_orders_placed_together_are_each_projected_with_their_own_waiting_attempts(
    approval: Approval,
) -> None:
    waited_for, alone = order_placed(), order_placed()
    event = approval.authenticated(waited_for)
    await insert(approval, None, event, AWAIT_ORDER)

    async with approval.db.acquire() as conn:
        placed = await repo.claim_and_place_intents(conn, "test-intents", [waited_for, alone])

    assert [(p.claimed, p.waiting) for p in placed] == [(True, [event.payment_key]), (True, [])]
    assert await approval.intent_status(waited_for.order_id) == "PAYABLE"
    assert await approval.intent_status(alone.order_id) == "PAYABLE"


async def test_two_copies_of_an_order_placed_in_one_batch_are_claimed_once(
    approval: Approval,
) -> None:
    order = order_placed()

    async with approval.db.acquire() as conn:
        placed = await repo.claim_and_place_intents(conn, "test-intents", [order, order])

    assert [p.claimed for p in placed] == [True, False]
    assert await approval.intent_status(order.order_id) == "PAYABLE"


async def test_an_intent_placed_since_none_was_read_makes_the_write_stale(
    approval: Approval,
) -> None:
    event = approval.authenticated(await approval.placed_intent())

    assert await insert(approval, None, event, AWAIT_ORDER) is Received.STALE
    assert await written(approval, event) == (0, 0)


async def test_the_order_s_holder_is_read_through_the_live_attempts_index_on_a_generic_plan(
    approval: Approval,
) -> None:
    async with approval.db.acquire() as conn:
        plan = await generic_plan(
            conn, repo.READ_FOR_JUDGING, ("text", "text"), ("'order-1'", "'key-1'")
        )
    assert "payment_attempts_one_live_per_order" in plan
    assert "Seq Scan" not in plan
