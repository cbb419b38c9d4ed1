"""`make bench`: the event-driven system and the inline baseline, same orders, same sandbox.

Starts the native stack on free ports with its own database and exchange (dropped afterwards),
places and authenticates the orders beforehand, then fires the success redirects at a fixed rate
(open model) and reads every figure from the services' own timestamps and from /proc.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from tqdm import tqdm

from bench import load, measure, outage, profile, report, search, spy
from bench.config import BenchConfig, parse
from deploy.scratch import database_of, fresh_broker, fresh_database
from deploy.servers import PostgresServer, RabbitServer, private_postgres, private_rabbitmq
from deploy.stack import ROOT, Stack, StackConfig, free_port

ADMIN_DSN = os.environ.get(
    "BENCH_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
DEMO_TOKEN = os.environ.get("DEMO_CUSTOMER_TOKEN", "demo-token")


def progress(total: int, label: str) -> tuple[tqdm[Any], Callable[[], None]]:
    bar: tqdm[Any] = tqdm(total=total, desc=f"{label:>22}", unit="pay", file=sys.stderr)
    return bar, lambda: bar.update(1)


@dataclass(frozen=True)
class Servers:
    """The PostgreSQL and RabbitMQ a run uses: private ones (``postgres``/``rabbit`` set) or
    the machine's own."""

    postgres: PostgresServer | None = None
    rabbit: RabbitServer | None = None

    @property
    def admin_dsn(self) -> str:
        return self.postgres.admin_dsn if self.postgres else ADMIN_DSN

    @property
    def amqp_url(self) -> str:
        return self.rabbit.url if self.rabbit else AMQP_URL

    def roots(self) -> dict[str, int]:
        """Each private server's main process, by CPU group."""
        pids = {
            "postgresql": self.postgres.postmaster_pid() if self.postgres else None,
            "rabbitmq": self.rabbit.pid() if self.rabbit else None,
        }
        return {group: pid for group, pid in pids.items() if pid is not None}


PRIVATE_POSTGRES_SETTINGS = {"shared_preload_libraries": "pg_stat_statements"}


@asynccontextmanager
async def bench_servers(config: BenchConfig) -> AsyncIterator[Servers]:
    if not config.private_servers:
        yield Servers()
        return
    print("starting a private PostgreSQL and RabbitMQ…", file=sys.stderr)
    with (
        tempfile.TemporaryDirectory(prefix="bench-servers-") as base,
        private_postgres(Path(base), settings=PRIVATE_POSTGRES_SETTINGS) as postgres,
        private_rabbitmq(Path(base)) as rabbit,
    ):
        yield Servers(postgres, rabbit)


@asynccontextmanager
async def running_stack(
    config: BenchConfig, run_dir: Path, servers: Servers
) -> AsyncIterator[Stack]:
    async with (
        fresh_database(servers.admin_dsn, prefix="bench") as database_url,
        fresh_broker(servers.amqp_url, prefix="bench") as broker,
    ):
        stack = Stack(
            StackConfig.on_free_ports(
                run_dir,
                database_url,
                servers.amqp_url,
                exchange=broker.exchange,
                queue_prefix=broker.prefix,
                approval_workers=config.approval_workers,
                # No webhooks: the inline baseline takes none either, so both designs do the
                # same work per payment.
                extra_env={"LOG_LEVEL": "WARNING", "SANDBOX_WEBHOOK_URL": ""},
            )
        )
        print(f"starting the stack ({config.approval_workers} approval workers)…", file=sys.stderr)
        try:
            stack.start(timeout=120)  # inside: a failed start still removes the stack's users
            yield stack
        finally:
            stack.stop()


def clients(stack: Stack) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    c = stack.config
    # Idle connections are dropped well before the services' own keep-alive (uvicorn: 5 s)
    # closes them: a request sent on one the server is just closing fails with ReadError.
    limits = httpx.Limits(
        max_connections=1024, max_keepalive_connections=1024, keepalive_expiry=1.0
    )
    order_api = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{c.order_port}",
        headers={"Authorization": f"Bearer {DEMO_TOKEN}"},
        timeout=60,
        limits=limits,
    )
    sandbox = httpx.AsyncClient(base_url=c.sandbox_url, timeout=60, limits=limits)
    return order_api, sandbox


# Give up on the stragglers once nothing has settled for this long (a redirect that failed
# never will); the table then shows them under "not paid at the end".
STALL_S = 60.0


async def wait_settled(
    conn: asyncpg.Pool, order_ids: list[str], paid_sql: str, timeout: float, label: str
) -> int:
    bar, _ = progress(len(order_ids), label)
    deadline = time.monotonic() + timeout
    settled, last_progress = 0, time.monotonic()
    while settled < len(order_ids) and time.monotonic() < deadline:
        now_settled = await conn.fetchval(paid_sql, order_ids)
        if now_settled > settled:
            settled, last_progress = now_settled, time.monotonic()
        elif time.monotonic() - last_progress > min(STALL_S, timeout):
            print(f"\n{label}: nothing settled for {STALL_S:.0f} s; giving up", file=sys.stderr)
            break
        bar.update(settled - bar.n)
        await asyncio.sleep(0.2)
    bar.close()
    return int(settled)


PAID_SQL = "SELECT count(*) FROM orders.orders WHERE order_id = ANY($1) AND status = 'PAID'"
# Both projections of OrderPlaced in place. Without waiting for them, a run's redirects would
# share the cores (and the measured CPU) with whatever part of the projections is still running,
# a share that changes from run to run; placing costs are measured on their own instead.
PROJECTED_SQL = (
    "SELECT count(*) FROM approval.order_intents JOIN checkout.placed_orders USING (order_id)"
    " WHERE order_id = ANY($1)"
)
BASELINE_PAID_SQL = (
    "SELECT count(*) FROM orders.bench_baseline WHERE order_id = ANY($1) AND paid_at IS NOT NULL"
)
PAID_AT_SQL = (
    "SELECT coalesce(array_agg(extract(epoch FROM updated_at)), '{}') FROM orders.orders"
    " WHERE order_id = ANY($1) AND status = 'PAID'"
)
BASELINE_PAID_AT_SQL = (
    "SELECT coalesce(array_agg(extract(epoch FROM paid_at)), '{}') FROM orders.bench_baseline"
    " WHERE order_id = ANY($1) AND paid_at IS NOT NULL"
)


async def ledger_figures(
    sandbox: httpx.AsyncClient, conn: asyncpg.Pool, order_ids: list[str]
) -> dict[str, int]:
    """The PG's ledger against the merchant's orders: the invariants, counted."""
    wanted = set(order_ids)
    payments = [p for p in (await sandbox.get("/sandbox/ledger")).json() if p["orderId"] in wanted]
    approvals: dict[str, int] = {}
    for payment in payments:
        approvals[payment["orderId"]] = approvals.get(payment["orderId"], 0) + payment["approvals"]
    paid = {
        row["order_id"]
        for row in await conn.fetch(
            "SELECT order_id FROM orders.orders WHERE order_id = ANY($1) AND status = 'PAID'",
            order_ids,
        )
    }
    return {
        "confirm_calls": sum(p["confirmCalls"] for p in payments),
        "approvals": sum(approvals.values()),
        "double_approvals": sum(1 for n in approvals.values() if n > 1),
        "paid_without_approval": sum(1 for o in paid if approvals.get(o, 0) == 0),
        "approved_not_paid": sum(1 for o, n in approvals.items() if n and o not in paid),
        "not_paid": len(wanted - paid),
    }


Arrivals = Callable[[asyncpg.Pool, list[str]], Awaitable[list[tuple[float, float]]]]


@dataclass(frozen=True)
class Design:
    """One of the two designs under test: where its redirects go, how to tell PAID and when,
    whose CPU counts, and each payment's (arrival, latency)."""

    label: str
    base_url: str
    paid_sql: str
    paid_at_sql: str
    groups: measure.CpuGroups
    arrivals: Arrivals


@dataclass(frozen=True)
class Bench:
    """What every scenario of one stack shares: the clients, the database, the stack."""

    config: BenchConfig
    stack: Stack
    # A pool, not a connection: it reconnects after an outage run stopped the database.
    db: asyncpg.Pool
    order_api: httpx.AsyncClient
    sandbox: httpx.AsyncClient
    servers: Servers

    @property
    def return_base(self) -> str:
        return f"http://127.0.0.1:{self.stack.config.gateway_port}"

    async def payments(self, design: Design, count: int, phase: str) -> list[load.Authenticated]:
        """Orders placed, authenticated and projected by checkout and approval: not measured."""
        bar, tick = progress(count * 2, f"{design.label}: {phase} prepare")
        payments = await load.prepare(self.order_api, self.sandbox, count, self.return_base, tick)
        bar.close()
        order_ids = [p.order_id for p in payments]
        label = f"{design.label}: {phase} projected"
        await wait_settled(self.db, order_ids, PROJECTED_SQL, self.config.settle_timeout_s, label)
        return payments


@dataclass(frozen=True)
class Measured:
    """What one measured run of one design gave."""

    fired: load.FireResult
    cpu: dict[str, float]
    sql_statements_per_approval: float
    statements_by_role: dict[str, float]
    heaviest_statements: list[dict[str, Any]]
    messages: dict[str, dict[str, int]]


@dataclass(frozen=True)
class Counters:
    """Where the database's counters stood before a run's orders were placed: the per-payment
    figures then cover the whole payment, order placed → PAID."""

    since: datetime
    statement_times: measure.StatementTimes | None

    @classmethod
    async def read(cls, conn: asyncpg.Pool) -> Counters:
        return cls(
            await conn.fetchval("SELECT clock_timestamp()"),
            await measure.statement_times(conn),
        )


async def measured(
    bench: Bench,
    design: Design,
    payments: list[load.Authenticated],
    rate: float,
    counters: Counters,
    phase: str,
) -> Measured:
    """Fire ``payments`` at ``rate`` and wait until they are paid, counting CPU and SQL
    statements; then statements (by service role) and events since ``counters``."""
    conn, groups = bench.db, design.groups
    groups.include_load_generator()
    statements_before = await measure.statements_run(conn)
    before = groups.sample()
    fired = await fire_and_settle(bench.config, design, payments, rate, conn, phase)
    groups.refresh_named()
    cpu = measure.cpu_delta(before, groups.sample())
    count = len(payments)
    statements = measure.per_approval(statements_before, await measure.statements_run(conn), count)
    database = database_of(bench.stack.config.database_url)
    times_before, times_after = counters.statement_times, await measure.statement_times(conn)
    by_role = measure.by_role_per_payment(
        measure.calls_by_user(times_before), measure.calls_by_user(times_after), database, count
    )
    heaviest = measure.heaviest_statements(times_before, times_after, database, count)
    messages = await measure.messages_since(conn, counters.since)
    return Measured(fired, cpu, statements, by_role, heaviest, messages)


async def fire_and_settle(
    config: BenchConfig,
    design: Design,
    payments: list[load.Authenticated],
    rate: float,
    conn: asyncpg.Pool,
    phase: str,
) -> load.FireResult:
    async with load.redirect_session(design.base_url, config.max_inflight) as client:
        bar, tick = progress(len(payments), f"{design.label}: {phase}")
        fired = await load.fire(client, payments, rate, config.max_inflight, tick)
        bar.close()
    order_ids = [p.order_id for p in payments]
    label = f"{design.label}: {phase} PAID"
    await wait_settled(conn, order_ids, design.paid_sql, config.settle_timeout_s, label)
    return fired


def cpu_per_approval(cpu: dict[str, float], approvals: int) -> dict[str, float]:
    return {name: seconds * 1000 / max(approvals, 1) for name, seconds in cpu.items()}


async def run_at(
    bench: Bench, design: Design, count: int, rate: float, phase: str
) -> tuple[dict[str, Any], list[str]]:
    """``count`` fresh payments through ``design`` at ``rate``: the summary and the order ids."""
    counters = await Counters.read(bench.db)
    before = design.groups.sample()
    payments = await bench.payments(design, count, phase)
    design.groups.refresh_named()
    placing = cpu_per_approval(measure.cpu_delta(before, design.groups.sample()), len(payments))
    run = await measured(bench, design, payments, rate, counters, phase)
    order_ids = [p.order_id for p in payments]
    arrivals = await design.arrivals(bench.db, order_ids)
    ledger = await ledger_figures(bench.sandbox, bench.db, order_ids)
    figures = summarize(arrivals, ledger, run) | {"rate": rate}
    return figures | {"placing_cpu_ms_per_payment": placing_figures(placing)}, order_ids


STEP_FIGURES = (
    "approvals_per_s",
    "latency_ms",
    "cpu_ms_per_approval",
    "machine_cpu_ms_per_approval",
    "violations",
    "not_paid",
    "redirect_errors",
    "client_lag_max_s",
)


async def capacity(bench: Bench, design: Design) -> search.Capacity:
    """The highest rate ``design`` holds with p99 under the limit (bisection)."""
    config = bench.config

    async def offer(rate: float) -> dict[str, Any]:
        count = max(20, round(rate * config.step_seconds))
        figures, _ = await run_at(bench, design, count, rate, f"capacity {rate:g}/s")
        return {key: figures[key] for key in STEP_FIGURES}

    rates = search.Rates(config.start_rate, config.min_rate, config.max_rate)
    return await search.search(offer, rates, config.capacity_steps, config.p99_limit_ms)


async def assess(bench: Bench, design: Design) -> dict[str, Any]:
    """Warm-up, the capacity search, then the main run at half the capacity (or at --rate)."""
    config = bench.config
    if config.warmup:
        warm = await bench.payments(design, config.warmup, "warm-up")
        await fire_and_settle(config, design, warm, config.rate, bench.db, "warm-up")
    found = await capacity(bench, design) if config.capacity_steps else None
    rate = max(found.rate / 2, config.min_rate) if found else config.rate
    result, order_ids = await run_at(bench, design, config.payments, rate, "redirect")
    if found is not None:
        result["capacity"] = found.as_dict()
    result["_order_ids"] = order_ids
    return result


def event_driven_design(stack: Stack, servers: Servers) -> Design:
    processes = [(p["name"], int(p["pid"])) for p in stack.processes()]
    roles: dict[str, list[int]] = {}
    for name, pid in processes:
        roles.setdefault(name.split("-")[0], []).append(pid)
    sandbox_pids = roles.pop("sandbox")
    groups = measure.CpuGroups.discover(
        [pid for pids in roles.values() for pid in pids],
        sandbox_pids,
        roles,
        servers=servers.roots(),
    )
    base = f"http://127.0.0.1:{stack.config.checkout_port}"
    return Design("event-driven", base, PAID_SQL, PAID_AT_SQL, groups, event_driven_arrivals)


async def event_driven_arrivals(
    conn: asyncpg.Pool, order_ids: list[str]
) -> list[tuple[float, float]]:
    return timelines_ms(await measure.timelines(conn, order_ids))


async def event_driven(bench: Bench) -> dict[str, Any]:
    design = event_driven_design(bench.stack, bench.servers)
    processes = [(p["name"], int(p["pid"])) for p in bench.stack.processes()]
    with profiling(bench.config, bench.stack, processes, design.groups) as profiles:
        result = await assess(bench, design)
    timelines = await measure.timelines(bench.db, result.pop("_order_ids"))
    result |= approval_stage_figures(timelines) | {
        "stages_ms": {
            name: measure.latency_summary([t.stages_ms[i] for t in timelines])
            for i, name in enumerate(measure.STAGE_NAMES)
        },
        "_timelines": timelines,
    }
    if profiles is not None:
        result["profiles"] = {name: str(path) for name, path in sorted(profiles.items())}
    return result


@contextmanager
def profiling(
    config: BenchConfig, stack: Stack, processes: list[tuple[str, int]], groups: measure.CpuGroups
) -> Iterator[dict[str, Path] | None]:
    """With ``--profile``, py-spy samples every Python process of the stack meanwhile.

    The recorders' own CPU is counted apart ("profiler"): they share the cores too.
    """
    if not config.profile:
        yield None
        return
    window = config.payments / config.rate + config.settle_timeout_s + 120
    recorders = spy.Recorders(processes, stack.config.run_dir / "profiles", window)
    print(f"profiling {len(recorders.targets)} processes with py-spy…", file=sys.stderr)
    with recorders as files:
        groups.groups["profiler"] = set(recorders.pids())
        yield files


def approval_stage_figures(timelines: list[measure.PaymentTimeline]) -> dict[str, float]:
    """How fast and how concurrently the approval workers decided, at their busiest."""
    spans = measure.approval_stage(timelines)
    return {
        "approval_peak_per_s": measure.peak_rate([end for _, end in spans], window_s=5.0),
        "approval_peak_in_flight": measure.peak_overlap(spans),
    }


def timelines_ms(timelines: list[measure.PaymentTimeline]) -> list[tuple[float, float]]:
    """(arrival seconds since the first redirect, latency ms) per payment."""
    if not timelines:
        return []
    start = min(t.received for t in timelines)
    return [((t.received - start).total_seconds(), t.total_ms) for t in timelines]


# What the issue calls machine CPU: every process on the payment's path but the PG stand-in
# and the load generator (the bench talks to the services directly: no nginx on the path).
MACHINE = ("project", "postgresql", "rabbitmq")


def summarize(
    arrivals: list[tuple[float, float]], ledger: dict[str, int], run: Measured
) -> dict[str, Any]:
    span_s = max((a + lat / 1000 for a, lat in arrivals), default=0.0)
    per_approval = cpu_per_approval(run.cpu, ledger["approvals"])
    by_role = {k.removeprefix("role:"): v for k, v in per_approval.items() if k.startswith("role:")}
    others = {k: v for k, v in per_approval.items() if not k.startswith("role:")}
    machine = sum(per_approval.get(name, 0.0) for name in MACHINE)
    paid = len(arrivals)
    return {
        "approvals_per_s": paid / span_s if span_s else 0.0,
        "latency_ms": measure.latency_summary([lat for _, lat in arrivals]),
        "cpu_ms_per_approval": others.pop("project"),
        "machine_cpu_ms_per_approval": machine,
        "cpu_ms_per_approval_by_role": by_role,
        "cpu_ms_per_approval_other": others,
        "confirm_calls": ledger["confirm_calls"],
        "approvals": ledger["approvals"],
        # Invariants 2 and 3: never two charges, and the order and the PG agree on every payment.
        "violations": ledger["double_approvals"]
        + ledger["paid_without_approval"]
        + ledger["approved_not_paid"],
        "not_paid": ledger["not_paid"],
        "paid": paid,
        "sql_statements_per_approval": run.sql_statements_per_approval,
        "per_payment": per_payment(run, len(arrivals) or ledger["approvals"]),
        "redirect_errors": run.fired.errors,
        "client_lag_max_s": run.fired.behind_schedule_max_s,
    }


def placing_figures(per_payment: dict[str, float]) -> dict[str, float]:
    """CPU per payment from placing the order to both projections in, by process group, with
    the machine's total: what a payment costs before its redirect (the load generator's
    authentication in the sandbox included, in the sandbox's and PostgreSQL's figures)."""
    named = {k.removeprefix("role:"): v for k, v in per_payment.items()}
    return named | {"machine": sum(per_payment.get(name, 0.0) for name in MACHINE)}


def per_payment(run: Measured, payments: int) -> dict[str, Any]:
    """Events written and deliveries handled (from outboxes and inboxes) and statements by
    service role, each per payment."""
    count = max(payments, 1)
    published = {k: n / count for k, n in sorted(run.messages["published"].items())}
    handled = {k: n / count for k, n in sorted(run.messages["handled"].items())}
    return {
        "events_published": sum(published.values()),
        "deliveries_handled": sum(handled.values()),
        "statements": sum(run.statements_by_role.values()),
        "events_published_by_key": published,
        "deliveries_handled_by_consumer": handled,
        "statements_by_role": run.statements_by_role,
        "heaviest_statements": run.heaviest_statements,
    }


@asynccontextmanager
async def baseline_design(stack: Stack, servers: Servers) -> AsyncIterator[Design]:
    """The inline baseline in a process of its own, on the stack's database and sandbox."""
    port = free_port()
    env = stack.config.environment() | {"BASELINE_PORT": str(port)}
    process = subprocess.Popen([sys.executable, "-m", "bench.baseline"], env=env, cwd=ROOT)
    try:
        await wait_up(f"http://127.0.0.1:{port}/docs")
        groups = measure.CpuGroups.discover(
            [process.pid], [_sandbox_pid(stack)], servers=servers.roots()
        )
        base = f"http://127.0.0.1:{port}"
        yield Design(
            "baseline", base, BASELINE_PAID_SQL, BASELINE_PAID_AT_SQL, groups, baseline_arrivals
        )
    finally:
        process.terminate()
        process.wait(10)


async def baseline(bench: Bench, design: Design) -> dict[str, Any]:
    result = await assess(bench, design)
    del result["_order_ids"]
    # Its statements run as the admin and it writes no events: counted by service role, its
    # payments would show only the event-driven services' share (placing the orders).
    del result["per_payment"]
    # Its orders are placed by the event-driven stack's order service (and projected by it):
    # measured under its CPU groups, that cost would show as the sandbox's and the servers'.
    del result["placing_cpu_ms_per_payment"]
    return result


def _sandbox_pid(stack: Stack) -> int:
    return next(int(p["pid"]) for p in stack.processes() if p["name"] == "sandbox")


async def baseline_arrivals(conn: asyncpg.Pool, order_ids: list[str]) -> list[tuple[float, float]]:
    rows = await conn.fetch(
        "SELECT received_at, paid_at FROM orders.bench_baseline"
        " WHERE order_id = ANY($1) AND paid_at IS NOT NULL",
        order_ids,
    )
    if not rows:
        return []
    start = min(r["received_at"] for r in rows)
    return [
        (
            (r["received_at"] - start).total_seconds(),
            (r["paid_at"] - r["received_at"]).total_seconds() * 1000,
        )
        for r in rows
    ]


async def wait_up(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} did not come up")


# The outage run: this long at the rate before the database stops, and after it returns.
OUTAGE_LEAD_S = 10.0
OUTAGE_TAIL_S = 30.0


async def database_outage(bench: Bench, design: Design, server: PostgresServer) -> dict[str, Any]:
    """Redirects at --outage-rate while the private PostgreSQL is stopped for --outage-seconds;
    refused buyers load the page again every second. Then: was every payment paid exactly once,
    and how soon after the database returned did completions reach the offered rate."""
    config = bench.config
    rate, down_s = config.outage_rate, config.outage_s
    count = round(rate * (OUTAGE_LEAD_S + down_s + OUTAGE_TAIL_S))
    payments = await bench.payments(design, count, "outage")
    async with load.redirect_session(design.base_url, config.max_inflight) as client:
        bar, tick = progress(count, f"{design.label}: outage")
        started_at = time.time()
        firing = asyncio.ensure_future(
            load.fire(client, payments, rate, config.max_inflight, tick, down_s + OUTAGE_TAIL_S)
        )
        window = await _stop_for(server, down_s, rate, started_at)
        fired = await firing
        bar.close()
    return await _outage_figures(bench, design, payments, window, fired)


async def _stop_for(
    server: PostgresServer, seconds: float, rate: float, started_at: float
) -> outage.Window:
    await asyncio.sleep(OUTAGE_LEAD_S)
    print(f"\nstopping PostgreSQL for {seconds:g} s", file=sys.stderr)
    stopped_at = time.time()
    await asyncio.to_thread(server.stop)
    await asyncio.sleep(max(0.0, stopped_at + seconds - time.time()))
    await asyncio.to_thread(server.start)
    return outage.Window(started_at, stopped_at, time.time(), rate)


async def _outage_figures(
    bench: Bench,
    design: Design,
    payments: list[load.Authenticated],
    window: outage.Window,
    fired: load.FireResult,
) -> dict[str, Any]:
    conn = bench.db
    order_ids = [p.order_id for p in payments]
    timeout = bench.config.settle_timeout_s
    await wait_settled(conn, order_ids, design.paid_sql, timeout, f"{design.label}: outage PAID")
    ledger = await ledger_figures(bench.sandbox, conn, order_ids)
    paid_at = sorted(float(v) for v in await conn.fetchval(design.paid_at_sql, order_ids))
    latencies = [lat for _, lat in await design.arrivals(conn, order_ids)]
    violations = (
        ledger["double_approvals"] + ledger["paid_without_approval"] + ledger["approved_not_paid"]
    )
    return {
        "rate": window.rate,
        "outage_s": window.returned_at - window.stopped_at,
        "payments": len(payments),
        "paid": len(paid_at),
        "lost": ledger["not_paid"],
        "violations": violations,
        "refused_answers": fired.refused,
        "redirect_errors": fired.errors,
        "back_to_full_rate_s": outage.back_to_full_rate_s(paid_at, window),
        "first_paid_after_return_s": outage.first_paid_after_return_s(paid_at, window),
        "latency_ms": measure.latency_summary(latencies),
        # For the plot: completions per second from OUTAGE_LEAD_S before the stop.
        "paid_per_s": outage.per_second(paid_at, window.stopped_at - OUTAGE_LEAD_S),
        "stopped_after_s": OUTAGE_LEAD_S,
    }


SWEPT = ("approvals_per_s", "approval_peak_per_s", "cpu_ms_per_approval", "violations", "not_paid")


async def sweep(
    config: BenchConfig, out_dir: Path, stamp: str, servers: Servers
) -> list[dict[str, Any]]:
    """The event-driven design on a fresh stack per number of approval workers, with the
    sandbox answering confirm after --sweep-pg-latency-ms (the slow-PG scenario)."""
    rows = []
    for workers in config.sweep:
        each = replace(
            config,
            approval_workers=workers,
            pg_latency_ms=config.sweep_pg_latency_ms,
            rate=config.sweep_rate,
            payments=config.sweep_payments,
            capacity_steps=0,
            profile=False,
            baseline=False,
        )
        result = await on_stack(each, out_dir / f"run-{stamp}-workers-{workers}", servers, None)
        rows.append(
            {"approval_workers": workers, "latency_ms": result["latency_ms"]}
            | {key: result[key] for key in SWEPT}
            | {
                "approval_peak_per_s_per_worker": result["approval_peak_per_s"] / workers,
                "pg_latency_ms": each.pg_latency_ms,
            }
        )
    return rows


async def on_stack(
    config: BenchConfig, run_dir: Path, servers: Servers, stamp: str | None
) -> dict[str, Any]:
    """Every scenario of one stack: the event-driven design, then (with ``stamp``, the main
    stack) the baseline and the database outage of each."""
    async with running_stack(config, run_dir, servers) as stack:
        order_api, sandbox = clients(stack)
        # No floor: asyncpg would try to reopen it all through the outage, a traceback a try.
        pool = asyncpg.create_pool(stack.config.database_url, min_size=0, max_size=1)
        async with pool as db, order_api, sandbox:
            await sandbox.put("/sandbox/faults", json={"confirmLatencyMs": config.pg_latency_ms})
            bench = Bench(config, stack, db, order_api, sandbox, servers)
            return await scenarios(bench, with_baseline=stamp is not None)


async def scenarios(bench: Bench, *, with_baseline: bool) -> dict[str, Any]:
    config, server = bench.config, bench.servers.postgres
    result = await event_driven(bench)
    if not (with_baseline and config.baseline):
        return result
    async with baseline_design(bench.stack, bench.servers) as inline:
        result["baseline"] = await baseline(bench, inline)
        if config.outage_s and server is not None:
            ed = event_driven_design(bench.stack, bench.servers)
            result["outage"] = {
                "event-driven": await database_outage(bench, ed, server),
                "baseline": await database_outage(bench, inline, server),
            }
    return result


def capacity_ratio(result: dict[str, Any]) -> float | None:
    """Event-driven capacity over the baseline's (None unless both were searched and held)."""
    mine = (result.get("capacity") or {}).get("rate")
    theirs = ((result.get("baseline") or {}).get("capacity") or {}).get("rate")
    return mine / theirs if mine and theirs else None


async def main(config: BenchConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(config.output_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.outage_s and not config.private_servers:
        print("no outage: it needs --servers private", file=sys.stderr)
    async with bench_servers(config) as servers:
        result = await on_stack(config, out_dir / f"run-{stamp}", servers, stamp)
        timelines = result.pop("_timelines")
        result = {"config": config.as_dict(), **result, "capacity_ratio": capacity_ratio(result)}
        if config.sweep:
            result["sweep"] = await sweep(config, out_dir, stamp, servers)
    plot_path = out_dir / f"bench-{stamp}.png"
    report.plot(timelines, result, plot_path)
    result["plot"] = str(plot_path)
    json_path = out_dir / f"bench-{stamp}.json"
    report.write_json(result, json_path)
    print(report.full(result))
    if result.get("profiles"):
        files = {name: Path(path) for name, path in result["profiles"].items()}
        print("\nwhere the CPU goes (py-spy, event-driven redirects until all PAID)\n")
        print(profile.report(files))
        print(f"\nraw collapsed stacks: {next(iter(files.values())).parent}")
    print(f"plot: {plot_path}")
    return json_path


if __name__ == "__main__":
    # Stopped by SIGTERM (a supervisor, a CI timeout) it unwinds as from Ctrl-C: the stack and
    # the private servers it started are stopped on the way out, not left running.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    path = asyncio.run(main(parse()))
    print(path.resolve())
