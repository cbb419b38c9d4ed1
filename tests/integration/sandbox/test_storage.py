"""10. State lives in PostgreSQL: it survives a restart and two sandbox processes agree."""

from __future__ import annotations

import asyncio

from tests.integration.sandbox.support import (
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
    assert faults_of_second["errorCode"] == "FDS_ERROR"
