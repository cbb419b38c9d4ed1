"""PAYMENTS_MODE: what live refuses, what sandbox refuses, each naming the offending setting."""

from __future__ import annotations

import pytest

from services.approval.config import Settings as ApprovalSettings
from services.checkout.config import Settings as CheckoutSettings
from services.order.config import Settings as OrderSettings
from services.sandbox.config import Settings as SandboxSettings
from shared import posture
from shared.posture import PaymentsMode

LIVE = PaymentsMode.LIVE
SANDBOX = PaymentsMode.SANDBOX
OWN_DB = "postgresql://payments_order:Zq8-long-own-password@db.internal:5432/payments"
OWN_MQ = "amqp://payments.order:Zq8-long-own-password@mq.internal:5672/"


def live_order(**changes: object) -> OrderSettings:
    values: dict[str, object] = {
        "payments_mode": LIVE,
        "role_database_url": OWN_DB,
        "role_amqp_url": OWN_MQ,
        "seed_demo_data": False,
    }
    return OrderSettings.model_validate({**values, **changes})


def live_approval(**changes: object) -> ApprovalSettings:
    values: dict[str, object] = {
        "payments_mode": LIVE,
        "role_database_url": OWN_DB,
        "role_amqp_url": OWN_MQ,
        "toss_secret_key": "live_sk_0123456789abcdef",
        "toss_api_base": "https://api.tosspayments.com",
    }
    return ApprovalSettings.model_validate({**values, **changes})


def test_a_complete_live_configuration_passes() -> None:
    assert live_order().posture_problems() == []
    assert live_approval().posture_problems() == []


@pytest.mark.parametrize(
    ("changes", "setting"),
    [
        ({"toss_secret_key": None}, "TOSS_SECRET_KEY is missing"),
        ({"toss_secret_key": "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R"}, "TOSS_SECRET_KEY is not"),
        ({"toss_api_base": "http://127.0.0.1:8090"}, "TOSS_API_BASE"),
        ({"toss_api_base": "https://api.tosspayments.com.evil.example"}, "TOSS_API_BASE"),
        ({"role_database_url": None}, "APPROVAL_DATABASE_URL is missing"),
        (
            {"role_database_url": "postgresql://postgres@db.internal/payments"},
            "APPROVAL_DATABASE_URL uses a default",
        ),
        ({"role_amqp_url": "amqp://guest:guest@mq.internal/"}, "APPROVAL_AMQP_URL uses a default"),
        ({"operator_user": "ops", "operator_password": "admin"}, "OPERATOR_PASSWORD"),
    ],
)
def test_live_approval_refuses_and_names_the_setting(
    changes: dict[str, object], setting: str
) -> None:
    [problem] = live_approval(**changes).posture_problems()

    assert setting in problem


def test_live_order_refuses_demo_data() -> None:
    [problem] = live_order(seed_demo_data=True).posture_problems()

    assert problem.startswith("SEED_DEMO_DATA")


def test_live_order_seeds_nothing_by_default_and_sandbox_seeds() -> None:
    assert live_order(seed_demo_data=None).seeds_demo_data is False
    assert OrderSettings().seeds_demo_data is True


def test_live_checkout_refuses_the_default_broker_user() -> None:
    settings = CheckoutSettings(
        payments_mode=LIVE, role_database_url=OWN_DB, role_amqp_url="amqp://guest:guest@mq/"
    )

    [problem] = settings.posture_problems()

    assert problem.startswith("CHECKOUT_AMQP_URL uses a default credential")


def test_the_sandbox_never_runs_live() -> None:
    [problem] = SandboxSettings(payments_mode=LIVE).posture_problems()

    assert problem.startswith("PAYMENTS_MODE is live")


def test_sandbox_mode_refuses_a_live_secret_key() -> None:
    settings = ApprovalSettings(toss_secret_key="live_sk_0123456789abcdef")

    [problem] = settings.posture_problems()

    assert problem.startswith("TOSS_SECRET_KEY is a live key")


def test_sandbox_mode_takes_defaults_and_test_keys() -> None:
    assert ApprovalSettings().posture_problems() == []
    assert OrderSettings().posture_problems() == []
    assert SandboxSettings().posture_problems() == []


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:s3cret-and-long@db/payments",
        "postgresql://payments_order@db/payments",
        "postgresql://payments_order:postgres@db/payments",
        "postgresql://payments_order:payments_order@db/payments",
        "postgresql://payments_order:dev-only-order@postgres/payments",  # docker-compose.yml's
    ],
)
def test_a_default_or_missing_credential_is_refused_in_live_mode(url: str) -> None:
    assert posture.credential_problem(LIVE, "ORDER_DATABASE_URL", url) is not None
    assert posture.credential_problem(SANDBOX, "ORDER_DATABASE_URL", url) is None


def test_the_role_urls_come_from_each_roles_own_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDER_DATABASE_URL", OWN_DB)
    monkeypatch.setenv("CHECKOUT_DATABASE_URL", "postgresql://checkout@db/payments")

    assert OrderSettings().db_url == OWN_DB
    assert CheckoutSettings().db_url == "postgresql://checkout@db/payments"
    assert ApprovalSettings().db_url == ApprovalSettings().database_url  # sandbox fallback
