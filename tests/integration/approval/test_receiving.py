"""Receiving an authentication in one statement: written only against the intent as read."""

from __future__ import annotations

import uuid

from services.approval import repository as repo
from services.approval.repository import IntentRead, Received
from shared.events import utcnow
from shared.topology import APPROVAL_PAYMENTS
from tests.integration.approval.conftest import Approval, order_placed

CONSUMER = APPROVAL_PAYMENTS.name


async def placed_intent(approval: Approval) -> str:
    order = order_placed()
    await approval.db.execute(
        "INSERT INTO order_intents (order_id, amount, currency, customer_key, expires_at, status)"
        " VALUES ($1, $2, 'KRW', $3, $4, 'PAYABLE')",
        order.order_id,
        order.amount,
        order.customer_key,
        order.expires_at,
    )
    return order.order_id


async def read(approval: Approval, order_id: str, payment_key: str) -> IntentRead:
    async with approval.db.acquire() as conn:
        found = await repo.read_intent_for_judging(conn, order_id, payment_key)
    assert found is not None
    return found


async def insert(
    approval: Approval, intent: IntentRead, payment_key: str, event_id: uuid.UUID
) -> Received:
    async with approval.db.acquire() as conn:
        received, _ = await repo.insert_verified(
            conn,
            CONSUMER,
            intent,
            payment_key=payment_key,
            presented_amount=intent.intent.amount or 0,
            payment_type="NORMAL",
            authenticated_at=utcnow(),
            client_ip=None,
            user_agent=None,
            event_id=event_id,
        )
    return received


async def written(approval: Approval, payment_key: str, event_id: uuid.UUID) -> tuple[int, int]:
    attempts = await approval.db.fetchval(
        "SELECT count(*) FROM payment_attempts WHERE payment_key = $1", payment_key
    )
    claims = await approval.db.fetchval(
        "SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id = $2", CONSUMER, event_id
    )
    return attempts, claims


async def test_an_attempt_is_inserted_verified_with_its_event_claimed(approval: Approval) -> None:
    order_id = await placed_intent(approval)
    key, event_id = f"pk-{uuid.uuid4().hex}", uuid.uuid4()

    received = await insert(approval, await read(approval, order_id, key), key, event_id)

    assert received is Received.VERIFIED
    assert await written(approval, key, event_id) == (1, 1)
    attempt = await approval.attempt(key)
    assert (attempt["state"], attempt["expected_amount"]) == ("VERIFIED", 50_000)


async def test_an_intent_changed_since_it_was_read_writes_nothing(approval: Approval) -> None:
    order_id = await placed_intent(approval)
    key, event_id = f"pk-{uuid.uuid4().hex}", uuid.uuid4()
    as_read = await read(approval, order_id, key)
    await approval.db.execute(
        "UPDATE order_intents SET status = 'EXPIRED' WHERE order_id = $1", order_id
    )

    assert await insert(approval, as_read, key, event_id) is Received.STALE
    assert await written(approval, key, event_id) == (0, 0)


async def test_another_attempt_taking_the_order_meanwhile_makes_the_write_stale(
    approval: Approval,
) -> None:
    order_id = await placed_intent(approval)
    first, second = f"pk-{uuid.uuid4().hex}", f"pk-{uuid.uuid4().hex}"
    read_by_second = await read(approval, order_id, second)
    assert await insert(approval, await read(approval, order_id, first), first, uuid.uuid4()) is (
        Received.VERIFIED
    )
    event_id = uuid.uuid4()

    assert await insert(approval, read_by_second, second, event_id) is Received.STALE
    assert await written(approval, second, event_id) == (0, 0)


async def test_an_event_handled_before_writes_nothing_again(approval: Approval) -> None:
    order_id = await placed_intent(approval)
    key, event_id = f"pk-{uuid.uuid4().hex}", uuid.uuid4()
    await insert(approval, await read(approval, order_id, key), key, event_id)

    again = await insert(approval, await read(approval, order_id, key), key, event_id)

    assert again is Received.DUPLICATE
    assert await written(approval, key, event_id) == (1, 1)


async def test_a_payment_key_presented_again_keeps_the_first_attempt(approval: Approval) -> None:
    order_id = await placed_intent(approval)
    key = f"pk-{uuid.uuid4().hex}"
    await insert(approval, await read(approval, order_id, key), key, uuid.uuid4())
    second_event = uuid.uuid4()

    again = await insert(approval, await read(approval, order_id, key), key, second_event)

    assert again is Received.PRESENTED_AGAIN
    assert await written(approval, key, second_event) == (1, 1)
