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
        ("capacity (/s, p99 under the limit)", ("capacity", "rate")),
        ("main run: offered rate (/s)", "rate"),
        ("approvals per second", "approvals_per_s"),
        ("approval stage, best 5 s (/s)", "approval_peak_per_s"),
        ("approval stage, peak in flight", "approval_peak_in_flight"),
        ("latency p50 (ms)", ("latency_ms", "p50")),
        ("latency p95 (ms)", ("latency_ms", "p95")),
        ("latency p99 (ms)", ("latency_ms", "p99")),
        ("latency max (ms)", ("latency_ms", "max")),
        ("machine CPU ms / approval", "machine_cpu_ms_per_approval"),
        ("project CPU ms / approval", "cpu_ms_per_approval"),
        ("sandbox CPU ms / approval", ("cpu_ms_per_approval_other", "sandbox")),
        ("PostgreSQL CPU ms / approval", ("cpu_ms_per_approval_other", "postgresql")),
        ("RabbitMQ CPU ms / approval", ("cpu_ms_per_approval_other", "rabbitmq")),
        ("load generator CPU ms / approval", ("cpu_ms_per_approval_other", "load generator")),
        ("py-spy CPU ms / approval", PROFILER_ROW),
        ("SQL statements / approval", "sql_statements_per_approval"),
        ("statements / payment, order → PAID", ("per_payment", "statements")),
        ("events published / payment", ("per_payment", "events_published")),
        ("deliveries handled / payment", ("per_payment", "deliveries_handled")),
        ("approvals", "approvals"),
        ("confirm calls", "confirm_calls"),
        ("invariant violations", "violations"),
        ("not paid at the end", "not_paid"),
    ]
    lines = [f"{'':36} {'event-driven':>14} {'inline baseline':>16}"]
    for label, key in rows:
        if key == PROFILER_ROW and _get(result, key) == "":
            continue  # nothing was profiled
        lines.append(f"{label:36} {_fmt(_get(result, key)):>14} {_fmt(_get(base, key)):>16}")
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
    placing = result.get("placing_cpu_ms_per_payment", {})
    if placing:
        lines.append("\nCPU ms per payment placing it, order → both projections (event-driven)")
        lines += [f"  {name:40} {ms:>8.2f}" for name, ms in sorted(placing.items())]
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


def full(result: dict[str, Any]) -> str:
    """Every table of one run, in the order the issue lists them."""
    parts = [table(result)]
    if result.get("capacity"):
        parts.append(capacity_table(result))
    parts.append(per_payment_table(result.get("per_payment") or {}))
    if result.get("outage"):
        parts.append(outage_table(result["outage"]))
    if result.get("sweep"):
        parts.append(sweep_table(result["sweep"]))
    return "\n\n".join(parts)


def capacity_table(result: dict[str, Any]) -> str:
    """Each design's search, step by step; the capacities and their ratio."""
    limit = result.get("config", {}).get("p99_limit_ms", 100)
    lines = [
        f"capacity search (held: all paid, none refused, p99 < {_fmt(limit)} ms)",
        f"{'design':>16} {'offered/s':>10} {'held':>5} {'approvals/s':>12} {'p50 ms':>9}"
        f" {'p99 ms':>9} {'machine CPU ms/appr':>20}",
    ]
    for label, figures in (("event-driven", result), ("inline baseline", result.get("baseline"))):
        for step in ((figures or {}).get("capacity") or {}).get("steps", []):
            latency = step["latency_ms"]
            lines.append(
                f"{label:>16} {_fmt(step['rate']):>10} {'yes' if step['held'] else 'no':>5}"
                f" {_fmt(step['approvals_per_s']):>12} {_fmt(latency['p50']):>9}"
                f" {_fmt(latency['p99']):>9} {_fmt(step['machine_cpu_ms_per_approval']):>20}"
            )
    ratio = result.get("capacity_ratio")
    lines.append(f"capacity ratio, event-driven / inline: {_fmt(ratio) if ratio else 'n/a'}")
    return "\n".join(lines)


HEAVIEST_SHOWN = 10


def per_payment_table(figures: dict[str, Any]) -> str:
    """Events, deliveries and statements per payment, order placed → PAID (event-driven, main
    run; the sandbox's statements are the PG's, the authentication in its window included)."""
    lines = ["per payment, order placed → PAID (event-driven, main run)"]
    for title, key in (
        ("events published (outbox rows)", "events_published_by_key"),
        ("deliveries handled (inbox rows)", "deliveries_handled_by_consumer"),
        ("SQL statements by service role (pg_stat_statements)", "statements_by_role"),
    ):
        lines.append(f"  {title}")
        entries = figures.get(key) or {}
        lines += [f"    {name:48} {value:>6.2f}" for name, value in entries.items()]
        if not entries:
            lines.append("    n/a")
    lines.append("  heaviest statements (ms and calls per payment, role, statement)")
    for row in (figures.get("heaviest_statements") or [])[:HEAVIEST_SHOWN]:
        lines.append(
            f"    {row['ms_per_payment']:>7.3f} {row['calls_per_payment']:>5.2f}"
            f" {row['role']:9} {row['statement'][:100]}"
        )
    return "\n".join(lines)


def outage_table(outage: dict[str, dict[str, Any]]) -> str:
    """The database stopped during a run, for both designs."""
    rows = (
        ("offered rate (/s)", "rate"),
        ("database down (s)", "outage_s"),
        ("payments", "payments"),
        ("paid", "paid"),
        ("lost (not paid at the end)", "lost"),
        ("invariant violations", "violations"),
        ("refused answers (buyer tried again)", "refused_answers"),
        ("redirects that ended in an error", "redirect_errors"),
        ("first PAID after return (s)", "first_paid_after_return_s"),
        ("backlog gone after return (s)", "back_to_full_rate_s"),
        ("latency p99 (ms)", ("latency_ms", "p99")),
        ("latency max (ms)", ("latency_ms", "max")),
    )
    mine, theirs = outage.get("event-driven") or {}, outage.get("baseline") or {}
    lines = ["PostgreSQL stopped during a run", f"{'':36} {'event-driven':>14} {'inline':>16}"]
    for label, key in rows:
        lines.append(f"{label:36} {_fmt(_get(mine, key)):>14} {_fmt(_get(theirs, key)):>16}")
    return "\n".join(lines)


def plot(timelines: list[PaymentTimeline], result: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(13, 9.6))
    if timelines:
        _latency_over_time(axes[0][0], timelines)
        _stages(axes[0][1], timelines)
    _capacity(axes[1][0], result)
    _outage(axes[1][1], result.get("outage") or {})
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _latency_over_time(over_time: Any, timelines: list[PaymentTimeline]) -> None:
    start = min(t.received for t in timelines)
    buckets: dict[int, list[float]] = {}
    for t in timelines:
        buckets.setdefault(int((t.received - start).total_seconds()), []).append(t.total_ms)
    seconds = sorted(buckets)
    for q in (50, 95, 99):
        over_time.plot(seconds, [percentile(buckets[s], q) for s in seconds], label=f"p{q}")
    over_time.set_xlabel("seconds into the main run (by redirect arrival)")
    over_time.set_ylabel("redirect → order PAID (ms)")
    over_time.set_title("Event-driven latency percentiles over time")
    over_time.legend()


def _stages(split: Any, timelines: list[PaymentTimeline]) -> None:
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


def _capacity(axis: Any, result: dict[str, Any]) -> None:
    for label, figures in (("event-driven", result), ("inline", result.get("baseline") or {})):
        steps = sorted((figures.get("capacity") or {}).get("steps", []), key=lambda s: s["rate"])
        if steps:
            p99s = [s["latency_ms"]["p99"] for s in steps]
            axis.plot([s["rate"] for s in steps], p99s, marker="o", label=label)
    limit = result.get("config", {}).get("p99_limit_ms", 100)
    axis.axhline(limit, color="grey", linestyle="--", label=f"{limit:g} ms")
    axis.set_yscale("log")
    axis.set_xlabel("offered rate (/s)")
    axis.set_ylabel("p99 redirect → PAID (ms)")
    axis.set_title("Capacity search")
    axis.legend()


def _outage(axis: Any, outage: dict[str, dict[str, Any]]) -> None:
    for label, figures in outage.items():
        series = figures.get("paid_per_s", [])
        axis.plot(range(len(series)), series, label=label)
        stop = figures.get("stopped_after_s", 0)
        axis.axvspan(stop, stop + figures.get("outage_s", 0), color="grey", alpha=0.15)
    axis.set_xlabel("seconds (grey: PostgreSQL stopped)")
    axis.set_ylabel("payments PAID per second")
    axis.set_title("Database outage")
    if outage:
        axis.legend()
