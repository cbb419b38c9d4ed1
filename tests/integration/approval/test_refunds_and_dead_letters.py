"""Refunds through the PG's cancel, and messages that can never be handled."""

from __future__ import annotations

import asyncio
import time

from services.approval.domain import cancel_idempotency_key
from shared.events import PaymentApproved, PaymentAuthenticated, PaymentRefunded, RefundRequested
from shared.messaging import DEAD_LETTER_REASON
from shared.topology import APPROVAL_PAYMENTS
from tests.integration.approval.conftest import Approval, order_placed


async def test_a_refund_request_cancels_once_and_publishes_payment_refunded(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order = order_placed(amount=50_000)
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    authenticated = approval.authenticated(order)
    await approval.publish(authenticated)
    await approval.next_output(PaymentApproved)
    refund = RefundRequested(
        correlation_id=order.order_id,
        order_id=order.order_id,
        payment_key=authenticated.payment_key,
        refund_id="refund-0001",
        amount=None,
        reason="buyer changed their mind",
    )

    await approval.publish(refund, refund)
    refunded = await approval.next_output(PaymentRefunded)

    assert (refunded.refunded_amount, refunded.balance_amount) == (50_000, 0)
    assert refunded.fully_refunded
    await approval.no_more_outputs()
    assert [r.idempotency_key for r in approval.pg.cancel_requests] == [
        cancel_idempotency_key("refund-0001")
    ]


async def test_an_undecodable_message_ends_in_the_dead_letter_queue(approval: Approval) -> None:
    await approval.start_worker()
    await approval.publisher.publish(PaymentAuthenticated.routing_key, b"not json", "m-1")
    channel = await approval.connection.channel()
    dlq = await channel.get_queue(approval.topology.dead_letter_queue(APPROVAL_PAYMENTS))

    deadline = time.monotonic() + 10
    message = await dlq.get(fail=False)
    while message is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        message = await dlq.get(fail=False)

    assert message is not None
    assert message.body == b"not json"
    assert "not JSON" in str((message.headers or {}).get(DEAD_LETTER_REASON))
    await message.ack()
