"""10. State lives in PostgreSQL: it survives a restart and two sandbox processes agree."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from services.sandbox import domain, repository
from services.sandbox.domain import Status
from services.sandbox.service import utcnow
from shared import db
from tests.integration.sandbox.support import (
    Receiver,
    api_client,
    authenticate,
    confirm,
    ledger,
    running_sandbox,
    sandbox_settings,
)


async def test_payments_survive_a_restart(database_url: str) -> None:
    settings = sandbox_settings(database_url)
    async with running_sandbox(settings) as url, api_client(url) as client:
        key = await authenticate(client, "order-store-1")
        await confirm(client, key, "order-store-1", 15000, "store-key")

    async with running_sandbox(settings) as url, api_client(url) as client:
        payment = (await client.get(f"/v1/payments/{key}")).json()
        replay = await confirm(client, key, "order-store-1", 15000, "store-key")

    assert payment["status"] == "DONE"
    assert replay.status_code == 200


async def test_two_sandboxes_on_one_database_agree_and_approve_once(database_url: str) -> None:
    settings = sandbox_settings(database_url)
    async with (
        running_sandbox(settings) as first_url,
        running_sandbox(settings) as second_url,
        api_client(first_url) as first,
        api_client(second_url) as second,
    ):
        key = await authenticate(first, "order-store-2")
        await first.put("/sandbox/faults", json={"errorCode": "FDS_ERROR"})
        answers = await asyncio.gather(
            *(
                confirm(c, key, "order-store-2", 15000, f"k{n}")
                for n, c in enumerate([first, second] * 4)
            )
        )
        seen_by_second = (await second.get(f"/v1/payments/{key}")).json()
        entries = await ledger(second, "order-store-2")
        faults_of_second = (await second.get("/sandbox/faults")).json()

    assert sorted(a.status_code for a in answers) == [200] + [400] * 7
    assert seen_by_second["status"] == "DONE"
    assert (entries[0]["approvals"], entries[0]["confirmCalls"]) == (1, 8)
    assert faults_of_second["confirm"]["errorCode"] == "FDS_ERROR"


async def test_a_confirm_writes_nothing_over_a_change_made_since_it_read(
    client: httpx.AsyncClient, sandbox_dsn: str
) -> None:
    key = await authenticate(client, "order-store-3")
    conn = await db.connect(sandbox_dsn, "sandbox")
    try:
        read = await repository.read_payment(conn, key)
        assert read is not None
        await conn.execute(
            "UPDATE payments SET order_name = order_name WHERE payment_key = $1", key
        )
        domain.confirm(read.payment, domain.ConfirmRequest(key, "order-store-3", 15000), utcnow())
        saved = await repository.save_confirm(conn, read, None, None)
        fresh = await repository.read_payment(conn, key)
    finally:
        await conn.close()

    assert not saved
    assert fresh is not None
    assert (fresh.payment.status, fresh.payment.approvals) == (Status.IN_PROGRESS, 0)
    assert fresh.version != read.version


async def test_a_confirm_whose_database_connection_dies_frees_its_idempotency_key(
    database_url: str,
) -> None:
    async with running_sandbox(sandbox_settings(database_url)) as url, api_client(url) as client:
        key = await authenticate(client, "order-store-4")
        locker = await asyncpg.connect(database_url)
        try:
            async with locker.transaction():
                await locker.execute(
                    "SELECT FROM sandbox.payments WHERE payment_key = $1 FOR UPDATE", key
                )
                first = asyncio.create_task(confirm(client, key, "order-store-4", 15000, "k4"))
                await _terminate_backend_waiting_for_a_lock(locker)
            answered = await first
        finally:
            await locker.close()
        retried = await confirm(client, key, "order-store-4", 15000, "k4")
        (entry,) = await ledger(client, "order-store-4")

    assert answered.status_code == 500
    assert retried.status_code == 200
    assert (entry["approvals"], entry["confirmCalls"]) == (1, 1)


async def _terminate_backend_waiting_for_a_lock(conn: asyncpg.Connection) -> None:
    """Terminate the sandbox's backend that waits for ``conn``'s row lock (once it does)."""
    for _ in range(200):
        if await conn.fetchval(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ):
            return
        await asyncio.sleep(0.025)
    raise AssertionError("no confirm waited for the row lock")


async def test_concurrent_confirms_on_a_small_pool_all_answer(
    database_url: str, receiver: Receiver
) -> None:
    # Every confirm holds a connection while it decides; nothing it does then may wait for
    # another connection (reading the knobs did, once, and all of them waited forever).
    settings = sandbox_settings(
        database_url, db_pool_max=2, sandbox_faults_cache_s=0.01, sandbox_webhook_url=receiver.url
    )
    async with running_sandbox(settings) as url, api_client(url) as client:
        keys = [await authenticate(client, f"order-store-5{n:02d}") for n in range(30)]
        async with asyncio.timeout(20):
            answers = await asyncio.gather(
                *(
                    confirm(client, key, f"order-store-5{n:02d}", 15000)
                    for n, key in enumerate(keys)
                )
            )

    assert {answer.status_code for answer in answers} == {200}
