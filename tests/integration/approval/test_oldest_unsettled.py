"""The age of the oldest unsettled authentication is exported every reconcile round."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import REGISTRY

from services.approval import repository as repo
from shared.events import PaymentApproved, utcnow
from tests.integration.approval.conftest import Approval, eventually, order_placed
from tests.plans import generic_plan

GAUGE = "approval_oldest_unsettled_authentication_seconds"


def oldest_unsettled() -> float:
    return REGISTRY.get_sample_value(GAUGE) or 0.0


async def test_the_oldest_unsettled_age_rises_while_a_payment_waits_and_drops_once_it_settles(
    approval: Approval,
) -> None:
    order = order_placed()
    early = approval.authenticated(order).model_copy(
        update={"received_at": utcnow() - timedelta(seconds=90)}
    )
    await approval.start_worker()
    await approval.publish(early)  # before its OrderPlaced: it waits for the order

    async def waiting_is_visible() -> bool:
        return oldest_unsettled() >= 90

    await eventually(waiting_is_visible)
    await approval.publish(order)
    await approval.next_output(PaymentApproved)

    async def nothing_waits() -> bool:
        return oldest_unsettled() == 0

    await eventually(nothing_waits, within=5)


async def test_the_oldest_unsettled_age_is_read_through_the_unsettled_index(
    approval: Approval,
) -> None:
    async with approval.db.acquire() as conn:
        plan = await generic_plan(conn, repo.OLDEST_UNSETTLED)
    assert "payment_attempts_unsettled" in plan
