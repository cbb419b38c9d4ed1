"""The operator console on the running stack, through the gateway: it asks for the operator's
credentials, and a dead letter replayed from it goes back to its queue and is audited."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aio_pika
import asyncpg
import httpx
import pytest

from deploy.stack import Stack
from shared import messaging
from shared.events import PaymentApproved
from shared.topology import ORDER_PAYMENT_RESULTS
from tests.integration.shared.helpers import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
async def console(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    url = f"http://127.0.0.1:{stack.config.gateway_port}"
    async with httpx.AsyncClient(base_url=url, timeout=10, headers={"Origin": url}) as client:
        yield client


async def test_the_console_through_the_gateway_needs_the_operators_credentials(
    stack: Stack, console: httpx.AsyncClient
) -> None:
    user, password = stack.config.operator

    assert (await console.get("/ops/")).status_code == 401
    assert (await console.get("/ops/", auth=(user, password + "x"))).status_code == 401
    page = await console.get("/ops/", auth=(user, password))
    assert page.status_code == 200
    assert "operator console" in page.text


async def test_a_replay_from_the_console_goes_back_to_its_queue_and_is_audited(
    stack: Stack, console: httpx.AsyncClient
) -> None:
    message_id = str(uuid.uuid4())
    await _poison(stack, message_id)
    user, password = stack.config.operator

    async def listed() -> bool:
        return message_id in (await console.get("/ops/", auth=(user, password))).text

    await eventually(listed, within=20)

    response = await console.post(
        "/ops/dead-letters/replay",
        auth=(user, password),
        data={
            "csrf": console.cookies["ops_csrf"],
            "queue": ORDER_PAYMENT_RESULTS.name,
            "message_id": message_id,
        },
    )

    assert response.status_code == 200, response.text
    assert "sent back to its queue" in response.text
    audited = await _audit(stack, message_id)
    assert audited is not None
    assert (audited["operator"], audited["action"], audited["result"]) == (
        user,
        "dead-letter.replay",
        "done",
    )


async def _poison(stack: Stack, message_id: str) -> None:
    """A message order cannot decode: its consumer dead-letters it at once, with the reason."""
    connection = await aio_pika.connect(stack.config.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(stack.config.events_exchange)
        message = aio_pika.Message(b"not an event", message_id=message_id)
        await messaging.publish_confirmed(exchange, message, PaymentApproved.routing_key)


async def _audit(stack: Stack, message_id: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(stack.config.database_url)
    try:
        return await conn.fetchrow(
            "SELECT operator, action, result FROM approval.operator_actions"
            " WHERE target LIKE '%/' || $1",
            message_id,
        )
    finally:
        await conn.close()
