"""What a refused attempt tells operators: the pure rules behind security events, and the
operator table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.approval.domain import (
    AttemptFacts,
    Intent,
    IntentStatus,
    PgPayment,
    Presentation,
    Reason,
    SecurityFinding,
    SecurityKind,
    decline_finding,
    rejection_finding,
)
from shared.operators import cell, parse_since, parse_window, table

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PRESENTED = Presentation("pk_presented", "order-aaaaaa", 100, NOW)
FACTS = AttemptFacts("pk_presented", "order-aaaaaa", 50_000, NOW)


def intent(status: IntentStatus = IntentStatus.PAYABLE, paid_by: str | None = None) -> Intent:
    return Intent("order-aaaaaa", status, 50_000, NOW + timedelta(minutes=30), paid_by)


def pg_payment(order_id: str = "order-aaaaaa", amount: int = 50_000) -> PgPayment:
    return PgPayment("pk_presented", order_id, "IN_PROGRESS", amount, amount)


def test_an_amount_mismatch_names_the_stored_and_the_presented_amount() -> None:
    finding = rejection_finding(Reason.AMOUNT_MISMATCH, PRESENTED, intent())

    assert finding == SecurityFinding(SecurityKind.AMOUNT_MISMATCH, "50000", "100")


def test_a_second_key_for_a_paid_order_names_the_key_that_paid_it() -> None:
    paid = intent(IntentStatus.PAID, paid_by="pk_first")

    finding = rejection_finding(Reason.ALREADY_PAID, PRESENTED, paid)

    assert finding == SecurityFinding(SecurityKind.ALREADY_PAID, "pk_first", "pk_presented")


@pytest.mark.parametrize(
    "reason", [Reason.ORDER_EXPIRED, Reason.ORDER_NOT_PAYABLE, Reason.PAYMENT_IN_PROGRESS]
)
def test_refusals_a_buyer_can_cause_innocently_are_no_finding(reason: Reason) -> None:
    assert rejection_finding(reason, PRESENTED, intent()) is None


def test_a_forbidden_confirm_names_the_order_the_pg_authenticated_the_key_for() -> None:
    finding = decline_finding("FORBIDDEN_REQUEST", FACTS, pg_payment("order-bbbbbb"), True)

    assert finding == SecurityFinding(
        SecurityKind.FOREIGN_PAYMENT_KEY, "order-aaaaaa", "order-bbbbbb"
    )


def test_a_forbidden_confirm_is_foreign_even_when_the_pg_does_not_say_whose() -> None:
    finding = decline_finding("FORBIDDEN_REQUEST", FACTS, None, False)

    assert finding is not None
    assert finding.kind is SecurityKind.FOREIGN_PAYMENT_KEY


def test_a_key_the_pg_never_issued_is_unknown() -> None:
    for code in ("NOT_FOUND_PAYMENT", "NOT_FOUND_PAYMENT_SESSION"):
        finding = decline_finding(code, FACTS, None, True)
        assert finding == SecurityFinding(
            SecurityKind.UNKNOWN_PAYMENT_KEY, "a paymentKey the PG issued", "pk_presented"
        )


def test_an_expired_session_of_a_real_payment_is_no_finding() -> None:
    assert decline_finding("NOT_FOUND_PAYMENT_SESSION", FACTS, pg_payment(), True) is None
    assert decline_finding("NOT_FOUND_PAYMENT_SESSION", FACTS, None, False) is None


def test_an_amount_the_pg_authenticated_differently_is_a_mismatch() -> None:
    finding = decline_finding("INVALID_REQUEST", FACTS, pg_payment(amount=100), True)

    assert finding == SecurityFinding(SecurityKind.AMOUNT_MISMATCH, "50000", "100")


def test_a_card_decline_is_no_finding() -> None:
    assert decline_finding("REJECT_CARD_PAYMENT", FACTS, pg_payment("order-bbbbbb"), True) is None


def test_since_takes_a_duration_back_from_now_or_an_iso_time() -> None:
    assert parse_since("15m", NOW) == NOW - timedelta(minutes=15)
    assert parse_since("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_since("7d", NOW) == NOW - timedelta(days=7)
    assert parse_since("2026-11-27T10:00:00", NOW) == NOW - timedelta(hours=2)
    assert parse_since("2026-11-27T19:00:00+09:00", NOW) == NOW - timedelta(hours=2)
    with pytest.raises(ValueError, match="yesterday"):
        parse_since("yesterday", NOW)


def test_table_cells_are_printable_single_lines_of_bounded_width() -> None:
    assert cell("evil\x1b[2J\nagent") == "evil?[2J?agent"
    assert cell(None) == "-"
    assert cell("x" * 50, width=10) == "x" * 9 + "…"
    lines = table(("a", "bb"), [("1", "22222"), ("333", None)]).splitlines()
    assert lines == ["a    bb", "---  -----", "1    22222", "333  -"]


def test_an_operator_listing_refuses_a_limit_below_one() -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_window("listing", ["--limit", "0"], datetime(2026, 1, 1, tzinfo=UTC))
    assert exit_.value.code == 2


def test_an_operator_listing_reads_since_as_a_duration_back_from_now() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert parse_window("listing", ["--since", "2h", "--limit", "5"], now) == (
        datetime(2026, 1, 1, 10, tzinfo=UTC),
        5,
    )
