"""The alert rules (deploy/prometheus/rules.yml) are valid and each one is unit-tested by
`promtool test rules` (deploy/prometheus/rules-test.yml); promtool comes from Debian's
`prometheus` package (deploy/system-deps.sh)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "rules.yml"
RULES_TEST = RULES_DIR / "rules-test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: run `make system-deps` (Debian's prometheus package, "
            "apt-get install --no-install-recommends prometheus)"
        )
    return subprocess.run(
        [path, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120, check=False
    )


def alert_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"]}


def alerts_with_unit_tests() -> set[str]:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    return {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])}


def test_promtool_accepts_the_rules_file() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_rule_passes_its_promtool_unit_tests() -> None:
    tested = promtool("test", "rules", str(RULES_TEST))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_rule_has_a_unit_test() -> None:
    assert alert_names() - alerts_with_unit_tests() == set()


def test_the_rules_cover_the_alerts_operators_asked_for() -> None:
    asked = {
        "PaymentStuckUnknown",
        "OutboxLagging",
        "DeadLetter",
        "PgMerchantConfiguration",
        "DeclineRateJump",
        "RefundsFailing",
        "ReconciliationDiscrepancies",
        "RoleDown",
    }
    assert asked <= alert_names()


def test_promtool_accepts_composes_prometheus_configuration(tmp_path: Path) -> None:
    config = yaml.safe_load((RULES_DIR / "prometheus-compose.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]  # where compose mounts it
    config["rule_files"] = [str(RULES)]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    checked = promtool("check", "config", str(local))
    assert checked.returncode == 0, checked.stdout + checked.stderr
