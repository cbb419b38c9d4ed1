"""`make soak` (``python -m tests.soak``): 1,000 payments through the real stack while faults rain.

A private stack (its own database, exchange and ports; three approval workers) takes the
payments at a steady rate while a chaos loop injects, every couple of seconds, one of: a SIGKILL
of an approval worker through supervisord, lost PG answers (``dropResponseRate``), PG errors
whose outcome is unknown (``PROVIDER_ERROR``, ``FAILED_INTERNAL_SYSTEM_PROCESSING``), confirms
slower than the client's timeout, terminated PostgreSQL backends. The workers' failpoints kill
them at random steps of the state machine besides. When the last payment is in, the faults stop
and the soak waits for everything to settle, then compares the sandbox's ledger with the order
database. It prints payments, faults injected, lost, doubled and the time to settle, and exits
non-zero on any violation of the invariants.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from tests import infra
from tests.e2e import faults
from tests.e2e.buyer import Buyer
from tests.e2e.faults import Expect, FaultStack

FAILPOINTS = "after_verify=0.01,after_confirming=0.01,after_pg_answer=0.01,before_ack=0.01"
UNKNOWN_CODES = ("PROVIDER_ERROR", "FAILED_INTERNAL_SYSTEM_PROCESSING")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--payments", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=25.0, help="payments started per second")
    parser.add_argument("--workers", type=int, default=3, help="approval workers")
    parser.add_argument("--fault-every", type=float, default=2.0, help="seconds between faults")
    parser.add_argument("--settle-within", type=float, default=300.0)
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
        say(f"paying at {args.rate:g}/s while faults are injected every ~{args.fault_every:g}s…")
        chaos, stop = Chaos(fs, args.fault_every), asyncio.Event()
        chaos_task = asyncio.create_task(chaos.run(stop))
        paying = time.monotonic()
        await pay_at_rate(buyer, orders, args.rate)
        stop.set()
        await chaos_task
        await faults.persistently(fs.no_faults, within=60)
        sent = time.monotonic()
        say("all payments sent; faults stopped; waiting for everything to settle…")
        try:
            snap = await faults.assert_money_is_right(
                fs, orders, Expect.PAID, within=args.settle_within
            )
            problems: list[str] = []
        except AssertionError as failure:
            snap = await faults.snapshot(fs, [o["orderId"] for o in orders])
            problems = [str(failure)]
        settled = time.monotonic()
        await fs.wait_workers_running()
        return report(args, fs, chaos, snap, problems, paying, sent, settled, started)


def report(
    args: argparse.Namespace,
    fs: FaultStack,
    chaos: Chaos,
    snap: faults.Snapshot,
    problems: list[str],
    paying: float,
    sent: float,
    settled: float,
    started: float,
) -> int:
    injected = Counter(chaos.injected)
    for point, count in faults.failpoint_kills(fs).items():
        injected[f"failpoint SIGKILL {point}"] += count
    paid = sum(1 for o in snap.orders.values() if o["status"] == "PAID")
    lost = len(snap.orders) - paid
    doubled = snap.double_approvals
    confirms = sum(p["confirmCalls"] for ps in snap.ledger.values() for p in ps)
    lines = [
        "",
        "soak",
        f"  payments        {args.payments} (sent in {sent - paying:.1f}s)",
        f"  faults injected {sum(injected.values())}",
        *(f"    {count:5d}  {name}" for name, count in sorted(injected.items())),
        f"  paid            {paid}",
        f"  lost            {lost}",
        f"  doubled         {doubled}",
        f"  PG confirms     {confirms} executed (replays of a stored answer not counted)",
        f"  time to settle  {settled - sent:.1f}s after the last payment and fault",
        f"  total           {settled - started:.1f}s",
    ]
    print("\n".join(lines), flush=True)
    if problems or lost or doubled:
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
