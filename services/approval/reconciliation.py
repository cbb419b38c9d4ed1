"""Daily reconciliation: a day of the PG's transactions against our books.

The PG's day (``GET /v1/transactions``, page by page, Asia/Seoul) is staged into a temporary
table with ``COPY`` — one page in memory at a time — and compared with our books in SQL, payment
by payment, on the PG's own clock (our attempts keep the PG's ``approvedAt``, our refunds its
``canceledAt``):

- MISSING_OURS: the PG approved a payment we have no approval of;
- STATUS_DIFFERS: the PG approved a payment whose attempt we hold in another state;
- MISSING_AT_PG: we hold an approval the PG did not make that day;
- AMOUNT_DIFFERS: both approved it, for different amounts;
- REFUNDED_DIFFERS: the day's cancels of a payment differ from our refunds.

What has a clear rule is healed through :class:`~services.approval.pg_sync.PgSync` — the
webhook's own path, never a second implementation — and compared again; what remains is
reported, and makes the run exit non-zero (and the discrepancy gauge rise).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time as time_module
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from services.approval.domain import PgTransaction
from services.approval.metrics import (
    RECONCILIATION_DISCREPANCIES,
    RECONCILIATION_LAST_RUN,
    RECONCILIATION_UNRESOLVED,
)
from services.approval.pg_client import Found, NotFound, Page, PaymentGateway
from services.approval.pg_sync import PgSync
from shared.db import Connection
from shared.metrics import Probe

log = logging.getLogger(__name__)

KST = timezone(timedelta(hours=9))
PAGE = 1000
DETAILS_KEPT = 1000  # unresolved discrepancies listed in a report (all are counted)
HEALING_AT_ONCE = 16  # discrepancies healed concurrently (each asks the PG once)


class Kind(enum.StrEnum):
    MISSING_OURS = "MISSING_OURS"
    STATUS_DIFFERS = "STATUS_DIFFERS"
    MISSING_AT_PG = "MISSING_AT_PG"
    AMOUNT_DIFFERS = "AMOUNT_DIFFERS"
    REFUNDED_DIFFERS = "REFUNDED_DIFFERS"


# Healed by applying the PG's record of the payment (the webhook's path).
HEALABLE = frozenset({Kind.MISSING_OURS, Kind.STATUS_DIFFERS, Kind.REFUNDED_DIFFERS})


@dataclass(frozen=True)
class Discrepancy:
    kind: Kind
    payment_key: str
    order_id: str | None
    pg_approved: int | None
    ours_approved: int | None
    pg_canceled: int
    ours_canceled: int
    ours_state: str | None
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "paymentKey": self.payment_key,
            "orderId": self.order_id,
            "pg": {"approved": self.pg_approved, "canceled": self.pg_canceled},
            "ours": {
                "approved": self.ours_approved,
                "canceled": self.ours_canceled,
                "state": self.ours_state,
            },
            "note": self.note,
        }


@dataclass
class Report:
    day: date
    started_at: datetime
    finished_at: datetime | None = None
    transactions: int = 0
    approvals: int = 0
    cancels: int = 0
    found: Counter[str] = field(default_factory=Counter)
    healed: Counter[str] = field(default_factory=Counter)
    unresolved: Counter[str] = field(default_factory=Counter)
    details: list[Discrepancy] = field(default_factory=list)

    @property
    def unresolved_total(self) -> int:
        return sum(self.unresolved.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "startedAt": self.started_at.isoformat(),
            "finishedAt": self.finished_at.isoformat() if self.finished_at else None,
            "transactions": self.transactions,
            "approvals": self.approvals,
            "cancels": self.cancels,
            "found": _plain(self.found),
            "healed": _plain(self.healed),
            "unresolved": _plain(self.unresolved),
            "unresolvedTotal": self.unresolved_total,
            "discrepancies": [d.as_json() for d in self.details],
        }

    def summary(self) -> str:
        def counts(counter: Counter[str]) -> str:
            return ", ".join(f"{n} {k}" for k, n in sorted(counter.items())) or "none"

        return "\n".join(
            [
                f"reconciliation of {self.day.isoformat()} (Asia/Seoul)",
                f"  PG transactions  {self.transactions} ({self.approvals} approvals,"
                f" {self.cancels} cancels)",
                f"  found            {counts(self.found)}",
                f"  healed           {counts(self.healed)}",
                f"  unresolved       {counts(self.unresolved)}",
            ]
        )


def _plain(counter: Counter[str]) -> dict[str, int]:
    return {str(kind): n for kind, n in counter.items()}


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The day as the PG counts it: midnight to midnight in Asia/Seoul."""
    start = datetime.combine(day, time(), KST)
    return start, start + timedelta(days=1)


def yesterday_in_kst(now: datetime) -> date:
    return (now.astimezone(KST) - timedelta(days=1)).date()


class Reconciliation:
    def __init__(
        self, pool: asyncpg.Pool, gateway: PaymentGateway, sync: PgSync, page: int = PAGE
    ) -> None:
        self._pool = pool
        self._gateway = gateway
        self._sync = sync
        self._page = page

    async def run(self, day: date, now: datetime) -> Report:
        report = Report(day, now)
        async with self._pool.acquire() as conn:
            await conn.execute(_STAGING)
            try:
                await self._stage(conn, day, report)
                await conn.execute("CREATE INDEX ON pg_day (payment_key)")
                staged = Staged(conn, day)
                async for batch in staged.discrepancies(HEALING_AT_ONCE * 4):
                    await self._settle_all(staged, batch, report)
            finally:
                await conn.execute("DROP TABLE IF EXISTS pg_day")
        report.finished_at = datetime.now(KST)
        log.log(
            logging.WARNING if report.unresolved_total else logging.INFO,
            "reconciliation done",
            extra={"day": day.isoformat(), "unresolved": report.unresolved_total},
        )
        return report

    async def _stage(self, conn: Connection, day: date, report: Report) -> None:
        """The PG's day into ``pg_day``, one page at a time."""
        async for page in self._pages(day):
            rows = [_staged(t) for t in page]
            await conn.copy_records_to_table("pg_day", records=rows, columns=_STAGED_COLUMNS)
            report.transactions += len(page)
            report.approvals += sum(1 for t in page if t.is_approval)
        report.cancels = report.transactions - report.approvals

    async def _pages(self, day: date) -> AsyncIterator[tuple[PgTransaction, ...]]:
        after: str | None = None
        while True:
            page = await self._gateway.transactions(
                day.isoformat(), day.isoformat(), after, self._page
            )
            if not isinstance(page, Page):
                raise ReconciliationFailed(
                    f"the PG's transactions could not be read: {page.reason}"
                )
            if page.transactions:
                yield page.transactions
            if len(page.transactions) < self._page:
                return
            after = page.transactions[-1].transaction_key

    async def _settle_all(self, staged: Staged, batch: list[Discrepancy], report: Report) -> None:
        """Heal a batch, at most :data:`HEALING_AT_ONCE` at a time (the PG is asked per
        payment; the staging connection is shared, one query at a time)."""
        limit = asyncio.Semaphore(HEALING_AT_ONCE)

        async def one(found: Discrepancy) -> None:
            async with limit:
                await self._settle(staged, found, report)

        await asyncio.gather(*(one(found) for found in batch))

    async def _settle(self, staged: Staged, found: Discrepancy, report: Report) -> None:
        report.found[found.kind] += 1
        remaining = await self._heal(staged, found)
        if remaining is None:
            report.healed[found.kind] += 1
            return
        report.unresolved[remaining.kind] += 1
        if len(report.details) < DETAILS_KEPT:
            report.details.append(remaining)

    async def _heal(self, staged: Staged, found: Discrepancy) -> Discrepancy | None:
        """None when the PG's record, applied, makes our books agree; else what remains."""
        lookup = await self._gateway.get_payment(found.payment_key)
        if isinstance(lookup, NotFound):
            return _noted(found, "the PG does not know this payment")
        if not isinstance(lookup, Found):
            return _noted(found, f"the PG could not be asked: {lookup.reason}")
        if found.kind in HEALABLE:
            synced = await self._sync.apply(lookup.payment)
            if synced.unmatched:
                return _noted(found, "approved at the PG for an order we never had")
        elif found.kind is Kind.MISSING_AT_PG and lookup.payment.approved:
            approved_at = lookup.payment.approved_at
            if approved_at is not None and approved_at.astimezone(KST).date() != staged.day:
                return None  # approved, on another day by the PG's clock: nothing differs
        again = await staged.discrepancy_of(found.payment_key)
        return None if again is None else _noted(again, found.note or "no rule heals this")


class ReconciliationFailed(Exception):
    """The run could not be completed (the PG's transactions could not be read)."""


def _noted(found: Discrepancy, note: str) -> Discrepancy:
    return Discrepancy(**{**found.__dict__, "note": note})


_STAGED_COLUMNS = ("transaction_key", "payment_key", "order_id", "approval", "amount", "at")
_STAGING = (
    "CREATE TEMP TABLE IF NOT EXISTS pg_day (transaction_key text, payment_key text,"
    " order_id text, approval boolean, amount bigint, at timestamptz);"
    " TRUNCATE pg_day"
)


def _staged(t: PgTransaction) -> tuple[object, ...]:
    return (t.transaction_key, t.payment_key, t.order_id, t.is_approval, t.amount, t.transaction_at)


# Per payment, the PG's day against ours, both by the PG's clock; $3 narrows to one payment.
_COMPARE = """
WITH pg AS (
    SELECT payment_key, max(order_id) AS order_id,
           sum(amount) FILTER (WHERE approval)::bigint AS approved,
           coalesce(sum(amount) FILTER (WHERE NOT approval), 0)::bigint AS canceled
    FROM pg_day WHERE $3::text IS NULL OR payment_key = $3 GROUP BY payment_key),
ours_approved AS (
    SELECT payment_key, order_id, approved_amount AS approved FROM payment_attempts
    WHERE state = 'APPROVED' AND approved_at >= $1 AND approved_at < $2
      AND ($3::text IS NULL OR payment_key = $3)),
ours_canceled AS (
    SELECT payment_key, sum(refunded_amount)::bigint AS canceled FROM refunds
    WHERE state = 'SUCCEEDED' AND refunded_amount > 0 AND canceled_at >= $1 AND canceled_at < $2
      AND ($3::text IS NULL OR payment_key = $3)
    GROUP BY payment_key),
joined AS (
    SELECT coalesce(pg.payment_key, oa.payment_key, oc.payment_key) AS payment_key,
           coalesce(pg.order_id, oa.order_id) AS order_id,
           pg.approved AS pg_approved, oa.approved AS ours_approved,
           coalesce(pg.canceled, 0) AS pg_canceled, coalesce(oc.canceled, 0) AS ours_canceled
    FROM pg FULL JOIN ours_approved oa USING (payment_key)
            FULL JOIN ours_canceled oc USING (payment_key))
SELECT j.*, a.state AS ours_state FROM joined j
LEFT JOIN payment_attempts a ON a.payment_key = j.payment_key
WHERE j.pg_approved IS DISTINCT FROM j.ours_approved OR j.pg_canceled <> j.ours_canceled
ORDER BY j.payment_key
"""


class Staged:
    """The PG's day staged on one connection (a temporary table is its session's alone): the
    discrepancies, in batches, and one payment's again after healing, one query at a time."""

    def __init__(self, conn: Connection, day: date) -> None:
        self.day = day
        self._conn = conn
        self._bounds = day_bounds(day)
        self._turn = asyncio.Lock()

    async def discrepancies(self, batch: int) -> AsyncIterator[list[Discrepancy]]:
        async with self._conn.transaction():
            cursor = await self._conn.cursor(_COMPARE, *self._bounds, None)
            while True:
                async with self._turn:
                    rows = await cursor.fetch(batch)
                if not rows:
                    return
                yield [_discrepancy(row) for row in rows]

    async def discrepancy_of(self, payment_key: str) -> Discrepancy | None:
        async with self._turn:
            row = await self._conn.fetchrow(_COMPARE, *self._bounds, payment_key)
        return None if row is None else _discrepancy(row)


def _discrepancy(row: asyncpg.Record) -> Discrepancy:
    pg, ours, state = row["pg_approved"], row["ours_approved"], row["ours_state"]
    if pg is not None and ours is None:
        kind = Kind.STATUS_DIFFERS if state is not None else Kind.MISSING_OURS
    elif pg is None and ours is not None:
        kind = Kind.MISSING_AT_PG
    elif pg != ours:
        kind = Kind.AMOUNT_DIFFERS
    else:
        kind = Kind.REFUNDED_DIFFERS
    return Discrepancy(
        kind,
        row["payment_key"],
        row["order_id"],
        pg,
        ours,
        row["pg_canceled"],
        row["ours_canceled"],
        state,
    )


# --- keeping reports, and the daily run --------------------------------------------------------


def write_report(report: Report, directory: Path) -> Path:
    """The report as JSON in ``directory`` (created if needed); returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = report.started_at.astimezone(KST).strftime("%Y%m%dT%H%M%S")
    path = directory / f"reconciliation-{report.day.isoformat()}-{stamp}.json"
    path.write_bytes(orjson.dumps(report.as_json(), option=orjson.OPT_INDENT_2))
    return path


async def keep(conn: Connection, run_id: int, report: Report) -> None:
    await conn.execute(
        "UPDATE reconciliation_runs SET finished_at = now(), unresolved = $2,"
        " report = $3::text::jsonb WHERE id = $1",
        run_id,
        report.unresolved_total,
        orjson.dumps(report.as_json()).decode(),
    )


async def start_run(conn: Connection, day: date, trigger: str) -> int | None:
    """A new run of ``day``; None if the daily run of that day was claimed already."""
    run_id: int | None = await conn.fetchval(
        "INSERT INTO reconciliation_runs (day, trigger) VALUES ($1, $2)"
        " ON CONFLICT (day) WHERE trigger = 'daily' DO NOTHING RETURNING id",
        day,
        trigger,
    )
    return run_id


# The newest day's last finished run: what still needs a person, whichever worker ran it.
_LATEST_RUN = (
    "SELECT (report->'unresolved')::text AS unresolved,"
    " extract(epoch FROM finished_at)::float8 AS finished"
    " FROM reconciliation_runs WHERE finished_at IS NOT NULL"
    " ORDER BY day DESC, finished_at DESC LIMIT 1"
)


def latest_run_probe(pool: asyncpg.Pool) -> Probe:
    """Every worker exports the latest reconciliation's unresolved discrepancies, read from its
    kept report, so that none keeps a stale count from a run it made days ago."""

    async def probe() -> None:
        row = await pool.fetchrow(_LATEST_RUN)
        if row is None:
            return
        unresolved: dict[str, int] = orjson.loads(row["unresolved"] or "{}")
        for kind in Kind:
            RECONCILIATION_UNRESOLVED.labels(kind.value).set(unresolved.get(kind.value, 0))
        RECONCILIATION_LAST_RUN.set(row["finished"])

    return probe


def count(report: Report) -> None:
    for kind in Kind:
        RECONCILIATION_UNRESOLVED.labels(kind.value).set(report.unresolved.get(kind, 0))
        healed, unresolved = report.healed.get(kind, 0), report.unresolved.get(kind, 0)
        RECONCILIATION_DISCREPANCIES.labels(kind.value, "healed").inc(healed)
        RECONCILIATION_DISCREPANCIES.labels(kind.value, "unresolved").inc(unresolved)
    RECONCILIATION_LAST_RUN.set(time_module.time())


async def reconcile_and_keep(
    pool: asyncpg.Pool,
    reconciliation: Reconciliation,
    day: date,
    trigger: str,
    report_dir: Path,
) -> tuple[Report, Path] | None:
    """Run, keep the report in the database and as a file, count it; None if the daily run of
    that day is another worker's."""
    async with pool.acquire() as conn:
        run_id = await start_run(conn, day, trigger)
    if run_id is None:
        return None
    try:
        report = await reconciliation.run(day, datetime.now(KST))
    except BaseException:
        async with pool.acquire() as conn:  # let the next round try again
            await conn.execute("DELETE FROM reconciliation_runs WHERE id = $1", run_id)
        raise
    async with pool.acquire() as conn:
        await keep(conn, run_id, report)
    count(report)
    return report, write_report(report, report_dir)


class Daily:
    """Reconciles yesterday (Asia/Seoul) once a day at ``at`` (HH:MM, Asia/Seoul): one worker
    claims the day, the others find it claimed. A failed run is tried again next round."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        reconciliation: Reconciliation,
        at: time,
        report_dir: Path,
        every: float = 60.0,
    ) -> None:
        self._pool = pool
        self._reconciliation = reconciliation
        self._at = at
        self._report_dir = report_dir
        self._every = every

    async def run(self) -> None:
        while True:
            try:
                await self.run_due(datetime.now(KST))
            except Exception:
                log.exception("daily reconciliation failed; trying again later")
            await asyncio.sleep(self._every)

    async def run_due(self, now: datetime) -> Report | None:
        local = now.astimezone(KST)
        if local.time() < self._at:
            return None
        day = yesterday_in_kst(now)
        done = await reconcile_and_keep(
            self._pool, self._reconciliation, day, "daily", self._report_dir
        )
        return done[0] if done else None
