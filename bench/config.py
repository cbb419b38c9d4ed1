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
    capacity_steps: int = 0
    step_seconds: float = 4.0
    start_rate: float = 50.0
    min_rate: float = 5.0
    max_rate: float = 2000.0
    p99_limit_ms: float = 100.0
    outage_s: float = 0.0
    outage_rate: float = 20.0
    private_servers: bool = False
    sweep_pg_latency_ms: int = 1000
    sweep_rate: float = 300.0
    sweep_payments: int = 1500

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def parse(argv: list[str] | None = None) -> BenchConfig:
    parser = argparse.ArgumentParser(
        prog="make bench", description="Approvals per second, latency and CPU per approval."
    )
    parser.add_argument(
        "--payments",
        type=int,
        default=int(_env("BENCH_PAYMENTS", "2000")),
        help="payments of the main run of each design (at half its capacity, else at --rate)",
    )
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
        help="arrival rate of success redirects per second (open model) of the main run when"
        " no capacity was searched or none held",
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
    _capacity_flags(parser)
    _scenario_flags(parser)
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
        capacity_steps=args.capacity_steps,
        step_seconds=args.step_seconds,
        start_rate=args.start_rate,
        min_rate=args.min_rate,
        max_rate=args.max_rate,
        p99_limit_ms=args.p99_limit_ms,
        outage_s=args.outage_seconds,
        outage_rate=args.outage_rate,
        private_servers=args.servers == "private",
        sweep_pg_latency_ms=args.sweep_pg_latency_ms,
        sweep_rate=args.sweep_rate,
        sweep_payments=args.sweep_payments,
    )


def _capacity_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--capacity-steps",
        type=int,
        default=int(_env("BENCH_CAPACITY_STEPS", "0")),
        help="runs of the capacity search of each design: from --start-rate, doubling while it"
        " holds, then bisecting (0: no search; make bench: 6)",
    )
    parser.add_argument(
        "--step-seconds",
        type=float,
        default=float(_env("BENCH_STEP_SECONDS", "4")),
        help="how long each search step offers its rate",
    )
    parser.add_argument("--start-rate", type=float, default=float(_env("BENCH_START_RATE", "50")))
    parser.add_argument(
        "--min-rate",
        type=float,
        default=float(_env("BENCH_MIN_RATE", "5")),
        help="the search offers no lower rate; the main run of a design that held none runs here",
    )
    parser.add_argument("--max-rate", type=float, default=float(_env("BENCH_MAX_RATE", "2000")))
    parser.add_argument(
        "--p99-limit-ms",
        type=float,
        default=100.0,
        help="a rate is held when every payment is paid, none refused and p99 is under this",
    )


def _scenario_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--servers",
        choices=("local", "private"),
        default=_env("BENCH_SERVERS", "local"),
        help="the machine's PostgreSQL and RabbitMQ (BENCH_DATABASE_ADMIN_URL, AMQP_URL) or"
        " private ones started in a temporary directory: their CPU is the run's alone, PostgreSQL"
        " loads pg_stat_statements, and the outage can stop it (make bench: private)",
    )
    parser.add_argument(
        "--outage-seconds",
        type=float,
        default=float(_env("BENCH_OUTAGE_S", "0")),
        help="stop the private PostgreSQL this long during a run of each design (0: skip;"
        " make bench: 60; needs --servers private)",
    )
    parser.add_argument("--outage-rate", type=float, default=float(_env("BENCH_OUTAGE_RATE", "20")))
    parser.add_argument("--sweep-pg-latency-ms", type=int, default=1000)
    parser.add_argument("--sweep-rate", type=float, default=300.0)
    parser.add_argument("--sweep-payments", type=int, default=1500)


def _workers(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())
