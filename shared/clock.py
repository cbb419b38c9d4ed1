"""One clock for every role: the database server's.

Deadlines are set by one process and judged by another (checkout stamps when a buyer came back,
approval decides whether a confirm may still go out, order expires what was not paid). Read
from each host's own clock they disagree by however far those clocks drift apart; read from the
database's clock they agree. :class:`DatabaseClock` reads ``now()`` from the server once, then
counts on with this process's monotonic clock (no round trip per reading, immune to wall-clock
jumps), and reads the server again every ``refresh`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import asyncpg

from shared.events import utcnow

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class DatabaseClock:
    """``now()`` as the database server sees it (see the module docstring)."""

    def __init__(self, pool: asyncpg.Pool, refresh: float = 30.0) -> None:
        self._pool = pool
        self._refresh = refresh
        # Until the first reading: this host's clock (a process that cannot reach its database
        # cannot do anything that needs the time either).
        self._anchor = utcnow()
        self._anchored_at = time.monotonic()

    def now(self) -> datetime:
        return self._anchor + timedelta(seconds=time.monotonic() - self._anchored_at)

    async def sync(self) -> None:
        """Read the server's clock, taking the middle of the round trip as its moment."""
        sent = time.monotonic()
        async with self._pool.acquire() as conn:
            server: datetime = await conn.fetchval("SELECT clock_timestamp()")
        received = time.monotonic()
        self._anchor, self._anchored_at = server, (sent + received) / 2

    async def run(self) -> None:
        """Keep reading the server's clock until cancelled; a failed read keeps the last one."""
        while True:
            await asyncio.sleep(self._refresh)
            try:
                await self.sync()
            except Exception:
                log.warning("reading the database's clock failed; keeping the last reading")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[DatabaseClock]:
        """Synced once (so the first reading is the server's), then refreshed in the background."""
        await self.sync()
        task = asyncio.create_task(self.run(), name="database-clock")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
