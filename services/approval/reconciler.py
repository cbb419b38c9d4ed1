"""The reconciler: finds work nobody is doing and does it.

Every interval it lists attempts whose driver died (VERIFIED for too long, CONFIRMING with an
expired lease), UNKNOWN attempts whose next check has come, AWAITING_ORDER attempts whose order
is now known (or that waited too long), and refunds in the same situations, and drives each.
Several workers may list the same rows: the conditional lease UPDATE lets exactly one of them
work on each, the others find nothing to claim.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from services.approval import repository as repo
from services.approval.domain import RefundState
from services.approval.metrics import (
    ATTEMPTS_STUCK,
    ATTEMPTS_UNKNOWN,
    OLDEST_UNKNOWN_SECONDS,
    OLDEST_UNSETTLED_SECONDS,
    REFUNDS_BY_STATE,
)
from services.approval.refunds import Refunds
from services.approval.service import Payments

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcilePolicy:
    interval: float = 2.0
    batch: int = 100
    concurrency: int = 64
    verified_grace: float = 5.0
    awaiting_timeout: float = 120.0
    report_every: float = 30.0
    # An authentication this old is close to the PG's 10-minute window: say so every round.
    warn_age: float = 300.0
    # The PG's confirm window: an attempt still unsettled after it is stuck (listed, alerted).
    window: float = 600.0


class Reconciler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        payments: Payments,
        refunds: Refunds,
        policy: ReconcilePolicy,
        heartbeat: Callable[[], None] = lambda: None,
    ) -> None:
        self._heartbeat = heartbeat
        self._pool = pool
        self._payments = payments
        self._refunds = refunds
        self._policy = policy
        self._limit = asyncio.Semaphore(policy.concurrency)
        self._last_report = 0.0

    async def run(self) -> None:
        """Reconcile until cancelled; a failed round is logged and the next one tries again."""
        while True:
            try:
                await self.run_once()
                await self._report()
                self._heartbeat()
            except Exception:
                log.exception("reconcile round failed")
            await asyncio.sleep(self._policy.interval)

    async def run_once(self) -> int:
        """One round; returns how many items it tried to drive."""
        p = self._policy
        async with self._pool.acquire() as conn:
            attempts = await repo.due_attempts(conn, p.verified_grace, p.batch)
            awaiting = await repo.due_awaiting(conn, p.awaiting_timeout, p.batch)
            refunds = await repo.due_refunds(conn, p.verified_grace, p.batch)
        jobs: list[Awaitable[object]] = [
            self._payments.drive(k) for k in dict.fromkeys(attempts + awaiting)
        ]
        jobs += [self._refunds.drive(r) for r in refunds]
        await asyncio.gather(*(self._guarded(job) for job in jobs))
        return len(jobs)

    async def _guarded(self, job: Awaitable[object]) -> None:
        async with self._limit:
            try:
                await job
            except Exception:
                log.exception("reconciling an item failed")

    async def oldest_unsettled_age(self) -> float:
        return await self._payments.oldest_unsettled_age()

    async def _report(self) -> None:
        """Export the oldest unsettled age, the stuck attempts and the open refunds every round
        (index scans: cheap); log them now and then, and at once when they need a person."""
        age = await self.oldest_unsettled_age()
        OLDEST_UNSETTLED_SECONDS.set(age)
        async with self._pool.acquire() as conn:
            stuck = await repo.count_stuck(conn, self._policy.window)
            unknown, unknown_age = await repo.unknown_attempts(conn)
            refunds = await repo.count_refunds_by_state(conn)
        ATTEMPTS_STUCK.set(stuck)
        ATTEMPTS_UNKNOWN.set(unknown)
        OLDEST_UNKNOWN_SECONDS.set(unknown_age)
        for state in (
            RefundState.REQUESTED,
            RefundState.CANCELING,
            RefundState.UNKNOWN,
            RefundState.FAILED,
        ):
            REFUNDS_BY_STATE.labels(state.value).set(refunds.get(state, 0))
        now = time.monotonic()
        if now - self._last_report < self._policy.report_every and age < self._policy.warn_age:
            return
        self._last_report = now
        level = logging.WARNING if age >= self._policy.warn_age else logging.INFO
        log.log(level, "oldest unsettled authentication", extra={"age_seconds": round(age, 1)})
        if stuck:
            await self._list_stuck()

    async def _list_stuck(self) -> None:
        """Name the stuck attempts: the PG has not settled them although its window closed."""
        async with self._pool.acquire() as conn:
            listed = await repo.stuck_attempts(conn, self._policy.window, 10)
        for item in listed:
            log.warning(
                "payment stuck: the PG has not settled it although its window closed",
                extra={
                    "order_id": item.order_id,
                    "payment_key": item.payment_key,
                    "state": item.state.value,
                    "age_seconds": round(item.age_seconds),
                    "tries": item.tries,
                    "last_answer": item.last_answer,
                },
            )
