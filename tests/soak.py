"""`make soak` (``python -m tests.soak``): 1,000 payments through the real stack while faults rain.

A private stack (its own database, exchange and ports; three approval workers) takes the
payments at a steady rate while a chaos loop injects, every couple of seconds, one of: a SIGKILL
of an approval worker through supervisord, lost PG answers (``dropResponseRate``), PG errors
whose outcome is unknown (``PROVIDER_ERROR``, ``FAILED_INTERNAL_SYSTEM_PROCESSING``), confirms
slower than the client's timeout, lookups that fail or are rate limited, cancels whose answers
are lost or that fail, a PG that forgets idempotency keys, a merchant configuration error,
terminated PostgreSQL backends, webhooks dropped, delayed, duplicated and reordered. The workers'
failpoints kill them at random steps of the state machine besides. Whatever the webhooks miss,
our own asking settles; at the end, ``make reconcile`` for the day must find our books and the
PG's in agreement (exit 0).

Some payments follow a settlement timeline (a sandbox script): the confirm's answer is lost or a
500, the PG keeps the payment IN_PROGRESS for a while and then approves it, or aborts it. Some
paid orders are refunded, in full or in part, while the faults go on.

When the last payment and refund are in, the faults stop and the soak waits for everything to
settle, then compares the sandbox's ledger with the order database. It prints payments, faults
injected, lost, doubled, refunds unfinished, dead letters and the time to settle, and exits
non-zero on any violation of the invariants.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from deploy.stack import ROOT
from services.approval.reconciliation import KST
from tests import infra
from tests.e2e import faults
from tests.e2e.buyer import Buyer
from tests.e2e.faults import Expect, FaultStack

FAILPOINTS = "after_verify=0.01,after_confirming=0.01,after_pg_answer=0.01,before_ack=0.01"
UNKNOWN_CODES = ("PROVIDER_ERROR", "FAILED_INTERNAL_SYSTEM_PROCESSING")
LOOKUP_CODES = ("FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING", "FORBIDDEN_CONSECUTIVE_REQUEST")
CANCEL_CODES = ("PROVIDER_ERROR", "FAILED_REFUND_PROCESS", "FORBIDDEN_CONSECUTIVE_REQUEST")
SCRIPTED_SHARE = 0.05  # of the payments: a settlement timeline
ABORTED_SHARE = 0.25  # of those: the PG aborts in the end
REFUNDED_SHARE = 0.10  # of the payments: refunded after payment, in full or in part


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--payments", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=25.0, help="payments started per second")
    parser.add_argument("--workers", type=int, default=3, help="approval workers")
    parser.add_argument("--fault-every", type=float, default=2.0, help="seconds between faults")
    parser.add_argument("--settle-within", type=float, default=420.0)
    parser.add_argument("--seed", type=int, default=None)
    return parser.parse_args(argv)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Chaos:
    """Injects one random fault after another until stopped; counts what it did."""

    def __init__(self, fs: FaultStack, every: float) -> None:
        self._fs = fs
        self._every = every
        self.injected: Counter[str] = Counter()
        self._faults: list[Callable[[], Awaitable[None]]] = [
            self.kill_worker,
            self.lose_answers,
            self.unknown_errors,
            self.slow_confirms,
            self.failing_lookups,
            self.failing_cancels,
            self.forgotten_keys,
            self.misconfiguration,
            self.webhook_faults,
            self.terminate_backends,
        ]

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(random.uniform(0.5, 1.5) * self._every)
            if stop.is_set():
                return
            try:
                await random.choice(self._faults)()
            except Exception as exc:  # a busy machine may refuse a fault; the soak goes on
                say(f"  (a fault could not be injected: {type(exc).__name__})")

    async def kill_worker(self) -> None:
        if await faults.kill_random_worker(self._fs):
            self.injected["worker SIGKILL (supervisor)"] += 1

    async def lose_answers(self) -> None:
        await self._for_a_while("PG answer lost", dropResponseRate=0.5)

    async def unknown_errors(self) -> None:
        code = random.choice(UNKNOWN_CODES)
        await self._for_a_while(f"PG error {code}", errorRate=0.5, errorCode=code)

    async def slow_confirms(self) -> None:
        await self._for_a_while("PG slower than timeout", confirmLatencyMs=1500)

    async def failing_lookups(self) -> None:
        code = random.choice(LOOKUP_CODES)
        knobs = {"errorRate": 0.5, "errorCode": code}
        await self._for_a_while(f"lookups fail {code}", lookupByKey=knobs, lookupByOrder=knobs)

    async def failing_cancels(self) -> None:
        if random.random() < 0.5:
            await self._for_a_while("cancel answer lost", cancel={"dropResponseRate": 0.5})
            return
        code = random.choice(CANCEL_CODES)
        await self._for_a_while(
            f"cancels fail {code}", cancel={"errorRate": 0.5, "errorCode": code}
        )

    async def forgotten_keys(self) -> None:
        await self._for_a_while(
            "PG forgot idempotency keys (answers lost)",
            forgetIdempotencyKeys=True,
            confirm={"dropResponseRate": 0.3},
            cancel={"dropResponseRate": 0.3},
        )

    async def webhook_faults(self) -> None:
        knobs = {"dropRate": 0.5, "duplicateRate": 0.3, "delayMs": 500, "reorder": True}
        await self._for_a_while("webhooks dropped/duplicated/delayed/reordered", webhooks=knobs)

    async def misconfiguration(self) -> None:
        await self._for_a_while(
            "merchant configuration error", confirm={"errorRate": 1, "errorCode": "INVALID_API_KEY"}
        )

    async def terminate_backends(self) -> None:
        await self._fs.terminate_backends()
        self.injected["PostgreSQL backends terminated"] += 1

    async def _for_a_while(self, name: str, **knobs: Any) -> None:
        await self._fs.faults(**knobs)
        self.injected[name] += 1
        try:
            await asyncio.sleep(random.uniform(1.0, 3.0))
        finally:
            await faults.persistently(self._fs.no_faults, within=60)


async def pay_at_rate(
    buyer: Buyer, orders: list[dict[str, Any]], rate: float, concurrency: int = 24
) -> None:
    """Start payments at ``rate`` per second, at most ``concurrency`` in flight (a browser whose
    page does not load tries again, for up to two minutes)."""
    done, semaphore = 0, asyncio.Semaphore(concurrency)

    async def one(index: int, order: dict[str, Any]) -> None:
        nonlocal done
        await asyncio.sleep(index / rate)
        async with semaphore:
            await faults.pay(buyer, order, within=120)
        done += 1
        if done % 100 == 0:
            say(f"  {done} payments sent")

    await asyncio.gather(*(one(i, order) for i, order in enumerate(orders)))


async def script_some(fs: FaultStack, orders: list[dict[str, Any]]) -> set[str]:
    """Give a share of the orders a settlement timeline; returns those the PG will abort."""
    aborted: set[str] = set()
    for order in random.sample(orders, int(len(orders) * SCRIPTED_SHARE)):
        outcome = "ABORTED" if random.random() < ABORTED_SHARE else "DONE"
        answer = random.choice(("DROP", "FAILED_INTERNAL_SYSTEM_PROCESSING"))
        after = round(random.uniform(2.0, 20.0), 1)
        await fs.script(
            order["orderId"], answer=answer, completeAfterSeconds=after, outcome=outcome
        )
        if outcome == "ABORTED":
            aborted.add(order["orderId"])
    return aborted


async def refund_some(buyer: Buyer, orders: list[dict[str, Any]]) -> int:
    """Refund a share of the paid orders (half in full, half in part) as they get paid."""
    chosen = random.sample(orders, int(len(orders) * REFUNDED_SHARE))

    async def one(order: dict[str, Any]) -> bool:
        if not await paid_within(buyer, order["orderId"], 240):
            return False
        body: dict[str, Any] = {"reason": "soak refund"}
        if random.random() < 0.5:
            body["amount"] = max(100, order["amount"] // 3)
        path = f"/api/orders/{order['orderId']}/cancel"

        async def ask() -> None:
            response = await buyer.gateway.post(path, json=body)
            assert response.status_code == 202, response.text

        await faults.persistently(ask, within=60)
        return True

    return sum(await asyncio.gather(*(one(order) for order in chosen)))


async def paid_within(buyer: Buyer, order_id: str, seconds: float) -> bool:
    """Whether the order is PAID within ``seconds`` (a page that fails to load is read again)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        order = await faults.persistently(lambda: buyer.order(order_id), within=60)
        if order["status"] == "PAID":
            return True
        await asyncio.sleep(0.5)
    return False


async def place(buyer: Buyer, count: int) -> list[dict[str, Any]]:
    semaphore = asyncio.Semaphore(16)
    sku = await buyer.first_sku()

    async def one() -> dict[str, Any]:
        async with semaphore:
            return await faults.persistently(
                lambda: buyer.place_order(items=[{"sku": sku, "quantity": 1}]), within=60
            )

    return await asyncio.gather(*(one() for _ in range(count)))


async def soak(args: argparse.Namespace, admin_dsn: str, amqp_url: str) -> int:
    env = {
        "APPROVAL_FAILPOINTS": FAILPOINTS,
        "APPROVAL_PREFETCH": "32",
        "DB_POOL_MAX": "8",
        "LOG_LEVEL": "WARNING",
    }
    say(f"starting a private stack ({args.workers} approval workers)…")
    async with (
        faults.fault_stack(admin_dsn, amqp_url, workers=args.workers, env=env) as fs,
        Buyer.for_stack(fs.config) as buyer,
    ):
        started = time.monotonic()
        say(f"placing {args.payments} orders…")
        orders = await place(buyer, args.payments)
        aborted = await script_some(fs, orders)
        say(f"paying at {args.rate:g}/s while faults are injected every ~{args.fault_every:g}s…")
        chaos, stop = Chaos(fs, args.fault_every), asyncio.Event()
        chaos_task = asyncio.create_task(chaos.run(stop))
        paying = time.monotonic()
        payable = [o for o in orders if o["orderId"] not in aborted]
        refunding = asyncio.create_task(refund_some(buyer, payable))
        await pay_at_rate(buyer, orders, args.rate)
        refunds = await refunding
        stop.set()
        await chaos_task
        await faults.persistently(fs.no_faults, within=60)
        sent = time.monotonic()
        say("all payments sent; faults stopped; waiting for everything to settle…")
        try:
            snap = await faults.assert_money_is_right(
                fs, orders, Expect.EITHER, within=args.settle_within
            )
            problems: list[str] = []
        except AssertionError as failure:
            snap = await faults.snapshot(fs, [o["orderId"] for o in orders])
            problems = [str(failure)]
        settled = time.monotonic()
        await fs.wait_workers_running()
        say("reconciling the day with the PG…")
        reconciled = await asyncio.to_thread(reconcile_today, fs)
        if reconciled.returncode != 0:
            say("\n".join(unresolved_discrepancies(fs.config.run_dir / "reconciliation")))
        outcome = Outcome(snap, aborted, refunds, await faults.dead_letters(fs), reconciled)
        return report(args, fs, chaos, outcome, problems, (paying, sent, settled, started))


def reconcile_today(fs: FaultStack) -> subprocess.CompletedProcess[str]:
    """`make reconcile` for today against the soak's stack."""
    env = {**fs.config.environment(), "DATABASE_URL": fs.database_url}
    today = datetime.now(UTC).astimezone(KST).date().isoformat()
    command = [
        sys.executable,
        "-m",
        "services.approval",
        "reconcile",
        "--date",
        today,
        "--report-dir",
        str(fs.config.run_dir / "reconciliation"),
    ]
    return subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )


def unresolved_discrepancies(report_dir: Path) -> list[str]:
    """One line per discrepancy the day's reports left unresolved: the run's directory goes with
    the stack, so a failed reconciliation is told in full here or nowhere."""
    lines = []
    for path in sorted(report_dir.glob("reconciliation-*.json")):
        for found in orjson.loads(path.read_bytes()).get("discrepancies", []):
            lines.append(orjson.dumps(found).decode())
    return lines


@dataclass
class Outcome:
    snap: faults.Snapshot
    aborted: set[str]  # scripted to be aborted by the PG: must end not paid
    refunds: int  # refunds asked for
    dead_letters: list[str]
    reconciled: subprocess.CompletedProcess[str]

    @property
    def lost(self) -> int:
        """Orders that should hold money (or have refunded it) but do not: a payment lost."""
        settled_with_money = faults.HOLDING | {"REFUNDED"}
        return sum(
            1
            for order_id, order in self.snap.orders.items()
            if order_id not in self.aborted and order["status"] not in settled_with_money
        )

    @property
    def paid_aborted(self) -> int:
        return sum(1 for o in self.aborted if self.snap.orders[o]["status"] in faults.HOLDING)


def report(
    args: argparse.Namespace,
    fs: FaultStack,
    chaos: Chaos,
    outcome: Outcome,
    problems: list[str],
    times: tuple[float, float, float, float],
) -> int:
    paying, sent, settled, started = times
    snap = outcome.snap
    injected = Counter(chaos.injected)
    for point, count in faults.failpoint_kills(fs).items():
        injected[f"failpoint SIGKILL {point}"] += count
    statuses = Counter(o["status"] for o in snap.orders.values())
    confirms = sum(p["confirmCalls"] for ps in snap.ledger.values() for p in ps)
    lines = [
        "",
        "soak",
        f"  payments        {args.payments} (sent in {sent - paying:.1f}s)",
        f"  faults injected {sum(injected.values())}",
        *(f"    {count:5d}  {name}" for name, count in sorted(injected.items())),
        f"  timelines       {int(args.payments * SCRIPTED_SHARE)} scripted"
        f" ({len(outcome.aborted)} aborted by the PG)",
        "  orders          " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())),
        f"  refunds asked   {outcome.refunds}, unfinished {len(snap.unsettled_refunds)}",
        f"  lost            {outcome.lost}",
        f"  doubled         {snap.double_approvals}",
        f"  dead letters    {len(outcome.dead_letters)}",
        f"  PG confirms     {confirms} executed (replays of a stored answer not counted)",
        f"  time to settle  {settled - sent:.1f}s after the last payment and fault",
        f"  total           {settled - started:.1f}s",
    ]
    reconciled = outcome.reconciled
    lines.append(f"  make reconcile  exit {reconciled.returncode}")
    lines += [f"    {line}" for line in reconciled.stdout.strip().splitlines()[1:]]
    print("\n".join(lines), flush=True)
    bad = outcome.lost or snap.double_approvals or outcome.paid_aborted or outcome.dead_letters
    bad = bad or reconciled.returncode != 0
    if problems or bad or snap.unsettled_refunds:
        print("\nVIOLATIONS:\n" + "\n".join(problems), flush=True)
        return 1
    print("  invariants      hold (ledger and order database agree)", flush=True)
    return 0


def main(argv: list[str]) -> int:
    args = parse(argv)
    random.seed(args.seed)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    with infra.postgres_server() as admin_dsn, infra.rabbitmq_server() as amqp_url:
        return asyncio.run(soak(args, admin_dsn, amqp_url))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
