"""``python -m shared.schema wait ROLE``: wait until ROLE's schema holds every migration this
code ships, then exit 0 (1 after ``--timeout`` seconds, 600 by default).

Where a migration job applies the migrations (``python -m services.<role> migrate``) and the
roles start with ``MIGRATE_ON_START=false`` (deploy/k8s), each role's pods wait with this first,
so that no process runs against a schema older than its code, whatever order things start in.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import time
from pathlib import Path

import asyncpg

from shared import db

SERVICES = Path(__file__).resolve().parent.parent / "services"
POLL_SECONDS = 2.0


async def missing(role: str) -> list[str]:
    settings = importlib.import_module(f"services.{role}.config").Settings()
    schema: str = settings.db_schema
    try:
        return await db.pending(settings.database_url, schema, SERVICES / role / "migrations")
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return [f"(the database does not answer: {type(exc).__name__})"]


async def wait(role: str, patience: float) -> int:
    deadline = time.monotonic() + patience
    while left := await missing(role):
        if time.monotonic() > deadline:
            print(f"{role}: still missing after {patience:.0f} s: {left}", file=sys.stderr)
            return 1
        print(f"{role}: waiting for {left}", file=sys.stderr, flush=True)
        await asyncio.sleep(POLL_SECONDS)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.schema")
    parser.add_argument("command", choices=["wait"])
    parser.add_argument("role", choices=sorted(p.name for p in SERVICES.glob("*/migrations")))
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    return asyncio.run(wait(args.role, args.timeout))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
