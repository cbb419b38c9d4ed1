"""`make bench`: the event-driven system and the inline baseline, same orders, same sandbox.

Starts the native stack on free ports with its own database and exchange (dropped afterwards),
places and authenticates the orders beforehand, then fires the success redirects at a fixed rate
(open model) and reads every figure from the services' own timestamps and from /proc.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from tqdm import tqdm

from bench import load, measure, profile, report, spy
from bench.config import BenchConfig, parse
from deploy.scratch import fresh_broker, fresh_database
from deploy.stack import ROOT, Stack, StackConfig, free_port

ADMIN_DSN = os.environ.get(
    "BENCH_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
DEMO_TOKEN = os.environ.get("DEMO_CUSTOMER_TOKEN", "demo-token")


def progress(total: int, label: str) -> tuple[tqdm[Any], Callable[[], None]]:
    bar: tqdm[Any] = tqdm(total=total, desc=f"{label:>22}", unit="pay", file=sys.stderr)
    return bar, lambda: bar.update(1)


@asynccontextmanager
async def running_stack(config: BenchConfig, run_dir: Path) -> AsyncIterator[Stack]:
    async with (
        fresh_database(ADMIN_DSN, prefix="bench") as database_url,
        fresh_broker(AMQP_URL, prefix="bench") as broker,
    ):
        stack = Stack(
            StackConfig.on_free_ports(
                run_dir,
                database_url,
                AMQP_URL,
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
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=1024)
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
    conn: asyncpg.Connection, order_ids: list[str], paid_sql: str, timeout: float, label: str
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
BASELINE_PAID_SQL = (
    "SELECT count(*) FROM orders.bench_baseline WHERE order_id = ANY($1) AND paid_at IS NOT NULL"
)


async def ledger_figures(
    sandbox: httpx.AsyncClient, conn: asyncpg.Connection, order_ids: list[str]
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


@dataclass(frozen=True)
class Design:
    """One of the two designs under test: where its success redirects go, how to tell PAID."""

    label: str
    base_url: str
    paid_sql: str


@dataclass(frozen=True)
class Measured:
    """What the measured phase of one design gave."""

    fired: load.FireResult
    cpu: dict[str, float]
    sql_statements_per_approval: float


async def prepared(
    config: BenchConfig,
    design: Design,
    order_api: httpx.AsyncClient,
    sandbox: httpx.AsyncClient,
    return_base: str,
    conn: asyncpg.Connection,
) -> list[load.Authenticated]:
    """Orders placed and authenticated for the run, after a warm-up batch of them went through
    at the run's rate, uncounted: the figures then describe a running system, not one opening
    its connections. Returns the payments to measure."""
    total = config.warmup + config.payments
    bar, tick = progress(total * 2, f"{design.label}: prepare")
    payments = await load.prepare(order_api, sandbox, total, return_base, tick)
    bar.close()
    warm = payments[: config.warmup]
    if warm:
        await fire_and_settle(config, design, warm, conn, "warm-up")
    return payments[config.warmup :]


async def measured(
    config: BenchConfig,
    design: Design,
    payments: list[load.Authenticated],
    groups: measure.CpuGroups,
    conn: asyncpg.Connection,
) -> Measured:
    """Fire ``payments`` and wait until they are paid, counting CPU and SQL statements."""
    groups.include_load_generator()
    statements_before = await measure.statements_run(conn)
    before = groups.sample()
    fired = await fire_and_settle(config, design, payments, conn, "redirect")
    groups.refresh_named()
    cpu = measure.cpu_delta(before, groups.sample())
    statements = measure.per_approval(
        statements_before, await measure.statements_run(conn), len(payments)
    )
    return Measured(fired, cpu, statements)


async def fire_and_settle(
    config: BenchConfig,
    design: Design,
    payments: list[load.Authenticated],
    conn: asyncpg.Connection,
    phase: str,
) -> load.FireResult:
    async with load.redirect_session(design.base_url, config.max_inflight) as client:
        bar, tick = progress(len(payments), f"{design.label}: {phase}")
        fired = await load.fire(client, payments, config.rate, config.max_inflight, tick)
        bar.close()
    order_ids = [p.order_id for p in payments]
    label = f"{design.label}: {phase} PAID"
    await wait_settled(conn, order_ids, design.paid_sql, config.settle_timeout_s, label)
    return fired


def cpu_per_approval(cpu: dict[str, float], approvals: int) -> dict[str, float]:
    return {name: seconds * 1000 / max(approvals, 1) for name, seconds in cpu.items()}


async def event_driven(
    config: BenchConfig, stack: Stack, conn: asyncpg.Connection
) -> dict[str, Any]:
    order_api, sandbox = clients(stack)
    async with order_api, sandbox:
        await sandbox.put("/sandbox/faults", json={"confirmLatencyMs": config.pg_latency_ms})
        gateway_base = f"http://127.0.0.1:{stack.config.gateway_port}"
        design = Design("event-driven", f"http://127.0.0.1:{stack.config.checkout_port}", PAID_SQL)
        payments = await prepared(config, design, order_api, sandbox, gateway_base, conn)
        processes = [(p["name"], int(p["pid"])) for p in stack.processes()]
        roles: dict[str, list[int]] = {}
        for name, pid in processes:
            roles.setdefault(name.split("-")[0], []).append(pid)
        sandbox_pids = roles.pop("sandbox")
        groups = measure.CpuGroups.discover(
            [pid for pids in roles.values() for pid in pids], sandbox_pids, roles
        )
        with profiling(config, stack, processes, groups) as profiles:
            run = await measured(config, design, payments, groups, conn)
        order_ids = [p.order_id for p in payments]
        timelines = await measure.timelines(conn, order_ids)
        ledger = await ledger_figures(sandbox, conn, order_ids)
    result = summarize(timelines_ms(timelines), ledger, run) | {
        **approval_stage_figures(timelines),
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


def summarize(
    arrivals: list[tuple[float, float]], ledger: dict[str, int], run: Measured
) -> dict[str, Any]:
    span_s = max((a + lat / 1000 for a, lat in arrivals), default=0.0)
    per_approval = cpu_per_approval(run.cpu, ledger["approvals"])
    by_role = {k.removeprefix("role:"): v for k, v in per_approval.items() if k.startswith("role:")}
    others = {k: v for k, v in per_approval.items() if not k.startswith("role:")}
    paid = len(arrivals)
    return {
        "approvals_per_s": paid / span_s if span_s else 0.0,
        "latency_ms": measure.latency_summary([lat for _, lat in arrivals]),
        "cpu_ms_per_approval": others.pop("project"),
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
        "redirect_errors": run.fired.errors,
        "client_lag_max_s": run.fired.behind_schedule_max_s,
    }


async def baseline(config: BenchConfig, stack: Stack, conn: asyncpg.Connection) -> dict[str, Any]:
    port = free_port()
    env = stack.config.environment() | {"BASELINE_PORT": str(port)}
    process = subprocess.Popen([sys.executable, "-m", "bench.baseline"], env=env, cwd=ROOT)
    order_api, sandbox = clients(stack)
    try:
        async with order_api, sandbox:
            await wait_up(f"http://127.0.0.1:{port}/docs")
            base = f"http://127.0.0.1:{port}"
            design = Design("baseline", base, BASELINE_PAID_SQL)
            payments = await prepared(config, design, order_api, sandbox, base, conn)
            groups = measure.CpuGroups.discover([process.pid], [_sandbox_pid(stack)])
            run = await measured(config, design, payments, groups, conn)
            order_ids = [p.order_id for p in payments]
            arrivals = await baseline_arrivals(conn, order_ids)
            ledger = await ledger_figures(sandbox, conn, order_ids)
        return summarize(arrivals, ledger, run)
    finally:
        process.terminate()
        process.wait(10)


def _sandbox_pid(stack: Stack) -> int:
    return next(int(p["pid"]) for p in stack.processes() if p["name"] == "sandbox")


async def baseline_arrivals(
    conn: asyncpg.Connection, order_ids: list[str]
) -> list[tuple[float, float]]:
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


SWEPT = ("approvals_per_s", "approval_peak_per_s", "cpu_ms_per_approval", "violations", "not_paid")


async def sweep(config: BenchConfig, out_dir: Path, stamp: str) -> list[dict[str, Any]]:
    """The event-driven run again on a fresh stack per number of approval workers."""
    rows = []
    for workers in config.sweep:
        each = replace(config, approval_workers=workers, profile=False, baseline=False)
        async with running_stack(each, out_dir / f"run-{stamp}-workers-{workers}") as stack:
            conn = await asyncpg.connect(stack.config.database_url)
            try:
                result = await event_driven(each, stack, conn)
            finally:
                await conn.close()
        rows.append(
            {"approval_workers": workers, "latency_ms": result["latency_ms"]}
            | {key: result[key] for key in SWEPT}
        )
    return rows


async def main(config: BenchConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(config.output_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    async with running_stack(config, out_dir / f"run-{stamp}") as stack:
        conn = await asyncpg.connect(stack.config.database_url)
        try:
            result = await event_driven(config, stack, conn)
            if config.baseline:
                result["baseline"] = await baseline(config, stack, conn)
        finally:
            await conn.close()
    timelines = result.pop("_timelines")
    result = {"config": config.as_dict(), **result}
    if config.sweep:
        result["sweep"] = await sweep(config, out_dir, stamp)
    plot_path = out_dir / f"bench-{stamp}.png"
    report.plot(timelines, plot_path)
    result["plot"] = str(plot_path)
    json_path = out_dir / f"bench-{stamp}.json"
    report.write_json(result, json_path)
    print(report.table(result))
    if result.get("sweep"):
        print("\n" + report.sweep_table(result["sweep"]))
    if result.get("profiles"):
        files = {name: Path(path) for name, path in result["profiles"].items()}
        print("\nwhere the CPU goes (py-spy, event-driven redirects until all PAID)\n")
        print(profile.report(files))
        print(f"\nraw collapsed stacks: {next(iter(files.values())).parent}")
    print(f"plot: {plot_path}")
    return json_path


if __name__ == "__main__":
    path = asyncio.run(main(parse()))
    print(path.resolve())
