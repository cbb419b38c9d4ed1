"""`make observe`'s Prometheus configuration: the file-SD targets `make run` writes and the alert
rules, accepted by promtool."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy import observe
from deploy.stack import StackConfig, write_metrics_targets


def test_the_configuration_reads_the_run_directorys_targets_and_the_alert_rules(
    tmp_path: Path,
) -> None:
    config = yaml.safe_load(observe.render_config(tmp_path))
    (job,) = config["scrape_configs"]
    assert job["file_sd_configs"][0]["files"] == [str(tmp_path / "prometheus-targets.json")]
    assert config["rule_files"] == [str(observe.RULES)]


def test_promtool_accepts_the_configuration_with_make_runs_targets(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run `make system-deps` (Debian's prometheus)")
    write_metrics_targets(StackConfig(tmp_path, "postgresql://db/payments", "amqp://broker/"))
    config = tmp_path / "prometheus.yml"
    config.write_text(observe.render_config(tmp_path))
    checked = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_make_run_lists_one_target_group_per_process_with_its_role(tmp_path: Path) -> None:
    config = StackConfig(tmp_path, "postgresql://db/p", "amqp://b/", approval_workers=3)
    groups = json.loads(write_metrics_targets(config).read_text())
    listed = sorted((g["labels"]["role"], g["labels"]["instance"], *g["targets"]) for g in groups)
    assert listed == [
        ("approval", "approval-0", "127.0.0.1:9110"),
        ("approval", "approval-1", "127.0.0.1:9111"),
        ("approval", "approval-2", "127.0.0.1:9112"),
        ("checkout", "checkout", "127.0.0.1:9102"),
        ("ops", "ops", "127.0.0.1:9103"),
        ("order", "order", "127.0.0.1:9101"),
        ("sandbox", "sandbox", "127.0.0.1:9109"),
    ]
