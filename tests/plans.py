"""The plan PostgreSQL gives a statement as the pools run it (shared.db: generic plans), with
sequential scans priced out: a partial index the statement cannot prove it may use (its states
given as a parameter, or a list that drifted from the index's predicate) then shows as a Seq
Scan or another index instead of its name."""

from __future__ import annotations

from shared.db import Connection


async def generic_plan(
    conn: Connection,
    statement: str,
    types: tuple[str, ...] = (),
    args: tuple[str, ...] = (),
) -> str:
    """EXPLAIN of ``statement`` prepared with parameter ``types``, executed with ``args`` (SQL
    literals)."""
    declared = f"({', '.join(types)})" if types else ""
    given = f"({', '.join(args)})" if args else ""
    await conn.execute("SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off")
    try:
        await conn.execute(f"PREPARE probed{declared} AS {statement}")
        lines = await conn.fetch(f"EXPLAIN EXECUTE probed{given}")
    finally:
        await conn.execute("DEALLOCATE ALL; RESET plan_cache_mode; RESET enable_seqscan")
    return "\n".join(line[0] for line in lines)
