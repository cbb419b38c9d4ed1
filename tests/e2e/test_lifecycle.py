"""Every role, sent SIGTERM with work in flight, finishes that work, publishes its outbox and
exits 0 within its grace (``SHUTDOWN_GRACE_SECONDS``); no process of it is left.

Work is held in flight by a lock the test takes in the role's schema (HTTP roles: the request
waits on it) or by a slow PG (the approval worker: a confirm under way). The lock is released
only once the role has begun to stop (its listener refuses connections), so the request really
is finished by the drain, not before the signal.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest

from deploy.scratch import Broker
from shared.events import (
    OrderPlaced,
    PaymentApproved,
    PaymentAuthenticated,
    utcnow,
)
from shared.topology import APPROVAL_ORDER_INTENTS, APPROVAL_PAYMENTS
from tests import leftovers
from tests.e2e.lifecycle import (
    Tap,
    environment,
    holding,
    queued,
    role,
    tapped,
    unpublished,
    until,
    waiting_on_a_lock,
)
from tests.integration.sandbox.support import authenticate

pytestmark = pytest.mark.e2e

GRACE = 10.0
AUTH = {"Authorization": "Bearer demo-token"}


def grace_env(database_url: str, broker: Broker, directory: Path) -> dict[str, str]:
    return environment(database_url, broker, directory, SHUTDOWN_GRACE_SECONDS=str(GRACE))


async def test_order_sent_sigterm_mid_request_answers_it_publishes_the_order_and_exits_0(
    database_url: str, broker: Broker, tmp_path: Path
) -> None:
    async with tapped(broker) as tap:
        with role("order", grace_env(database_url, broker, tmp_path), tmp_path) as order:
            await order.ready()
            async with (
                httpx.AsyncClient(base_url=order.url, headers=AUTH, timeout=30) as client,
                holding(database_url, "SELECT FROM orders.customers FOR UPDATE") as lock,
            ):
                body = {"items": [{"sku": "COFFEE-BEANS", "quantity": 1}]}
                placing = asyncio.create_task(client.post("/api/orders", json=body))
                await waiting_on_a_lock(database_url, "order")
                signalled = order.sigterm()
                await order.stopped_listening()
                await lock.release()
                placed = await placing
            status = await order.exit_status(GRACE)
            took = time.monotonic() - signalled
        announced = await tap.next(OrderPlaced)

    assert (status, placed.status_code) == (0, 201), order.log
    assert took < GRACE
    assert isinstance(announced, OrderPlaced)
    assert announced.order_id == placed.json()["orderId"]
    assert await unpublished(database_url, "orders") == 0
    leftovers.wait_until_none(tmp_path, order.tag)


async def test_checkout_sent_sigterm_mid_redirect_records_it_announces_it_and_exits_0(
    database_url: str, broker: Broker, tmp_path: Path
) -> None:
    key, order_id = f"tpk_{uuid.uuid4().hex}", f"order-{uuid.uuid4().hex[:12]}"
    query = {"paymentKey": key, "orderId": order_id, "amount": "15000", "paymentType": "NORMAL"}
    async with tapped(broker) as tap:
        with role("checkout", grace_env(database_url, broker, tmp_path), tmp_path) as checkout:
            await checkout.ready()
            await _placed_at_checkout(database_url, tap, order_id)
            async with (
                httpx.AsyncClient(base_url=checkout.url, timeout=30) as client,
                holding(
                    database_url, "LOCK TABLE checkout.success_redirects IN EXCLUSIVE MODE"
                ) as lock,
            ):
                redirect = asyncio.create_task(client.get("/payments/success", params=query))
                await waiting_on_a_lock(database_url, "checkout")
                signalled = checkout.sigterm()
                await checkout.stopped_listening()
                await lock.release()
                answered = await redirect
            status = await checkout.exit_status(GRACE)
            took = time.monotonic() - signalled
        announced = await tap.next(PaymentAuthenticated)

    assert (status, answered.status_code) == (0, 303), checkout.log
    assert took < GRACE
    assert isinstance(announced, PaymentAuthenticated)
    assert (announced.payment_key, announced.order_id) == (key, order_id)
    assert await unpublished(database_url, "checkout") == 0
    leftovers.wait_until_none(tmp_path, checkout.tag)


async def test_sandbox_sent_sigterm_mid_confirm_answers_it_and_exits_0(
    database_url: str, broker: Broker, tmp_path: Path
) -> None:
    idempotency_key = uuid.uuid4().hex
    env = grace_env(database_url, broker, tmp_path) | {"SANDBOX_CONFIRM_LATENCY_MS": "2000"}
    with role("sandbox", env, tmp_path) as sandbox:
        await sandbox.ready()
        async with httpx.AsyncClient(base_url=sandbox.url, timeout=30) as client:
            payment_key = await authenticate(client, "order-sigterm-1")
            body = {"paymentKey": payment_key, "orderId": "order-sigterm-1", "amount": 15000}
            headers = {"Idempotency-Key": idempotency_key}
            confirming = asyncio.create_task(
                client.post("/v1/payments/confirm", json=body, headers=headers, auth=_sandbox_key())
            )
            await _idempotency_slot_taken(database_url, idempotency_key)
            signalled = sandbox.sigterm()
            confirmed = await confirming
        status = await sandbox.exit_status(GRACE)
        took = time.monotonic() - signalled

    assert (status, confirmed.status_code) == (0, 200), sandbox.log
    assert confirmed.json()["status"] == "DONE"
    assert took < GRACE
    leftovers.wait_until_none(tmp_path, sandbox.tag)


async def test_approval_sent_sigterm_mid_confirm_settles_acks_announces_and_exits_0(
    database_url: str, broker: Broker, tmp_path: Path
) -> None:
    env = grace_env(database_url, broker, tmp_path)
    slow_pg = env | {"SANDBOX_CONFIRM_LATENCY_MS": "2000", "SHUTDOWN_GRACE_SECONDS": "2"}
    async with tapped(broker) as tap:
        with role("sandbox", slow_pg, tmp_path) as sandbox:
            await sandbox.ready()
            worker_env = env | {"TOSS_API_BASE": sandbox.url}
            with role("approval", worker_env, tmp_path) as approval:
                await approval.ready()
                order, authenticated = await _authenticated_order(sandbox.url)
                await tap.publish(order, authenticated)
                await _attempt_in_state(database_url, authenticated.payment_key, "CONFIRMING")
                signalled = approval.sigterm()
                status = await approval.exit_status(GRACE)
                took = time.monotonic() - signalled
            sandbox.sigterm()
            sandbox_status = await sandbox.exit_status(GRACE)
        approved = await tap.next(PaymentApproved)

    assert (status, sandbox_status) == (0, 0), approval.log
    assert took < GRACE
    assert isinstance(approved, PaymentApproved)
    assert approved.payment_key == authenticated.payment_key
    assert await _attempt_state(database_url, authenticated.payment_key) == "APPROVED"
    assert await queued(broker, APPROVAL_PAYMENTS) == 0
    assert await queued(broker, APPROVAL_ORDER_INTENTS) == 0
    assert await unpublished(database_url, "approval") == 0
    leftovers.wait_until_none(tmp_path, approval.tag)
    leftovers.wait_until_none(tmp_path, sandbox.tag)


async def test_approval_stopped_by_ctrl_c_when_idle_exits_0_and_leaves_nothing(
    database_url: str, broker: Broker, tmp_path: Path
) -> None:
    env = grace_env(database_url, broker, tmp_path) | {"TOSS_API_BASE": "http://127.0.0.1:9"}
    with role("approval", env, tmp_path) as approval:
        await approval.ready()
        approval.process.send_signal(2)  # SIGINT, as a terminal's Ctrl-C
        status = await approval.exit_status(GRACE)

    assert status == 0, approval.log
    leftovers.wait_until_none(tmp_path, approval.tag)


async def test_a_role_whose_database_does_not_answer_fails_to_start_and_leaves_nothing(
    broker: Broker, tmp_path: Path
) -> None:
    nowhere = "postgresql://postgres@127.0.0.1:9/payments"
    with role("order", grace_env(nowhere, broker, tmp_path), tmp_path) as order:
        status = await order.exit_status(60)

    assert status != 0
    leftovers.wait_until_none(tmp_path, order.tag)


async def _placed_at_checkout(database_url: str, tap: Tap, order_id: str) -> None:
    """Its OrderPlaced reached checkout's projection: the redirect is announced, not held."""
    await tap.publish(
        OrderPlaced(
            correlation_id=order_id,
            order_id=order_id,
            customer_key="cust_Zx81-aa",
            order_name="Lifecycle test order",
            amount=15000,
            expires_at=utcnow() + timedelta(minutes=30),
        )
    )

    async def projected() -> bool:
        conn = await asyncpg.connect(database_url)
        try:
            return bool(
                await conn.fetchval(
                    "SELECT true FROM checkout.placed_orders WHERE order_id = $1", order_id
                )
            )
        finally:
            await conn.close()

    await until(projected, "OrderPlaced in checkout's projection")


def _sandbox_key() -> tuple[str, str]:
    from services.sandbox.config import PUBLIC_TEST_SECRET_KEY

    return (PUBLIC_TEST_SECRET_KEY, "")


async def _authenticated_order(sandbox_url: str) -> tuple[OrderPlaced, PaymentAuthenticated]:
    order_id = f"order-{uuid.uuid4().hex[:12]}"
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=30) as client:
        payment_key = await authenticate(client, order_id, 15000)
    order = OrderPlaced(
        correlation_id=order_id,
        order_id=order_id,
        customer_key="cust_Zx81-aa",
        order_name="Sandbox test order",
        amount=15000,
        expires_at=utcnow() + timedelta(minutes=30),
    )
    authenticated = PaymentAuthenticated(
        correlation_id=order_id,
        order_id=order_id,
        payment_key=payment_key,
        amount=15000,
        payment_type="NORMAL",
        received_at=utcnow(),
    )
    return order, authenticated


async def _attempt_state(database_url: str, payment_key: str) -> str | None:
    conn = await asyncpg.connect(database_url)
    try:
        state: str | None = await conn.fetchval(
            "SELECT state FROM approval.payment_attempts WHERE payment_key = $1", payment_key
        )
        return state
    finally:
        await conn.close()


async def _attempt_in_state(database_url: str, payment_key: str, state: str) -> None:
    async def reached() -> bool:
        return await _attempt_state(database_url, payment_key) == state

    await until(reached, f"attempt {payment_key} {state}")


async def _idempotency_slot_taken(database_url: str, key: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:

        async def taken() -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) FROM sandbox.idempotent_requests WHERE idempotency_key = $1",
                    key,
                )
            )

        await until(taken, "the confirm under way at the sandbox")
    finally:
        await conn.close()
