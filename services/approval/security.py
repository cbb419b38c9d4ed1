"""``python -m services.approval security-events [--since WHEN] [--limit N]``: the tampering and
forgery approval refused (see :class:`~services.approval.domain.SecurityKind`), latest first."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from datetime import datetime

from services.approval import repository as repo
from services.approval.config import Settings
from services.approval.domain import SecurityEvent
from shared import db
from shared.events import utcnow
from shared.operators import parse_since, table, window_parser

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


def parser() -> argparse.ArgumentParser:
    return window_parser("python -m services.approval security-events")


async def fetch(settings: Settings, since: datetime | None, limit: int) -> list[SecurityEvent]:
    conn = await db.connect(settings.database_url, settings.db_schema)
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
    tool = parser()
    args = tool.parse_args(argv)
    if args.limit < 1:
        tool.error("--limit must be at least 1")
    try:
        since = parse_since(args.since, utcnow()) if args.since else None
    except ValueError:
        tool.error(f"--since {args.since!r}: expected 15m, 2h, 7d or an ISO-8601 time")
    print(render(asyncio.run(fetch(settings, since, args.limit))))
    return 0
