"""The report: a table on stdout, a JSON file with every figure, a PNG plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.measure import STAGE_NAMES, PaymentTimeline, percentile


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


PROFILER_ROW = ("cpu_ms_per_approval_other", "profiler")


def sweep_table(rows: list[dict[str, Any]]) -> str:
    """Approval workers against throughput, latency and CPU (the event-driven design)."""
    lines = [
        "approval workers sweep (event-driven)",
        f"{'workers':>8} {'approvals/s':>12} {'stage best 5 s':>15} {'p50 ms':>8} {'p95 ms':>8}"
        f" {'p99 ms':>8} {'CPU ms/appr':>12} {'violations':>11} {'not paid':>9}",
    ]
    for row in rows:
        latency = row["latency_ms"]
        lines.append(
            f"{row['approval_workers']:>8} {_fmt(row['approvals_per_s']):>12}"
            f" {_fmt(row['approval_peak_per_s']):>15} {_fmt(latency['p50']):>8}"
            f" {_fmt(latency['p95']):>8} {_fmt(latency['p99']):>8}"
            f" {_fmt(row['cpu_ms_per_approval']):>12} {_fmt(row['violations']):>11}"
            f" {_fmt(row['not_paid']):>9}"
        )
    return "\n".join(lines)


def table(result: dict[str, Any]) -> str:
    base = result.get("baseline") or {}
    rows: list[tuple[str, str | tuple[str, str]]] = [
        ("approvals per second", "approvals_per_s"),
        ("approval stage, best 5 s (/s)", "approval_peak_per_s"),
        ("approval stage, peak in flight", "approval_peak_in_flight"),
        ("latency p50 (ms)", ("latency_ms", "p50")),
        ("latency p95 (ms)", ("latency_ms", "p95")),
        ("latency p99 (ms)", ("latency_ms", "p99")),
        ("latency max (ms)", ("latency_ms", "max")),
        ("project CPU ms / approval", "cpu_ms_per_approval"),
        ("sandbox CPU ms / approval", ("cpu_ms_per_approval_other", "sandbox")),
        ("PostgreSQL CPU ms / approval", ("cpu_ms_per_approval_other", "postgresql")),
        ("RabbitMQ CPU ms / approval", ("cpu_ms_per_approval_other", "rabbitmq")),
        ("load generator CPU ms / approval", ("cpu_ms_per_approval_other", "load generator")),
        ("py-spy CPU ms / approval", PROFILER_ROW),
        ("SQL statements / approval", "sql_statements_per_approval"),
        ("approvals", "approvals"),
        ("confirm calls", "confirm_calls"),
        ("invariant violations", "violations"),
        ("not paid at the end", "not_paid"),
    ]
    lines = [f"{'':32} {'event-driven':>14} {'inline baseline':>16}"]
    for label, key in rows:
        if key == PROFILER_ROW and _get(result, key) == "":
            continue  # nothing was profiled
        lines.append(f"{label:32} {_fmt(_get(result, key)):>14} {_fmt(_get(base, key)):>16}")
    lag = float(result.get("client_lag_max_s") or 0.0)
    if lag > 1.0:
        rate = result.get("config", {}).get("rate")
        lines.append(
            f"\nnote: the load generator fell {lag:.1f} s behind its schedule: this run measured"
            f" capacity, not an open model at {rate}/s (lower --rate for latency figures)"
        )
    roles = result.get("cpu_ms_per_approval_by_role", {})
    if roles:
        lines.append("\nproject CPU ms per approval, by role (event-driven)")
        lines += [f"  {role:40} {ms:>8.2f}" for role, ms in sorted(roles.items())]
    stages = result.get("stages_ms", {})
    if stages:
        lines.append("\nwhere the time goes (event-driven, ms)      p50        p95")
        for name, figures in stages.items():
            lines.append(f"  {name:40} {figures['p50']:>8.2f} {figures['p95']:>10.2f}")
    return "\n".join(lines)


def _get(data: dict[str, Any], key: str | tuple[str, str]) -> Any:
    if isinstance(key, tuple):
        inner = data.get(key[0]) or {}
        return inner.get(key[1], "")
    return data.get(key, "")


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=2, default=str))


def plot(timelines: list[PaymentTimeline], path: Path) -> None:
    if not timelines:
        return
    start = min(t.received for t in timelines)
    buckets: dict[int, list[float]] = {}
    for t in timelines:
        buckets.setdefault(int((t.received - start).total_seconds()), []).append(t.total_ms)
    seconds = sorted(buckets)
    fig, (over_time, split) = plt.subplots(1, 2, figsize=(13, 4.8))
    for q in (50, 95, 99):
        over_time.plot(seconds, [percentile(buckets[s], q) for s in seconds], label=f"p{q}")
    over_time.set_xlabel("seconds into the run (by redirect arrival)")
    over_time.set_ylabel("redirect → order PAID (ms)")
    over_time.set_title("Latency percentiles over time")
    over_time.legend()
    medians = [percentile([t.stages_ms[i] for t in timelines], 50) for i in range(len(STAGE_NAMES))]
    p95s = [percentile([t.stages_ms[i] for t in timelines], 95) for i in range(len(STAGE_NAMES))]
    positions = range(len(STAGE_NAMES))
    split.barh([p - 0.2 for p in positions], medians, height=0.4, label="p50")
    split.barh([p + 0.2 for p in positions], p95s, height=0.4, label="p95")
    split.set_yticks(list(positions), STAGE_NAMES)
    split.invert_yaxis()
    split.set_xlabel("ms")
    split.set_title("Where the time goes, by stage")
    split.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
