"""`python -m bench.reconcile`: the time and peak memory of reconciling a day of many transactions.

A sandbox on a throw-away database generates a day of DONE payments (some canceled, in full or in
part) with their transactions; our books are filled to match, from the PG's own transactions,
except for a few approvals and cancels left out on purpose (their webhooks "lost"), which the
run must find and heal. Then ``python -m services.approval reconcile`` runs as an operator runs
it, in a process of its own, and its wall time and peak RSS are measured.

    python -m bench.reconcile --payments 100000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from deploy.scratch import fresh_database
from deploy.stack import ROOT, free_port
from services.approval.pg_client import basic_auth

ADMIN_DSN = os.environ.get(
    "BENCH_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SECRET_KEY = "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R"  # noqa: S105 - the contract's public test key
MISSING_APPROVALS = 10  # approvals left out of our books: MISSING_OURS, healed
MISSING_CANCELS = 10  # cancels left out of our books: REFUNDED_DIFFERS, healed


def parse(argv: list[str]) -> argparse.Namespace:
    tool = argparse.ArgumentParser(prog="python -m bench.reconcile", description=__doc__)
    tool.add_argument("--payments", type=int, default=100_000)
    tool.add_argument("--cancel-rate", type=float, default=0.1)
    return tool.parse_args(argv)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextmanager
def sandbox(database_url: str) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SANDBOX_PORT": str(port),
        "LOG_LEVEL": "WARNING",
        "SANDBOX_WEBHOOK_URL": "",
    }
    process = subprocess.Popen([sys.executable, "-m", "services.sandbox"], env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the sandbox exited")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("the sandbox did not become healthy")


async def pg_transactions(url: str, day: date) -> AsyncIterator[list[dict[str, Any]]]:
    headers = {"Authorization": basic_auth(SECRET_KEY)}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
        after: str | None = None
        while True:
            query = {"startDate": day.isoformat(), "endDate": day.isoformat(), "limit": "10000"}
            if after:
                query["startingAfter"] = after
            page = (await client.get("/v1/transactions", params=query)).raise_for_status().json()
            if page:
                yield page
            if len(page) < 10_000:
                return
            after = page[-1]["transactionKey"]


@asynccontextmanager
async def books(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": "approval"})
    try:
        yield conn
    finally:
        await conn.close()


async def fill_books(database_url: str, url: str, day: date) -> tuple[int, int]:
    """Our books as the PG's transactions say, but for the first few approvals and cancels,
    left out; returns (approvals, cancels) written."""
    books_ = Books()
    async with books(database_url) as conn:
        async for page in pg_transactions(url, day):
            attempts, intents, refunds = books_.rows(page)
            await conn.copy_records_to_table("order_intents", records=intents, columns=INTENT)
            await conn.copy_records_to_table("payment_attempts", records=attempts, columns=ATTEMPT)
            await conn.copy_records_to_table("refunds", records=refunds, columns=REFUND)
    return books_.approvals, books_.cancels


INTENT = ("order_id", "amount", "currency", "customer_key", "expires_at", "status", "paid_by")
ATTEMPT = (
    "payment_key",
    "order_id",
    "presented_amount",
    "expected_amount",
    "approved_amount",
    "payment_type",
    "authenticated_at",
    "state",
    "idempotency_key",
    "approved_at",
    "event_id",
)
REFUND = (
    "refund_id",
    "order_id",
    "payment_key",
    "amount",
    "reason",
    "state",
    "idempotency_key",
    "refunded_amount",
    "canceled_at",
    "external",
    "event_id",
)
Row = tuple[object, ...]


class Books:
    """Turns the PG's transactions into our rows, leaving the first few out on purpose."""

    def __init__(self) -> None:
        self.seen_approvals = self.seen_cancels = self.approvals = self.cancels = 0

    def rows(self, page: list[dict[str, Any]]) -> tuple[list[Row], list[Row], list[Row]]:
        attempts: list[Row] = []
        intents: list[Row] = []
        refunds: list[Row] = []
        for t in page:
            at = datetime.fromisoformat(t["transactionAt"])
            key, order, amount = t["paymentKey"], t["orderId"], t["amount"]
            if t["status"] == "DONE":
                intents.append((order, amount, "KRW", "cus_bench", at, "PAID", key))
                self.seen_approvals += 1
                if self.seen_approvals > MISSING_APPROVALS:
                    attempts.append(
                        (
                            key,
                            order,
                            amount,
                            amount,
                            amount,
                            "NORMAL",
                            at,
                            "APPROVED",
                            f"confirm-{key}",
                            at,
                            uuid.uuid4(),
                        )
                    )
            else:
                self.seen_cancels += 1
                if self.seen_cancels > MISSING_CANCELS:
                    refund = f"pg_{t['transactionKey']}"
                    refunds.append(
                        (
                            refund,
                            order,
                            key,
                            amount,
                            "bench",
                            "SUCCEEDED",
                            f"external-{refund}",
                            amount,
                            at,
                            True,
                            uuid.uuid4(),
                        )
                    )
        self.approvals += len(attempts)
        self.cancels += len(refunds)
        return attempts, intents, refunds


def migrate(database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    for role in ("sandbox", "approval"):
        subprocess.run(
            [sys.executable, "-m", f"services.{role}", "migrate"],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )


def reconcile(database_url: str, url: str, day: date, report_dir: Path) -> tuple[float, int, str]:
    """Run the operator's command; (seconds, peak RSS in KiB, its output)."""
    env = {**os.environ, "DATABASE_URL": database_url, "TOSS_API_BASE": url}
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.approval",
            "reconcile",
            "--date",
            day.isoformat(),
            "--report-dir",
            str(report_dir),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode != 0:
        raise RuntimeError(f"reconcile exited {done.returncode}: {done.stdout}{done.stderr}")
    return seconds, peak, done.stdout


async def run(args: argparse.Namespace) -> int:
    day = datetime.now(UTC).date() - timedelta(days=1)
    async with fresh_database(ADMIN_DSN, prefix="benchrec") as database_url:
        migrate(database_url)
        with sandbox(database_url) as url, tempfile.TemporaryDirectory() as reports:
            say(f"generating {args.payments} payments in the sandbox for {day}…")
            started = time.monotonic()
            body = {
                "date": day.isoformat(),
                "payments": args.payments,
                "cancelRate": args.cancel_rate,
                "orderIdPrefix": "bench_",
            }
            async with httpx.AsyncClient(timeout=600) as client:
                made = (await client.post(f"{url}/sandbox/generate", json=body)).json()
            generated = time.monotonic() - started
            say(f"filling our books from the PG's {made['transactions']} transactions…")
            written = await fill_books(database_url, url, day)
            say("reconciling…")
            seconds, peak, output = reconcile(database_url, url, day, Path(reports))
    print(f"\nreconciliation benchmark ({made['transactions']} transactions)")
    print(
        f"  generated        {made['payments']} payments, {made['transactions']} transactions"
        f" in {generated:.1f}s"
    )
    print(
        f"  our books        {written[0]} approvals, {written[1]} cancels"
        f" ({MISSING_APPROVALS} + {MISSING_CANCELS} left out)"
    )
    print(f"  reconcile        {seconds:.1f}s wall, peak RSS {peak / 1024:.0f} MiB")
    print("  " + "\n  ".join(output.strip().splitlines()[:-1]))
    print(
        orjson.dumps(
            {
                "transactions": made["transactions"],
                "seconds": round(seconds, 2),
                "peakRssMiB": round(peak / 1024),
            }
        ).decode()
    )
    return 0


def main(argv: list[str]) -> int:
    return asyncio.run(run(parse(argv)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
