"""The operator's commands: what is stuck, which refunds need a person, and retrying one."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from services.approval import operator_cli
from services.approval.domain import cancel_idempotency_key
from tests.integration.approval.conftest import Approval


async def failed_refund(approval: Approval) -> str:
    refund_id = f"refund-{uuid.uuid4().hex[:8]}"
    await approval.db.execute(
        "INSERT INTO refunds (refund_id, order_id, payment_key, amount, reason, state,"
        " idempotency_key, event_id, pg_code, pg_message)"
        " VALUES ($1, 'order-1', 'pk_1', 1000, 'r', 'FAILED', $2, $3, 'REFUND_REJECTED',"
        " 'refused by the card company')",
        refund_id,
        cancel_idempotency_key(refund_id),
        uuid.uuid4(),
    )
    return refund_id


async def test_failed_refunds_are_listed_with_the_pgs_code(
    approval: Approval, capsys: pytest.CaptureFixture[str]
) -> None:
    refund_id = await failed_refund(approval)

    code = await _run(operator_cli.refunds, approval, ["--state", "FAILED"])

    out = capsys.readouterr().out
    assert code == 0
    assert refund_id in out
    assert "REFUND_REJECTED" in out


async def test_retrying_a_failed_refund_requests_it_again_under_a_new_key(
    approval: Approval,
) -> None:
    refund_id = await failed_refund(approval)

    code = await _run(operator_cli.refunds, approval, ["retry", refund_id])

    row = await approval.db.fetchrow(
        "SELECT state, generation, idempotency_key FROM refunds WHERE refund_id = $1", refund_id
    )
    assert code == 0
    assert row is not None
    assert (row["state"], row["generation"]) == ("REQUESTED", 1)
    assert row["idempotency_key"] == cancel_idempotency_key(refund_id, 1)


async def test_retrying_a_refund_that_did_not_fail_changes_nothing(approval: Approval) -> None:
    assert await _run(operator_cli.refunds, approval, ["retry", "no-such-refund"]) == 1


async def test_an_attempt_unsettled_past_the_window_is_listed_as_stuck(
    approval: Approval, capsys: pytest.CaptureFixture[str]
) -> None:
    await approval.db.execute(
        "INSERT INTO payment_attempts (payment_key, order_id, presented_amount, expected_amount,"
        " payment_type, authenticated_at, state, idempotency_key, event_id)"
        " VALUES ('pk_stuck', 'order-stuck', 1000, 1000, 'NORMAL', now() - interval '11 minutes',"
        " 'UNKNOWN', 'confirm-x', $1)",
        uuid.uuid4(),
    )

    await _run(operator_cli.stuck, approval, [])

    assert "order-stuck" in capsys.readouterr().out


async def _run(command: operator_cli.Command, approval: Approval, argv: list[str]) -> int:
    """The command runs its own event loop, as from a shell: on a thread of its own."""
    return await asyncio.to_thread(command, approval.settings, argv)
