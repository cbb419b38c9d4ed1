"""What needs a person, from the command line:

- ``python -m services.approval reconcile [--date YYYY-MM-DD] [--report-dir DIR]``: compare a day
  of the PG's transactions with our books (default: yesterday in Asia/Seoul), heal what has a
  clear rule, print a summary and, last, the JSON report's path; exit 1 while anything remains
  unresolved (2 if the run could not be completed);

- ``python -m services.approval stuck [--limit N]``: payments the PG has not settled although its
  confirm window closed (still asked, with backoff, until it does);
- ``python -m services.approval refunds [--state FAILED,UNKNOWN] [--limit N]``: refunds not done,
  with the PG's code and message (FAILED is a definitive refusal an operator must act on);
- ``python -m services.approval refunds retry REFUND_ID``: ask the PG again under a new key.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TypeVar

from services.approval import repository as repo
from services.approval.bootstrap import build, http_client
from services.approval.config import Settings
from services.approval.domain import RefundState
from services.approval.pg_client import TossClient
from services.approval.reconciliation import (
    KST,
    Reconciliation,
    ReconciliationFailed,
    Report,
    reconcile_and_keep,
    yesterday_in_kst,
)
from services.approval.refunds import retry_refund
from shared import db
from shared.clock import DatabaseClock
from shared.db import Connection
from shared.operators import table

T = TypeVar("T")
Command = Callable[[Settings, Sequence[str]], int]
OPEN_REFUNDS = "FAILED,UNKNOWN,REQUESTED,CANCELING"


def stuck(settings: Settings, argv: Sequence[str]) -> int:
    tool = argparse.ArgumentParser(prog="python -m services.approval stuck")
    tool.add_argument("--limit", type=int, default=100)
    args = tool.parse_args(argv)
    window = settings.confirm_window_seconds
    listed = asyncio.run(_with_conn(settings, lambda c: repo.stuck_attempts(c, window, args.limit)))
    rows = [
        (s.order_id, s.payment_key, s.state.value, round(s.age_seconds), s.tries, s.last_answer)
        for s in listed
    ]
    headers = ("order_id", "payment_key", "state", "age_s", "tries", "last_answer")
    print(f"{table(headers, rows)}\n{len(rows)} payment(s) stuck past the PG's window")
    return 0


def refunds(settings: Settings, argv: Sequence[str]) -> int:
    if argv[:1] == ["retry"]:
        return _retry(settings, argv[1:])
    tool = argparse.ArgumentParser(prog="python -m services.approval refunds")
    tool.add_argument("--state", default=OPEN_REFUNDS, help=f"comma-separated ({OPEN_REFUNDS})")
    tool.add_argument("--limit", type=int, default=100)
    args = tool.parse_args(argv)
    try:
        states = [RefundState(s.strip().upper()) for s in args.state.split(",") if s.strip()]
    except ValueError:
        tool.error(f"--state: one or more of {', '.join(s.value for s in RefundState)}")
    listed = asyncio.run(_with_conn(settings, lambda c: repo.refunds_in(c, states, args.limit)))
    rows = [
        (
            r.updated_at,
            r.refund.refund_id,
            r.refund.order_id,
            r.refund.state.value,
            r.refund.amount or "rest",
            r.pg_code,
            r.pg_message,
        )
        for r in listed
    ]
    headers = ("updated_at", "refund_id", "order_id", "state", "amount", "pg_code", "pg_message")
    print(f"{table(headers, rows)}\n{len(rows)} refund(s)")
    return 0


def reconcile(settings: Settings, argv: Sequence[str]) -> int:
    tool = argparse.ArgumentParser(prog="python -m services.approval reconcile")
    tool.add_argument("--date", help="YYYY-MM-DD (Asia/Seoul); default: yesterday")
    tool.add_argument("--report-dir", type=Path, default=Path(".run") / "reconciliation")
    args = tool.parse_args(argv)
    try:
        day = date.fromisoformat(args.date) if args.date else yesterday_in_kst(datetime.now(KST))
    except ValueError:
        tool.error(f"--date {args.date!r}: expected YYYY-MM-DD")
    try:
        report, path = asyncio.run(_reconcile(settings, day, args.report_dir))
    except ReconciliationFailed as failed:
        print(f"reconciliation of {day.isoformat()} not completed: {failed}", file=sys.stderr)
        return 2
    print(report.summary())
    print(path)
    return 1 if report.unresolved_total else 0


async def _reconcile(settings: Settings, day: date, report_dir: Path) -> tuple[Report, Path]:
    pool = await db.create_pool(
        settings.db_url, settings.db_schema, min_size=1, max_size=4, application_name=settings.role
    )
    http = http_client(settings)
    try:
        clock = DatabaseClock(pool)
        await clock.sync()
        gateway = TossClient(http, settings.pg_call_deadline_seconds)
        worker = build(settings, pool, gateway, spawn=_ignore, clock=clock.now)
        reconciliation = Reconciliation(pool, worker.gateway, worker.sync)
        done = await reconcile_and_keep(pool, reconciliation, day, "manual", report_dir)
        assert done is not None  # a manual run is never another's
        return done
    finally:
        await http.aclose()
        await pool.close()


def _retry(settings: Settings, argv: Sequence[str]) -> int:
    tool = argparse.ArgumentParser(prog="python -m services.approval refunds retry")
    tool.add_argument("refund_id")
    args = tool.parse_args(argv)
    retried = asyncio.run(_with_conn(settings, lambda c: retry_refund(c, args.refund_id)))
    if not retried:
        print(f"refund {args.refund_id} is not FAILED: nothing to retry")
        return 1
    print(f"refund {args.refund_id} will be asked again under a new key")
    return 0


async def _with_conn(settings: Settings, use: Callable[[Connection], Awaitable[T]]) -> T:
    conn = await db.connect(settings.db_url, settings.db_schema, settings.role)
    try:
        return await use(conn)
    finally:
        await conn.close()


def _ignore(job: Awaitable[object]) -> None:
    """A command drives nothing an event kicks off (it consumes no events)."""
    if isinstance(job, Coroutine):
        job.close()
