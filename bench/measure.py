"""Figures from the services' own timestamps (one database, one clock) and from /proc CPU times."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import psutil

from shared.events import PaymentApproved

# Every timestamp is written by the service itself (now() of its transaction, or the relay's
# published_at), so the split needs no clock but PostgreSQL's.
STAGES_SQL = """
SELECT r.order_id,
       r.received_at,
       co.published_at AS authenticated_published,
       a.created_at    AS attempt_received,
       ao.created_at   AS result_decided,
       ao.published_at AS result_published,
       o.updated_at    AS paid
FROM checkout.success_redirects r
JOIN checkout.outbox co ON co.event_id = r.event_id
JOIN approval.payment_attempts a ON a.payment_key = r.payment_key AND a.state = 'APPROVED'
JOIN approval.outbox ao
  ON ao.routing_key = $1
 AND convert_from(ao.body, 'UTF8')::jsonb ->> 'paymentKey' = r.payment_key
JOIN orders.orders o ON o.order_id = r.order_id AND o.status = 'PAID'
WHERE r.order_id = ANY($2)
"""

STAGE_NAMES = (
    "checkout → outbox → broker",
    "broker → approval",
    "approval → PG → result",
    "result → broker",
    "broker → order PAID",
)


@dataclass(frozen=True)
class PaymentTimeline:
    order_id: str
    received: datetime
    stages_ms: tuple[float, ...]

    @property
    def total_ms(self) -> float:
        return sum(self.stages_ms)


def _ms(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() * 1000


async def timelines(conn: asyncpg.Pool, order_ids: list[str]) -> list[PaymentTimeline]:
    rows = await conn.fetch(STAGES_SQL, PaymentApproved.routing_key, order_ids)
    return [_timeline(row) for row in rows]


def _timeline(row: asyncpg.Record) -> PaymentTimeline:
    points = [
        row["received_at"],
        row["authenticated_published"],
        row["attempt_received"],
        row["result_decided"],
        row["result_published"],
        row["paid"],
    ]
    stages = tuple(_ms(b, a) for a, b in itertools.pairwise(points))
    return PaymentTimeline(row["order_id"], row["received_at"], stages)


def approval_stage(timelines: list[PaymentTimeline]) -> list[tuple[float, float]]:
    """Per payment, when approval received it and when it decided the result (seconds since
    the first redirect): the stretch that holds a worker's slot, the PG call included."""
    if not timelines:
        return []
    start = min(t.received for t in timelines)
    spans = []
    for t in timelines:
        begin = (t.received - start).total_seconds() + sum(t.stages_ms[:2]) / 1000
        spans.append((begin, begin + t.stages_ms[2] / 1000))
    return spans


def peak_rate(times: list[float], window_s: float = 1.0) -> float:
    """The most events in any window of ``window_s`` seconds, per second."""
    ordered, first, most = sorted(times), 0, 0
    for last, time_s in enumerate(ordered):
        while time_s - ordered[first] >= window_s:
            first += 1
        most = max(most, last - first + 1)
    return most / window_s


def peak_overlap(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one instant (an end at the very instant of a start comes first)."""
    edges = sorted([(end, -1) for _, end in spans] + [(begin, 1) for begin, _ in spans])
    open_now = most = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def latency_summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else float("nan"),
    }


RABBITMQ_NAMES = {"beam.smp", "erl_child_setup", "epmd", "inet_gethost"}


@dataclass
class CpuGroups:
    """Process ids by group: the project's own, the sandbox, PostgreSQL, RabbitMQ."""

    groups: dict[str, set[int]] = field(default_factory=dict)
    # Private servers' main processes ("postgresql", "rabbitmq"): such a group is then that
    # server's process tree only, not every process of that name on the machine (other
    # sessions' servers and backends).
    servers: dict[str, int] = field(default_factory=dict)

    @classmethod
    def discover(
        cls,
        project: Iterable[int],
        sandbox: Iterable[int],
        roles: Mapping[str, Iterable[int]] | None = None,
        servers: Mapping[str, int] | None = None,
    ) -> CpuGroups:
        """``roles`` (name → pids) splits the project's share further, e.g. by service."""
        found = cls({"project": _with_children(project), "sandbox": _with_children(sandbox)})
        found.servers = dict(servers or {})
        found.refresh_named()
        for role, pids in (roles or {}).items():
            found.groups[f"role:{role}"] = _with_children(pids)
        return found

    def sample(self) -> dict[str, dict[int, float]]:
        """CPU seconds so far of every live process, by group and pid."""
        return {name: _cpu_seconds(pids) for name, pids in self.groups.items()}

    def include_load_generator(self) -> None:
        """Count this process too: it competes with what it measures for the same cores."""
        self.groups["load generator"] = {os.getpid()}

    def refresh_named(self) -> None:
        """Add server backends started since discovery (new connections)."""
        for group, names in (("postgresql", {"postgres"}), ("rabbitmq", RABBITMQ_NAMES)):
            root = self.servers.get(group)
            found = _named(names) if root is None else _with_children([root])
            self.groups[group] = self.groups.get(group, set()) | found


def _with_children(pids: Iterable[int]) -> set[int]:
    found: set[int] = set()
    for pid in pids:
        try:
            process = psutil.Process(pid)
            found.add(pid)
            found.update(child.pid for child in process.children(recursive=True))
        except psutil.Error:
            continue
    return found


def _named(names: set[str]) -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] in names}


def _cpu_seconds(pids: set[int]) -> dict[int, float]:
    seconds: dict[int, float] = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue  # exited: its time since the last sample is lost (noted in the report)
        seconds[pid] = times.user + times.system
    return seconds


def cpu_delta(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
) -> dict[str, float]:
    """CPU seconds between two samples by group; a process new since ``before`` counts whole."""
    return {
        name: sum(t - before.get(name, {}).get(pid, 0.0) for pid, t in pids.items())
        for name, pids in after.items()
    }


async def statements_run(conn: asyncpg.Pool) -> int | None:
    """How many SQL statements this database has executed so far (BEGIN and COMMIT included),
    from pg_stat_statements; None where the server does not load it (shared_preload_libraries).
    """
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        calls = await conn.fetchval(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    except asyncpg.PostgresError:
        return None
    return int(calls)


def per_approval(before: int | None, after: int | None, approvals: int) -> float:
    """A counter's growth per approval (NaN when it could not be read)."""
    if before is None or after is None or approvals == 0:
        return float("nan")
    return (after - before) / approvals


StatementTimes = dict[tuple[str, str], tuple[int, float]]


async def statement_times(conn: asyncpg.Pool) -> StatementTimes | None:
    """Calls and total execution time (ms) so far of each statement in this database, by login
    role and normalized text, from pg_stat_statements; None where the server does not load it."""
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        rows = await conn.fetch(
            "SELECT pg_get_userbyid(userid) AS who, query, sum(calls) AS calls,"
            " sum(total_exec_time) AS ms FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " GROUP BY 1, 2"
        )
    except asyncpg.PostgresError:
        return None
    return {(row["who"], row["query"]): (int(row["calls"]), float(row["ms"])) for row in rows}


def calls_by_user(times: StatementTimes | None) -> dict[str, int] | None:
    """Statements executed by each login role (each service has its own), from
    :func:`statement_times`."""
    if times is None:
        return None
    calls: dict[str, int] = {}
    for (who, _), (count, _) in times.items():
        calls[who] = calls.get(who, 0) + count
    return calls


def heaviest_statements(
    before: StatementTimes | None,
    after: StatementTimes | None,
    database: str,
    payments: int,
) -> list[dict[str, Any]]:
    """The service roles' statements run in between, the most execution time first, each with
    its calls and milliseconds per payment (the admin's, the bench's own, are left out)."""
    if before is None or after is None or payments == 0:
        return []
    prefix = f"{database}_"
    grown = []
    for (who, query), (calls, ms) in after.items():
        calls_before, ms_before = before.get((who, query), (0, 0.0))
        if who.startswith(prefix) and calls > calls_before:
            grown.append((ms - ms_before, calls - calls_before, who.removeprefix(prefix), query))
    grown.sort(reverse=True)
    return [
        {
            "role": role,
            "statement": " ".join(query.split())[:300],
            "calls_per_payment": calls / payments,
            "ms_per_payment": ms / payments,
        }
        for ms, calls, role, query in grown
    ]


def by_role_per_payment(
    before: dict[str, int] | None, after: dict[str, int] | None, database: str, payments: int
) -> dict[str, float]:
    """Growth per payment by service role (login roles are ``<database>_<role>``; the admin's
    own statements, the bench's polling among them, are left out)."""
    if before is None or after is None or payments == 0:
        return {}
    prefix = f"{database}_"
    return {
        who.removeprefix(prefix): (calls - before.get(who, 0)) / payments
        for who, calls in sorted(after.items())
        if who.startswith(prefix) and calls > before.get(who, 0)
    }


OUTBOX_SCHEMAS_SQL = (
    "SELECT table_schema FROM information_schema.tables"
    " WHERE table_name = 'outbox' ORDER BY table_schema"
)


async def messages_since(conn: asyncpg.Pool, since: datetime) -> dict[str, dict[str, int]]:
    """Events written (outbox rows, by ``schema: routing key``) and deliveries handled (inbox
    rows, by ``schema: consumer``) since ``since``."""
    published: dict[str, int] = {}
    handled: dict[str, int] = {}
    for schema in [r["table_schema"] for r in await conn.fetch(OUTBOX_SCHEMAS_SQL)]:
        table = '"' + schema.replace('"', '""') + '"'
        for row in await conn.fetch(
            f"SELECT routing_key AS k, count(*) AS n FROM {table}.outbox"
            " WHERE created_at >= $1 GROUP BY 1",
            since,
        ):
            published[f"{schema}: {row['k']}"] = int(row["n"])
        for row in await conn.fetch(
            f"SELECT consumer AS k, count(*) AS n FROM {table}.inbox"
            " WHERE processed_at >= $1 GROUP BY 1",
            since,
        ):
            handled[f"{schema}: {row['k']}"] = int(row["n"])
    return {"published": published, "handled": handled}
