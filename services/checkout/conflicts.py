"""``python -m services.checkout conflicts [--since WHEN] [--limit N]``: success redirects that
presented a known paymentKey with another orderId, amount or paymentType (never announced),
latest first, beside what was first recorded for the key."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from services.checkout import repository
from services.checkout.config import Settings
from services.checkout.domain import Conflict
from shared import db
from shared.events import utcnow
from shared.operators import parse_window, table

HEADERS = (
    "received_at",
    "payment_key",
    "recorded",
    "presented",
    "client_ip",
    "user_agent",
)


async def fetch(settings: Settings, since: datetime | None, limit: int) -> list[Conflict]:
    conn = await db.connect(settings.db_url, settings.db_schema, settings.role)
    try:
        return await repository.conflicts(conn, since, limit)
    finally:
        await conn.close()


def _details(order_id: str, amount: int, payment_type: str) -> str:
    return f"{order_id} {amount} {payment_type}"


def render(conflicts: Sequence[Conflict]) -> str:
    rows = [
        (
            c.received_at,
            c.payment_key,
            _details(c.recorded.order_id, c.recorded.amount, c.recorded.payment_type),
            _details(c.presented.order_id, c.presented.amount, c.presented.payment_type),
            c.client_ip,
            c.user_agent,
        )
        for c in conflicts
    ]
    return f"{table(HEADERS, rows, width=60)}\n{len(conflicts)} conflicting redirect(s)"


def main(settings: Settings, argv: Sequence[str]) -> int:
    since, limit = parse_window("python -m services.checkout conflicts", argv, utcnow())
    print(render(asyncio.run(fetch(settings, since, limit))))
    return 0
