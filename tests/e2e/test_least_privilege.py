"""On the running stack: each process holds only its own credentials (the PG secret key only
approval), each role is connected as its own PostgreSQL role, named after it and no superuser,
and neither the gateway's access log nor any process's log holds a paymentKey."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from deploy.stack import Stack
from tests.e2e.buyer import Buyer

pytestmark = pytest.mark.e2e

ROLES = ("sandbox", "order", "checkout", "approval")
# The operator console works on approval's tables as approval's database role (services/ops).
DATABASE_ROLES = {**{role: role for role in ROLES}, "ops": "approval"}


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {name.decode(): value.decode(errors="replace") for name, value in pairs}


def programs(stack: Stack) -> dict[str, dict[str, str]]:
    """Each running program's environment, by program name (approval-0, …)."""
    return {p["name"]: environ_of(p["pid"]) for p in stack.processes() if p["pid"]}


def test_only_approval_holds_the_pg_secret_key_and_nobody_the_admins_urls(stack: Stack) -> None:
    seen = programs(stack)

    assert {name for name, env in seen.items() if "TOSS_SECRET_KEY" in env} <= {
        name for name in seen if name.startswith("approval")
    }
    for name, env in seen.items():
        assert "DATABASE_URL" not in env, name
        assert "AMQP_URL" not in env, name
        own = name.split("-")[0].upper()
        foreign = {k for k in env if k.endswith(("_DATABASE_URL", "_AMQP_URL"))}
        assert foreign <= {f"{own}_DATABASE_URL", f"{own}_AMQP_URL"}, (name, foreign)


async def test_each_role_is_connected_as_its_own_role_named_after_it(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.config.database_url)
    try:
        rows = await conn.fetch(
            "SELECT DISTINCT a.application_name, a.usename, r.rolsuper FROM pg_stat_activity a"
            " JOIN pg_roles r ON r.rolname = a.usename"
            " WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    database = stack.config.database_url.rsplit("/", 1)[1]

    connected = {row["application_name"]: row["usename"] for row in rows}
    assert set(connected) == set(DATABASE_ROLES), rows
    assert all(connected[app] == f"{database}_{role}" for app, role in DATABASE_ROLES.items()), (
        connected
    )
    assert not any(row["rolsuper"] for row in rows)


async def test_no_log_holds_a_payment_key(stack: Stack, buyer: Buyer) -> None:
    order = await buyer.place_order()
    location = await buyer.authenticate(order)
    await buyer.follow_redirect(location)
    paid = await buyer.wait_for(order["orderId"], lambda o: o["status"] == "PAID")
    payment_key = paid["payment"]["paymentKey"]
    await asyncio.sleep(1.5)  # nginx flushes its access log every second

    run_dir = stack.config.run_dir
    paths = [run_dir / "nginx" / "access.log", *sorted((run_dir / "logs").glob("*.log"))]
    logs = {path.name: path.read_text(errors="replace") for path in paths}

    assert "/payments/success" in logs["access.log"]
    assert [name for name, text in logs.items() if payment_key in text] == []
