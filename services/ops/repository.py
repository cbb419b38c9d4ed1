"""What the console reads beyond the operator commands' own queries (which it calls as they
are: :mod:`services.approval.repository`), and its audit trail. Plain SQL on approval's schema."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from services.approval.domain import UNSETTLED
from shared import sql
from shared.db import Connection

# A literal, as approval's partial index on unsettled attempts lists them: a generic plan uses
# the index only for a condition it can read.
_UNSETTLED_STATES = sql.literals(UNSETTLED)


@dataclass(frozen=True)
class InFlight:
    """An authentication not settled yet, with the PG's last answer about it."""

    order_id: str
    payment_key: str
    state: str
    age_seconds: float
    tries: int
    amount: int
    pg_code: str | None
    pg_message: str | None
    next_check_at: datetime | None


# Through approval's unsettled partial index: the states as a literal, which the index's
# predicate must imply (a parameter would not, on a generic plan).
IN_FLIGHT = (
    "SELECT order_id, payment_key, state, tries, presented_amount, pg_code, pg_message,"
    "  next_check_at, EXTRACT(EPOCH FROM now() - authenticated_at)::float8 AS age"
    " FROM payment_attempts"
    f" WHERE state IN ({_UNSETTLED_STATES})"
    " ORDER BY authenticated_at LIMIT $1"
)


async def in_flight(conn: Connection, limit: int) -> list[InFlight]:
    """Unsettled attempts, oldest first (ages on the database's clock)."""
    rows = await conn.fetch(IN_FLIGHT, limit)
    return [
        InFlight(
            r["order_id"],
            r["payment_key"],
            r["state"],
            r["age"],
            r["tries"],
            r["presented_amount"],
            r["pg_code"],
            r["pg_message"],
            r["next_check_at"],
        )
        for r in rows
    ]


@dataclass(frozen=True)
class ReconciliationRun:
    day: date
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    unresolved: int | None
    report: dict[str, Any] | None


async def reconciliation_runs(conn: Connection, limit: int) -> list[ReconciliationRun]:
    """The latest runs first (``make reconcile`` and the daily one)."""
    rows = await conn.fetch(
        "SELECT day, trigger, started_at, finished_at, unresolved, report"
        " FROM reconciliation_runs ORDER BY started_at DESC, id DESC LIMIT $1",
        limit,
    )
    return [
        ReconciliationRun(
            r["day"], r["trigger"], r["started_at"], r["finished_at"], r["unresolved"], r["report"]
        )
        for r in rows
    ]


@dataclass(frozen=True)
class Action:
    """One operator action, as audited."""

    operator: str
    action: str
    target: str
    result: str
    detail: str
    client_ip: str | None
    at: datetime | None = None


async def record(conn: Connection, action: Action) -> None:
    await conn.execute(
        "INSERT INTO operator_actions (operator, action, target, result, detail, client_ip)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        action.operator,
        action.action,
        action.target,
        action.result,
        action.detail,
        action.client_ip,
    )


async def recent_actions(conn: Connection, limit: int) -> list[Action]:
    rows = await conn.fetch(
        "SELECT operator, action, target, result, detail, client_ip, at FROM operator_actions"
        " ORDER BY at DESC, id DESC LIMIT $1",
        limit,
    )
    return [
        Action(
            r["operator"],
            r["action"],
            r["target"],
            r["result"],
            r["detail"],
            r["client_ip"],
            r["at"],
        )
        for r in rows
    ]
