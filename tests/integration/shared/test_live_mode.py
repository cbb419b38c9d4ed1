"""``PAYMENTS_MODE=live`` on the real entry points: a role with a bad setting exits with status 2
and one line on stderr naming it, before it connects to anything (the URLs point nowhere)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[3]
NOWHERE_DB = "postgresql://payments_x:Zq8-long-own-password@127.0.0.1:9/payments"
NOWHERE_MQ = "amqp://payments.x:Zq8-long-own-password@127.0.0.1:9/"
GOOD = {
    "PAYMENTS_MODE": "live",
    "SEED_DEMO_DATA": "false",
    "TOSS_SECRET_KEY": "live_sk_0123456789abcdef",
    "TOSS_API_BASE": "https://api.tosspayments.com",
    **{f"{role}_DATABASE_URL": NOWHERE_DB for role in ("ORDER", "CHECKOUT", "APPROVAL", "OPS")},
    **{f"{role}_AMQP_URL": NOWHERE_MQ for role in ("ORDER", "CHECKOUT", "APPROVAL", "OPS")},
}


def start(role: str, *args: str, **changes: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_URL", "_KEY"))}
    env.update({**GOOD, **changes})
    return subprocess.run(
        [sys.executable, "-m", f"services.{role}", *(args or ("migrate",))],
        cwd=ROOT,
        env={k: v for k, v in env.items() if v != "<unset>"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("role", "changes", "named"),
    [
        ("approval", {"TOSS_SECRET_KEY": "<unset>"}, "TOSS_SECRET_KEY"),
        (
            "approval",
            {"TOSS_SECRET_KEY": "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R"},
            "TOSS_SECRET_KEY",
        ),
        ("approval", {"TOSS_API_BASE": "http://127.0.0.1:8090"}, "TOSS_API_BASE"),
        ("approval", {"APPROVAL_DATABASE_URL": "<unset>"}, "APPROVAL_DATABASE_URL"),
        ("order", {"SEED_DEMO_DATA": "true"}, "SEED_DEMO_DATA"),
        (
            "order",
            {"ORDER_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/payments"},
            "ORDER_DATABASE_URL",
        ),
        ("order", {"OPERATOR_USER": "ops", "OPERATOR_PASSWORD": "admin"}, "OPERATOR_PASSWORD"),
        ("checkout", {"CHECKOUT_AMQP_URL": "amqp://guest:guest@127.0.0.1:9/"}, "CHECKOUT_AMQP_URL"),
        ("sandbox", {}, "PAYMENTS_MODE"),
    ],
)
def test_live_mode_refuses_to_start_with_one_line_naming_the_setting(
    role: str, changes: dict[str, str], named: str
) -> None:
    done = start(role, **changes)

    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"{role}: refusing to start in live mode: {named}")


def test_sandbox_mode_refuses_a_live_key() -> None:
    done = start("approval", PAYMENTS_MODE="sandbox", TOSS_API_BASE="http://127.0.0.1:9")

    assert done.returncode == 2
    assert "TOSS_SECRET_KEY is a live key" in done.stderr


@pytest.mark.parametrize(
    ("password", "named"),
    [
        ("admin", "OPERATOR_PASSWORD is missing or a default"),
        ("dev-only-operator-password", "OPERATOR_PASSWORD is missing or a default"),
        ("Tr0ub4dor&3", "OPERATOR_PASSWORD is weak"),
    ],
)
def test_the_console_refuses_to_start_live_with_a_default_or_weak_password(
    password: str, named: str
) -> None:
    done = start("ops", "serve", OPERATOR_USER="alice", OPERATOR_PASSWORD=password)

    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"ops: refusing to start in live mode: {named}")
