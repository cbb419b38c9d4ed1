"""4. Idempotency-Key on every POST, and concurrent confirms that approve once."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import httpx

from deploy.scratch import database_of
from tests.integration.sandbox.support import (
    api_client,
    authenticate,
    confirm,
    ledger,
    running_sandbox,
    sandbox_settings,
)


async def test_a_replay_answers_the_first_status_and_body_even_if_the_body_changed(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-idem-01", 15000)
    first = await confirm(client, key, "order-idem-01", 15000, idempotency_key="idem-01")

    replay = await confirm(client, key, "order-idem-01", 99999, idempotency_key="idem-01")

    assert replay.status_code == first.status_code == 200
    assert replay.content == first.content
    (entry,) = await ledger(client, "order-idem-01")
    assert (entry["approvals"], entry["confirmCalls"]) == (1, 1)


async def test_a_replayed_error_answers_the_first_error(client: httpx.AsyncClient) -> None:
    key = await authenticate(client, "order-idem-02", 15000)
    first = await confirm(client, key, "order-idem-02", 100, idempotency_key="idem-02")

    replay = await confirm(client, key, "order-idem-02", 15000, idempotency_key="idem-02")

    assert (first.status_code, replay.status_code) == (400, 400)
    assert replay.json() == first.json()


async def test_the_same_key_on_another_path_is_another_request(client: httpx.AsyncClient) -> None:
    key = await authenticate(client, "order-idem-03", 15000)
    await confirm(client, key, "order-idem-03", 15000, idempotency_key="shared-key")

    canceled = await client.post(
        f"/v1/payments/{key}/cancel",
        json={"cancelReason": "buyer asked"},
        headers={"Idempotency-Key": "shared-key"},
    )
    replayed = await client.post(
        f"/v1/payments/{key}/cancel",
        json={"cancelReason": "buyer asked", "cancelAmount": 100},
        headers={"Idempotency-Key": "shared-key"},
    )

    assert canceled.json()["status"] == "CANCELED"
    assert replayed.content == canceled.content


async def test_the_same_key_under_another_secret_key_is_another_request(
    database_url: str,
) -> None:
    other_secret = "test_sk_another0merchant0key0for0tests"
    settings = sandbox_settings(database_url, sandbox_secret_keys=other_secret)
    other_auth = "Basic " + base64.b64encode(f"{other_secret}:".encode()).decode()
    async with running_sandbox(settings) as url, api_client(url) as client:
        key = await authenticate(client, "order-idem-04", 15000)
        first = await confirm(client, key, "order-idem-04", 15000, idempotency_key="k")
        client.headers["Authorization"] = other_auth
        second = await confirm(client, key, "order-idem-04", 15000, idempotency_key="k")

    assert first.status_code == 200
    assert second.json()["code"] == "ALREADY_PROCESSED_PAYMENT"


async def test_a_key_over_300_characters_is_invalid(client: httpx.AsyncClient) -> None:
    key = await authenticate(client, "order-idem-05", 15000)

    response = await confirm(client, key, "order-idem-05", 15000, idempotency_key="k" * 301)
    accepted = await confirm(client, key, "order-idem-05", 15000, idempotency_key="k" * 300)

    assert (response.status_code, response.json()["code"]) == (400, "INVALID_IDEMPOTENCY_KEY")
    assert accepted.status_code == 200


async def test_the_same_key_while_the_first_is_running_gets_409(
    client: httpx.AsyncClient,
) -> None:
    await client.put("/sandbox/faults", json={"confirmLatencyMs": 600})
    key = await authenticate(client, "order-idem-06", 15000)

    first = asyncio.create_task(confirm(client, key, "order-idem-06", 15000, "idem-06"))
    await asyncio.sleep(0.2)
    second = await confirm(client, key, "order-idem-06", 15000, "idem-06")

    assert (second.status_code, second.json()["code"]) == (409, "IDEMPOTENT_REQUEST_PROCESSING")
    assert (await first).status_code == 200


async def test_a_confirm_cut_off_by_its_database_frees_its_key_once_the_database_is_back(
    database_url: str, postgres_admin_dsn: str
) -> None:
    async with running_sandbox(sandbox_settings(database_url)) as url, api_client(url) as client:
        key = await authenticate(client, "order-idem-09", 15000)
        await client.put("/sandbox/faults", json={"confirmLatencyMs": 3000})
        first = asyncio.create_task(confirm(client, key, "order-idem-09", 15000, "idem-09"))
        await slot_claimed(database_url, "idem-09")  # the request now waits out its latency
        async with database_shut(postgres_admin_dsn, database_url):
            cut_off = await first
            await asyncio.sleep(0.5)  # the sweeper's tries meet the shut database too

        again = await confirm_until_not_processing(client, key, "order-idem-09", "idem-09")

        assert cut_off.status_code >= 500
        assert again.status_code == 200
        (entry,) = await ledger(client, "order-idem-09")
        assert (entry["status"], entry["approvals"]) == ("DONE", 1)


async def slot_claimed(database_url: str, idempotency_key: str) -> None:
    """Until a request holds ``idempotency_key``'s slot (10 s at most)."""
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(1000):
            if await conn.fetchval(
                "SELECT true FROM sandbox.idempotent_requests WHERE idempotency_key = $1",
                idempotency_key,
            ):
                return
            await asyncio.sleep(0.01)
    finally:
        await conn.close()
    raise AssertionError(f"no request claimed {idempotency_key}")


@contextlib.asynccontextmanager
async def database_shut(admin_dsn: str, database_url: str) -> AsyncIterator[None]:
    """No connection to the database gets in, and those open are cut, until the block ends."""
    name = database_of(database_url)
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


async def confirm_until_not_processing(
    client: httpx.AsyncClient, payment_key: str, order_id: str, idempotency_key: str
) -> httpx.Response:
    """Confirm with the key until the answer is not 409 IDEMPOTENT_REQUEST_PROCESSING (or 10 s)."""
    for _ in range(100):
        answer = await confirm(client, payment_key, order_id, 15000, idempotency_key)
        if answer.status_code != 409:
            return answer
        await asyncio.sleep(0.1)
    return answer


async def test_simultaneous_confirms_with_the_same_key_approve_once(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-idem-07", 15000)

    answers = await asyncio.gather(
        *(confirm(client, key, "order-idem-07", 15000, "idem-07") for _ in range(8))
    )

    statuses = sorted(answer.status_code for answer in answers)
    assert statuses.count(200) >= 1
    assert set(statuses) <= {200, 409}
    (entry,) = await ledger(client, "order-idem-07")
    assert (entry["status"], entry["approvals"]) == ("DONE", 1)


async def test_simultaneous_confirms_with_different_keys_approve_once(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-idem-08", 15000)

    answers = await asyncio.gather(
        *(confirm(client, key, "order-idem-08", 15000, f"idem-08-{n}") for n in range(8))
    )

    codes = sorted(a.json().get("code", "OK") if a.status_code != 200 else "OK" for a in answers)
    assert codes == ["ALREADY_PROCESSED_PAYMENT"] * 7 + ["OK"]
    (entry,) = await ledger(client, "order-idem-08")
    assert (entry["approvals"], entry["confirmCalls"]) == (1, 8)


async def test_an_unknown_outcome_error_is_not_replayed_so_a_retry_runs_again(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-idem-09", 15000)
    await client.put("/sandbox/faults", json={"errorRate": 1.0, "errorCode": "PROVIDER_ERROR"})
    failed = await confirm(client, key, "order-idem-09", 15000, "idem-09")
    await client.put("/sandbox/faults", json={"errorRate": 0.0})

    retried = await confirm(client, key, "order-idem-09", 15000, "idem-09")

    assert failed.json()["code"] == "PROVIDER_ERROR"
    assert retried.status_code == 200


async def test_idempotent_answers_are_kept_15_days_in_the_database(
    client: httpx.AsyncClient, sandbox_dsn: str
) -> None:
    key = await authenticate(client, "order-idem-10", 15000)
    await confirm(client, key, "order-idem-10", 15000, "idem-10")

    conn = await asyncpg.connect(sandbox_dsn)
    try:
        kept_for = await conn.fetchval(
            "SELECT expires_at - created_at FROM sandbox.idempotent_requests"
            " WHERE idempotency_key = 'idem-10'"
        )
    finally:
        await conn.close()

    assert kept_for == timedelta(days=15)
