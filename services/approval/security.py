"""``python -m services.approval security-events [--since WHEN] [--limit N]``: the tampering and
forgery approval refused (see :class:`~services.approval.domain.SecurityKind`), latest first."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from services.approval import repository as repo
from services.approval.config import Settings
from services.approval.domain import SecurityEvent
from shared import db
from shared.events import utcnow
from shared.operators import parse_window, table

HEADERS = (
    "occurred_at",
    "kind",
    "order_id",
    "payment_key",
    "expected",
    "presented",
    "client_ip",
    "user_agent",
)


async def fetch(settings: Settings, since: datetime | None, limit: int) -> list[SecurityEvent]:
    conn = await db.connect(settings.db_url, settings.db_schema, settings.role)
    try:
        return await repo.security_events(conn, since, limit)
    finally:
        await conn.close()


def render(events: Sequence[SecurityEvent]) -> str:
    rows = [
        (
            e.occurred_at,
            e.kind.value,
            e.order_id,
            e.payment_key,
            e.expected,
            e.presented,
            e.client_ip,
            e.user_agent,
        )
        for e in events
    ]
    return f"{table(HEADERS, rows)}\n{len(events)} security event(s)"


def main(settings: Settings, argv: Sequence[str]) -> int:
    since, limit = parse_window("python -m services.approval security-events", argv, utcnow())
    print(render(asyncio.run(fetch(settings, since, limit))))
    return 0
