"""Recording the PG's approval in one statement: only for the attempt as it was read, and the
intent paid only by an approval of its own order and amount."""

from __future__ import annotations

from services.approval import repository as repo
from services.approval.domain import VERIFIED, Attempt, PgPayment, confirm_idempotency_key
from shared import outbox
from shared.events import PaymentApproved, utcnow
from shared.topology import APPROVAL_PAYMENTS
from tests.integration.approval.conftest import Approval


async def confirming(approval: Approval, owner: str) -> Attempt:
    """An attempt verified for a placed intent and claimed by ``owner``."""
    event = approval.authenticated(await approval.placed_intent())
    async with approval.db.acquire() as conn:
        await repo.insert_judged(
            conn, APPROVAL_PAYMENTS.name, await approval.intent_as_read(event), event, VERIFIED
        )
        key = confirm_idempotency_key(event.payment_key)
        claimed = await repo.claim(conn, event.payment_key, owner, 30, key)
    assert claimed is not None
    return claimed


def approval_of(attempt: Attempt, amount: int) -> tuple[PgPayment, outbox.Outgoing]:
    payment = PgPayment(attempt.payment_key, attempt.order_id, "DONE", amount, amount, "카드")
    event = PaymentApproved(
        correlation_id=attempt.order_id,
        order_id=attempt.order_id,
        payment_key=attempt.payment_key,
        amount=amount,
        method="카드",
        approved_at=utcnow(),
        authenticated_at=attempt.authenticated_at,
    )
    return payment, outbox.Outgoing.of(event)


async def record(
    approval: Approval, attempt: Attempt, amount: int, owner: str
) -> repo.ApprovalRecorded | None:
    payment, event = approval_of(attempt, amount)
    async with approval.db.acquire() as conn:
        return await repo.record_approval(conn, attempt, payment, event, owner=owner)


async def test_the_holders_approval_of_the_stored_amount_pays_the_intent(
    approval: Approval,
) -> None:
    attempt = await confirming(approval, "worker-1")
    assert attempt.expected_amount is not None

    recorded = await record(approval, attempt, attempt.expected_amount, "worker-1")

    assert recorded is not None
    assert (recorded.agrees, recorded.paid) == (True, True)
    assert (await approval.attempt(attempt.payment_key))["state"] == "APPROVED"
    assert await approval.intent_status(attempt.order_id) == "PAID"


async def test_an_approval_recorded_by_a_worker_that_lost_the_lease_changes_nothing(
    approval: Approval,
) -> None:
    attempt = await confirming(approval, "worker-1")
    assert attempt.expected_amount is not None

    recorded = await record(approval, attempt, attempt.expected_amount, "worker-2")

    assert recorded is None
    assert (await approval.attempt(attempt.payment_key))["state"] == "CONFIRMING"
    assert await approval.intent_status(attempt.order_id) == "PAYABLE"
    assert await approval.db.fetchval("SELECT count(*) FROM outbox") == 0


async def test_an_approval_of_another_amount_is_recorded_but_leaves_the_intent_payable(
    approval: Approval,
) -> None:
    attempt = await confirming(approval, "worker-1")

    recorded = await record(approval, attempt, 100, "worker-1")

    assert recorded is not None
    assert (recorded.agrees, recorded.paid) == (False, False)
    row = await approval.attempt(attempt.payment_key)
    assert (row["state"], row["approved_amount"]) == ("APPROVED", 100)
    assert await approval.intent_status(attempt.order_id) == "PAYABLE"
