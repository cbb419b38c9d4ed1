"""8. Fault knobs: latency, error rate, dropped responses, clock scale; by HTTP or environment."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.sandbox.support import (
    NO_FAULTS,
    api_client,
    authenticate,
    confirm,
    ledger,
    running_sandbox,
    sandbox_settings,
)


async def test_by_default_there_are_no_faults(client: httpx.AsyncClient) -> None:
    response = await client.get("/sandbox/faults")

    assert response.json() == NO_FAULTS


async def test_faults_set_by_put_are_answered_by_get(client: httpx.AsyncClient) -> None:
    put = await client.put("/sandbox/faults", json={"errorRate": 0.25, "clockScale": 60})

    got = await client.get("/sandbox/faults")

    confirm_knobs = {**NO_FAULTS["confirm"], "errorRate": 0.25}
    assert put.json() == got.json() == {**NO_FAULTS, "confirm": confirm_knobs, "clockScale": 60.0}


async def test_confirm_latency_delays_the_answer(client: httpx.AsyncClient) -> None:
    key = await authenticate(client, "order-fault-1")
    await client.put("/sandbox/faults", json={"confirmLatencyMs": 400})

    started = time.monotonic()
    response = await confirm(client, key, "order-fault-1", 15000)

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.4


async def test_the_error_rate_answers_the_chosen_code_and_does_not_approve(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-fault-2")
    await client.put("/sandbox/faults", json={"errorRate": 1.0, "errorCode": "PROVIDER_ERROR"})

    response = await confirm(client, key, "order-fault-2", 15000)

    assert (response.status_code, response.json()["code"]) == (400, "PROVIDER_ERROR")
    (entry,) = await ledger(client, "order-fault-2")
    assert (entry["status"], entry["approvals"], entry["confirmCalls"]) == ("IN_PROGRESS", 0, 1)


async def test_a_dropped_response_leaves_the_caller_without_an_answer_but_the_payment_done(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-fault-3")
    await client.put("/sandbox/faults", json={"dropResponseRate": 1.0})

    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await confirm(client, key, "order-fault-3", 15000, "drop-key")

    (entry,) = await ledger(client, "order-fault-3")
    assert (entry["status"], entry["approvals"]) == ("DONE", 1)
    by_order = await client.get("/v1/payments/orders/order-fault-3")
    assert by_order.json()["status"] == "DONE"


async def test_a_retry_with_the_same_key_after_a_dropped_response_gets_the_approval(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-fault-4")
    await client.put("/sandbox/faults", json={"dropResponseRate": 1.0})
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await confirm(client, key, "order-fault-4", 15000, "drop-key-4")
    await client.put("/sandbox/faults", json={"dropResponseRate": 0.0})

    retried = await confirm(client, key, "order-fault-4", 15000, "drop-key-4")

    assert (retried.status_code, retried.json()["status"]) == (200, "DONE")


async def test_invalid_faults_are_refused_with_400(client: httpx.AsyncClient) -> None:
    for body in (
        {"errorRate": 2},
        {"clockScale": 0},
        {"confirmLatencyMs": -1},
        {"errorCode": "NOT_A_CODE"},
        {"surprise": 1},
        {"errorRate": "high"},
        [1, 2],
    ):
        response = await client.put("/sandbox/faults", json=body)
        assert response.status_code == 400, body
        assert response.json()["code"] == "INVALID_REQUEST"
    assert (await client.get("/sandbox/faults")).json() == NO_FAULTS


async def test_faults_can_be_set_by_environment_at_start(database_url: str) -> None:
    settings = sandbox_settings(
        database_url,
        sandbox_confirm_latency_ms=5,
        sandbox_error_rate=0.5,
        sandbox_error_code="CARD_PROCESSING_ERROR",
        sandbox_clock_scale=10.0,
        sandbox_drop_response_rate=0.1,
    )
    async with running_sandbox(settings) as url, api_client(url) as client:
        faults = (await client.get("/sandbox/faults")).json()

    assert faults["clockScale"] == 10.0
    assert faults["confirm"] == {
        **NO_FAULTS["confirm"],
        "latencyMs": 5,
        "dropResponseRate": 0.1,
        "errorRate": 0.5,
        "errorCode": "CARD_PROCESSING_ERROR",
    }


async def test_the_legacy_flat_names_set_the_confirm_knobs(client: httpx.AsyncClient) -> None:
    await client.put(
        "/sandbox/faults",
        json={"confirmLatencyMs": 7, "dropResponseRate": 0.2, "errorRate": 0.1,
              "errorCode": "FDS_ERROR"},
    )  # fmt: skip

    got = (await client.get("/sandbox/faults")).json()

    assert got["confirm"] == {
        **NO_FAULTS["confirm"],
        "latencyMs": 7,
        "dropResponseRate": 0.2,
        "errorRate": 0.1,
        "errorCode": "FDS_ERROR",
    }


async def test_a_nested_put_merges_with_what_is_set(client: httpx.AsyncClient) -> None:
    await client.put("/sandbox/faults", json={"cancel": {"errorRate": 0.5}})
    await client.put("/sandbox/faults", json={"cancel": {"latencyMs": 10}, "replayErrors": False})

    got = (await client.get("/sandbox/faults")).json()

    assert got == {
        **NO_FAULTS,
        "replayErrors": False,
        "cancel": {**NO_FAULTS["cancel"], "errorRate": 0.5, "latencyMs": 10},
    }


async def test_delete_resets_every_knob(client: httpx.AsyncClient) -> None:
    await client.put(
        "/sandbox/faults",
        json={"clockScale": 5, "forgetIdempotencyKeys": True, "webhooks": {"reorder": True},
              "lookupByOrder": {"errorRate": 1.0}},
    )  # fmt: skip

    deleted = await client.delete("/sandbox/faults")
    got = await client.get("/sandbox/faults")

    assert deleted.json() == got.json() == NO_FAULTS


async def test_a_body_with_one_bad_knob_changes_nothing(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/sandbox/faults",
        json={"confirm": {"errorRate": 0.5}, "cancel": {"errorCode": "REJECT_CARD_COMPANY"}},
    )

    assert (response.status_code, response.json()["code"]) == (400, "INVALID_REQUEST")
    assert "cancel.errorCode" in response.json()["message"]
    assert (await client.get("/sandbox/faults")).json() == NO_FAULTS


async def test_a_merchant_configuration_error_at_confirm_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    key = await authenticate(client, "order-fault-5")
    injected = {"errorRate": 1.0, "errorCode": "INVALID_API_KEY"}
    await client.put("/sandbox/faults", json={"confirm": injected})

    response = await confirm(client, key, "order-fault-5", 15000)

    assert (response.status_code, response.json()["code"]) == (400, "INVALID_API_KEY")
    (entry,) = await ledger(client, "order-fault-5")
    assert (entry["status"], entry["failure"]) == ("IN_PROGRESS", None)
