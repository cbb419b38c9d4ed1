"""Retention: the plumbing's bookkeeping rows are deleted once nothing can need them again.

Published outbox rows and inbox (dedup) rows only matter while a message can still be
published again or redelivered; a role's own short-lived rows (payment holds, idempotency
answers) likewise. Each :class:`Purge` deletes what is older than the retention, in small
batches (``FOR UPDATE SKIP LOCKED``, a pause between batches), so it never holds many locks or
competes with the hot path for long, and several processes of a role may run it at once.
The default retention (30 days) is longer than any redelivery and than the PG's 15-day
idempotency window.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import asyncpg

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Purge:
    """One table's purge: ``old`` is a condition on the row with ``$1`` = the retention in
    seconds, ``key`` the column (or ``ctid``) that names a row."""

    table: str
    old: str
    key: str = "ctid"

    def statement(self) -> str:
        return (
            f"DELETE FROM {self.table} WHERE {self.key} = ANY(ARRAY("
            f"SELECT {self.key} FROM {self.table} WHERE {self.old}"
            " LIMIT $2 FOR UPDATE SKIP LOCKED))"
        )


OLDER_THAN = "< now() - make_interval(secs => $1)"
OUTBOX = Purge("outbox", f"published_at IS NOT NULL AND created_at {OLDER_THAN}", key="id")
INBOX = Purge("inbox", f"processed_at {OLDER_THAN}")
PLUMBING = (OUTBOX, INBOX)


@dataclass(frozen=True)
class Retention:
    days: float = 30.0
    batch: int = 1000
    interval: float = 3600.0
    pause: float = 0.05


class Janitor:
    """Runs the purges of one role every ``retention.interval`` seconds."""

    def __init__(
        self, pool: asyncpg.Pool, retention: Retention, purges: tuple[Purge, ...] = PLUMBING
    ) -> None:
        self._pool = pool
        self._retention = retention
        self._purges = purges

    async def run(self) -> None:
        """Purge until cancelled; a failed round is logged and the next one tries again."""
        while True:
            try:
                await self.purge_all()
            except Exception:
                log.warning("retention purge failed; trying again next round", exc_info=True)
            await asyncio.sleep(self._retention.interval)

    async def purge_all(self) -> dict[str, int]:
        """One round over every table; returns how many rows each lost."""
        deleted = {purge.table: await self._purge(purge) for purge in self._purges}
        if any(deleted.values()):
            log.info("retention purge", extra={"deleted": deleted})
        return deleted

    async def _purge(self, purge: Purge) -> int:
        seconds, batch, total = self._retention.days * 86400, self._retention.batch, 0
        while True:
            result: str = await self._pool.execute(purge.statement(), seconds, batch)
            count = int(result.split()[-1])
            total += count
            if count < batch:
                return total
            await asyncio.sleep(self._retention.pause)
