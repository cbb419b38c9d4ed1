"""`python -m deploy.observe` (`make observe`): Prometheus, natively, on the processes `make run`
started: it reads ``RUN_DIR/prometheus-targets.json`` (file-based service discovery, written by
:mod:`deploy.stack`; re-read when it changes) and the alert rules, keeps its data under
``RUN_DIR/prometheus`` and listens on 127.0.0.1:``PROMETHEUS_PORT`` (9090). Debian's
``prometheus`` package provides the binary (``make system-deps``); it is built without the React
UI, so its pages are the classic ones (``/graph``, ``/classic/alerts``; ``/alerts`` is a 404)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from deploy.stack import ROOT

RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
TARGETS = "prometheus-targets.json"


def render_config(run_dir: Path, scrape_interval: str = "5s") -> str:
    """Prometheus' configuration (JSON is YAML): every process of the targets file, the alert
    rules."""
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {
                "job_name": "payments",
                "file_sd_configs": [{"files": [str(run_dir / TARGETS)], "refresh_interval": "10s"}],
            }
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def write_config(run_dir: Path, scrape_interval: str = "5s") -> Path:
    """``RUN_DIR/prometheus.yml``, from :func:`render_config`."""
    config = run_dir / "prometheus.yml"
    config.write_text(render_config(run_dir, scrape_interval))
    return config


def command(binary: str, config: Path, run_dir: Path, port: int) -> list[str]:
    return [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={run_dir / 'prometheus'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=2d",
    ]


def main() -> None:
    """Write the configuration, print the URL, become Prometheus (Ctrl-C stops it)."""
    binary = shutil.which("prometheus")
    if binary is None:
        sys.exit("prometheus is not installed: make system-deps (Debian's package)")
    run_dir = Path(os.environ.get("RUN_DIR") or ROOT / ".run")
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / TARGETS).exists():
        print(f"  no {run_dir / TARGETS} yet: start `make run`; Prometheus picks it up then")
    config = write_config(run_dir)
    port = int(os.environ.get("PROMETHEUS_PORT") or 9090)
    print(f"\n  Prometheus:  http://127.0.0.1:{port}/  (alerts: /classic/alerts, graph: /graph)\n")
    sys.stdout.flush()
    os.execv(binary, command(binary, config, run_dir, port))  # noqa: S606


if __name__ == "__main__":
    main()
