"""The operator console's settings and pure rules: live mode refuses default and weak operator
credentials, a console without credentials is closed, and what a page may show of a finding."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.approval.domain import SecurityEvent, SecurityKind
from services.ops.config import Settings
from services.ops.service import InvalidInput, checked_id, shown_finding
from shared.posture import PaymentsMode

OWN_DB = "postgresql://payments_approval:Zq8-long-own-password@db.internal:5432/payments"
OWN_MQ = "amqp://payments.ops:Zq8-long-own-password@mq.internal:5672/"
STRONG = "correct-horse-battery-staple"


def live(**changes: object) -> Settings:
    values: dict[str, object] = {
        "payments_mode": PaymentsMode.LIVE,
        "role_database_url": OWN_DB,
        "role_amqp_url": OWN_MQ,
        "operator_user": "alice",
        "operator_password": STRONG,
    }
    return Settings.model_validate({**values, **changes})


def test_a_live_console_with_a_strong_password_passes() -> None:
    assert live().posture_problems() == []


@pytest.mark.parametrize(
    ("user", "password"),
    [("alice", "admin"), ("admin", STRONG), ("alice", "dev-only-operator-password"), ("a", "a")],
)
def test_live_mode_refuses_default_operator_credentials(user: str, password: str) -> None:
    problems = live(operator_user=user, operator_password=password).posture_problems()

    assert any(p.startswith("OPERATOR_PASSWORD") for p in problems)


def test_live_mode_refuses_a_short_operator_password() -> None:
    [problem] = live(operator_password="Tr0ub4dor&3").posture_problems()

    assert problem.startswith("OPERATOR_PASSWORD is weak")


def test_sandbox_mode_takes_any_operator_password() -> None:
    settings = Settings.model_validate({"operator_user": "ops", "operator_password": "pw"})

    assert settings.posture_problems() == []


@pytest.mark.parametrize(
    "changes",
    [
        {"operator_user": None, "operator_password": None},
        {"operator_user": "alice", "operator_password": None},
        {"operator_user": None, "operator_password": STRONG},
        {"operator_user": "alice", "operator_password": ""},
    ],
)
def test_the_console_is_closed_without_both_credentials(changes: dict[str, object]) -> None:
    assert live(**changes).credentials is None


def test_empty_credentials_are_not_configured_and_live_mode_starts_closed() -> None:
    settings = live(operator_user="", operator_password="")

    assert settings.credentials is None
    assert settings.posture_problems() == []


def event(kind: SecurityKind, expected: str, presented: str) -> SecurityEvent:
    return SecurityEvent(
        occurred_at=datetime(2026, 12, 1, tzinfo=UTC),
        kind=kind,
        order_id="order-1",
        payment_key="tpk_0123456789abcdef",
        expected=expected,
        presented=presented,
        client_ip=None,
        user_agent=None,
    )


def test_a_finding_that_holds_payment_keys_is_shown_masked() -> None:
    shown = shown_finding(event(SecurityKind.ALREADY_PAID, "tpk_first_key_0001", "tpk_other_9999"))

    assert shown == ("tpk_…0001", "tpk_…9999")


def test_a_finding_of_amounts_is_shown_as_it_is() -> None:
    assert shown_finding(event(SecurityKind.AMOUNT_MISMATCH, "15000", "100")) == ("15000", "100")


@pytest.mark.parametrize("value", ["", "   ", "a" * 201, "rf_1\nx", "rf_\x00"])
def test_an_identifier_that_is_missing_or_unprintable_is_refused(value: str) -> None:
    with pytest.raises(InvalidInput):
        checked_id(value, "refund id")
