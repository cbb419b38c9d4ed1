"""Tampering and forgery: never confirmed, each recorded as a security event with the rejection,
listed for operators and counted."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from prometheus_client import REGISTRY

from services.approval import security
from shared.events import (
    Event,
    OrderPlaced,
    PaymentApproved,
    PaymentAuthenticated,
    PaymentRejected,
    utcnow,
)
from tests.integration.approval.conftest import Approval, order_placed


def counted(kind: str) -> float:
    value = REGISTRY.get_sample_value("approval_security_events_total", {"kind": kind})
    return value or 0.0


async def events(approval: Approval) -> list[dict[str, Any]]:
    rows = await approval.db.fetch("SELECT * FROM security_events ORDER BY id")
    return [dict(row) for row in rows]


async def placed(approval: Approval, amount: int = 50_000) -> OrderPlaced:
    order = order_placed(amount=amount)
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    return order


def presented_for(
    order: OrderPlaced, authenticated: PaymentAuthenticated, **changes: Any
) -> PaymentAuthenticated:
    """``authenticated`` (the PG's, for another order or none) presented with ``order``'s id."""
    update = {"order_id": order.order_id, "correlation_id": order.order_id, **changes}
    return authenticated.model_copy(update=update)


async def test_a_tampered_amount_is_recorded_with_both_amounts_and_the_client(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order = await placed(approval, 50_000)
    before = counted("AMOUNT_MISMATCH")
    tampered = approval.authenticated(order, amount=100)

    await approval.publish(tampered)
    rejected = await approval.next_output(PaymentRejected)

    assert rejected.reason == "AMOUNT_MISMATCH"
    assert approval.pg.confirms == []
    [event] = await events(approval)
    assert event["kind"] == "AMOUNT_MISMATCH"
    assert (event["order_id"], event["payment_key"]) == (order.order_id, tampered.payment_key)
    assert (event["expected"], event["presented"]) == ("50000", "100")
    assert (event["client_ip"], event["user_agent"]) == ("127.0.0.1", "pytest")
    assert event["occurred_at"] >= tampered.received_at
    assert counted("AMOUNT_MISMATCH") == before + 1


async def test_a_payment_key_authenticated_for_another_order_is_never_confirmed(
    approval: Approval,
) -> None:
    await approval.start_worker()
    mine, theirs = await placed(approval, 50_000), await placed(approval, 1_000)
    before = counted("FOREIGN_PAYMENT_KEY")
    # The PG authenticated the cheap order; the browser presents its key for the dear one.
    forged = presented_for(mine, approval.authenticated(theirs), amount=50_000)

    await approval.publish(forged)
    rejected = await approval.next_output(PaymentRejected)

    # The PG's record of the key says whose it is: refused before any confirm.
    assert (rejected.reason, rejected.pg_code) == ("NOT_AUTHENTICATED", None)
    assert approval.pg.confirms == []
    assert approval.pg.approved(mine.order_id) == approval.pg.approved(theirs.order_id) == []
    [event] = await events(approval)
    assert (event["kind"], event["order_id"]) == ("FOREIGN_PAYMENT_KEY", mine.order_id)
    assert (event["expected"], event["presented"]) == (mine.order_id, theirs.order_id)
    assert counted("FOREIGN_PAYMENT_KEY") == before + 1
    assert await approval.intent_status(mine.order_id) == "PAYABLE"


async def test_a_made_up_payment_key_is_never_confirmed(approval: Approval) -> None:
    await approval.start_worker()
    order = await placed(approval)
    before = counted("UNKNOWN_PAYMENT_KEY")
    made_up = PaymentAuthenticated(
        correlation_id=order.order_id,
        order_id=order.order_id,
        payment_key=f"made_up_{uuid.uuid4().hex}",
        amount=order.amount,
        payment_type="NORMAL",
        received_at=utcnow(),
        client_ip="203.0.113.9",
        user_agent="curl/8",
    )

    await approval.publish(made_up)
    rejected = await approval.next_output(PaymentRejected)

    assert rejected.reason == "NOT_AUTHENTICATED"
    assert approval.pg.confirms == []
    assert approval.pg.approved(order.order_id) == []
    [event] = await events(approval)
    assert (event["kind"], event["presented"]) == ("UNKNOWN_PAYMENT_KEY", made_up.payment_key)
    assert (event["client_ip"], event["user_agent"]) == ("203.0.113.9", "curl/8")
    assert counted("UNKNOWN_PAYMENT_KEY") == before + 1


async def test_a_made_up_payment_key_does_not_hold_the_order_from_the_buyers_own(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order = await placed(approval)
    made_up = presented_for(order, approval.authenticated(order)).model_copy(
        update={"payment_key": f"made_up_{uuid.uuid4().hex}"}
    )
    real = approval.authenticated(order)

    await approval.publish(made_up, real)
    outcomes = {type(e): e for e in [await approval.next_output(Event) for _ in range(2)]}

    rejected, approved = outcomes[PaymentRejected], outcomes[PaymentApproved]
    assert isinstance(rejected, PaymentRejected)
    assert isinstance(approved, PaymentApproved)
    assert (rejected.payment_key, rejected.reason) == (made_up.payment_key, "NOT_AUTHENTICATED")
    assert approved.payment_key == real.payment_key
    assert [c.payment_key for c in approval.pg.confirms] == [real.payment_key]


async def test_a_key_the_pg_authenticated_in_another_currency_is_never_confirmed(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order = await placed(approval, 50_000)
    presented = approval.authenticated(order)
    approval.pg.ledger[presented.payment_key].currency = "USD"

    await approval.publish(presented)
    rejected = await approval.next_output(PaymentRejected)

    assert rejected.reason == "AMOUNT_MISMATCH"
    assert approval.pg.confirms == []
    [event] = await events(approval)
    assert (event["expected"], event["presented"]) == ("50000 KRW", "50000 USD")


async def test_when_the_pg_cannot_say_whose_key_it_is_the_confirm_decides(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order = await placed(approval)
    approval.pg.authentication_faults = ["timeout"]
    presented = approval.authenticated(order)

    await approval.publish(presented)
    approved = await approval.next_output(PaymentApproved)

    assert approved.payment_key == presented.payment_key
    assert approval.pg.authentications == [presented.payment_key]


async def test_another_authentication_for_a_paid_order_is_recorded_as_a_replay(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order = await placed(approval)
    first = approval.authenticated(order)
    await approval.publish(first)
    await approval.next_output(PaymentApproved)
    before = counted("ALREADY_PAID")

    replayed = approval.authenticated(order)
    await approval.publish(replayed)
    rejected = await approval.next_output(PaymentRejected)

    assert rejected.reason == "ALREADY_PAID"
    assert len(approval.pg.approved(order.order_id)) == 1
    [event] = await events(approval)
    assert event["kind"] == "ALREADY_PAID"
    assert (event["expected"], event["presented"]) == (first.payment_key, replayed.payment_key)
    assert counted("ALREADY_PAID") == before + 1


async def test_a_card_decline_or_an_expired_order_is_no_security_event(
    approval: Approval,
) -> None:
    approval.pg.decline_with = "REJECT_CARD_PAYMENT"
    await approval.start_worker()
    declined = await placed(approval)
    await approval.publish(approval.authenticated(declined))
    assert (await approval.next_output(PaymentRejected)).pg_code == "REJECT_CARD_PAYMENT"

    expired = order_placed(expires_in=timedelta(seconds=-1))
    await approval.publish(expired)
    await approval.intent_known(expired.order_id)
    await approval.publish(approval.authenticated(expired))
    assert (await approval.next_output(PaymentRejected)).reason == "ORDER_EXPIRED"

    assert await events(approval) == []


async def test_operators_list_the_events_latest_first_within_the_window(
    approval: Approval,
) -> None:
    await approval.start_worker()
    order = await placed(approval, 50_000)
    await approval.publish(approval.authenticated(order, amount=100))
    await approval.next_output(PaymentRejected)
    await approval.publish(approval.authenticated(order, amount=200))
    await approval.next_output(PaymentRejected)

    listed = await security.fetch(approval.settings, None, 10)
    table = security.render(listed)
    later = await security.fetch(approval.settings, utcnow() + timedelta(seconds=5), 10)

    assert [e.presented for e in listed] == ["200", "100"]
    assert order.order_id in table
    assert "AMOUNT_MISMATCH" in table
    assert table.endswith("2 security event(s)")
    assert later == []
    assert len(await security.fetch(approval.settings, None, 1)) == 1
