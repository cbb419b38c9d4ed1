"""bench.micro_batching runs the order's batched path in a database of its own and removes it."""

from __future__ import annotations

import asyncpg
import pytest

from bench import micro_batching


async def test_the_batching_micro_benchmark_prints_a_row_per_size_and_leaves_no_database(
    postgres_admin_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--admin", postgres_admin_dsn, "--sizes", "1,4", "--events", "8", "--rounds", "1"]

    await micro_batching.main(micro_batching.parse(args))

    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [row[:2] for row in rows] == [["1", "1"], ["1", "4"]]
    assert all(float(value) > 0 for row in rows for value in row[2:])
    conn = await asyncpg.connect(postgres_admin_dsn)
    try:
        left = await conn.fetchval(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'micro_batching_%'"
        )
    finally:
        await conn.close()
    assert left == 0
