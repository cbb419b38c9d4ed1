"""Benchmark settings: flags, each defaulting to an environment variable."""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class BenchConfig:
    payments: int
    warmup: int
    rate: float
    pg_latency_ms: int
    approval_workers: int
    max_inflight: int
    settle_timeout_s: float
    baseline: bool
    output_dir: str
    profile: bool = False
    sweep: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def parse(argv: list[str] | None = None) -> BenchConfig:
    parser = argparse.ArgumentParser(
        prog="make bench", description="Approvals per second, latency and CPU per approval."
    )
    parser.add_argument("--payments", type=int, default=int(_env("BENCH_PAYMENTS", "2000")))
    parser.add_argument(
        "--warmup",
        type=int,
        default=int(_env("BENCH_WARMUP", "100")),
        help="payments put through first at the same rate and not counted (connections, caches)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=float(_env("BENCH_RATE", "500")),
        help="arrival rate of success redirects per second (open model)",
    )
    parser.add_argument("--pg-latency-ms", type=int, default=int(_env("BENCH_PG_LATENCY_MS", "0")))
    parser.add_argument("--approval-workers", type=int, default=int(_env("APPROVAL_WORKERS", "2")))
    parser.add_argument(
        "--max-inflight",
        type=int,
        default=int(_env("BENCH_MAX_INFLIGHT", "512")),
        help="client-side cap on concurrent redirect requests",
    )
    parser.add_argument(
        "--settle-timeout", type=float, default=float(_env("BENCH_SETTLE_TIMEOUT_S", "300"))
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the inline baseline")
    parser.add_argument("--output-dir", default=_env("BENCH_OUTPUT_DIR", "bench-results"))
    parser.add_argument(
        "--profile",
        action="store_true",
        default=_env("BENCH_PROFILE", "0") not in ("0", "false", "no", ""),
        help="py-spy on every service while the event-driven redirects run (top functions by role)",
    )
    parser.add_argument(
        "--sweep",
        type=_workers,
        default=_workers(_env("BENCH_SWEEP", "")),
        help="after the run, the event-driven design again with each of these numbers of approval"
        " workers (e.g. 1,2,4; make bench: BENCH_SWEEP, empty for none)",
    )
    args = parser.parse_args(argv)
    return BenchConfig(
        payments=args.payments,
        warmup=args.warmup,
        rate=args.rate,
        pg_latency_ms=args.pg_latency_ms,
        approval_workers=args.approval_workers,
        max_inflight=args.max_inflight,
        settle_timeout_s=args.settle_timeout,
        baseline=not args.no_baseline,
        output_dir=args.output_dir,
        profile=args.profile,
        sweep=args.sweep,
    )


def _workers(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())
