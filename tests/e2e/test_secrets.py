"""The PG secret key stays secret: with a key of its own (from the environment, or from a file)
and every process logging at DEBUG, payments that succeed, are tampered with, are declined by
the PG and are refunded leave the key in no log file, no HTTP response, no message on the
exchange and no row of the merchant's tables."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage

from deploy.stack import Stack
from tests.e2e.buyer import Buyer
from tests.e2e.conftest import running_stack

pytestmark = pytest.mark.e2e

MERCHANT_SCHEMAS = ("orders", "checkout", "approval")


@dataclass
class SecretStack:
    stack: Stack
    secret: str
    messages: list[str] = field(default_factory=list)

    @property
    def needles(self) -> dict[str, str]:
        """The key, and the key as it travels in the Basic authorization header."""
        basic = base64.b64encode(f"{self.secret}:".encode()).decode()
        return {"secret key": self.secret, "Basic credentials": basic}

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        self.messages.append(f"{message.headers}\n{message.body.decode(errors='replace')}")


@contextlib.contextmanager
def key_source(how: str, secret: str) -> Iterator[dict[str, str]]:
    """The approval's environment for the key: the value itself, or a file outside run_dir."""
    if how == "environment":
        yield {"TOSS_SECRET_KEY": secret, "TOSS_SECRET_KEY_FILE": ""}
        return
    with tempfile.TemporaryDirectory(prefix="toss-key-") as folder:
        key_file = Path(folder) / "toss-secret-key"
        key_file.write_text(secret + "\n")
        key_file.chmod(0o600)
        yield {"TOSS_SECRET_KEY": "", "TOSS_SECRET_KEY_FILE": str(key_file)}


@pytest.fixture(scope="module", params=["environment", "file"])
async def secret_stack(
    request: pytest.FixtureRequest, postgres_admin_dsn: str, amqp_url: str
) -> AsyncIterator[SecretStack]:
    secret = f"test_sk_{secrets.token_hex(16)}"
    with key_source(request.param, secret) as key_env:
        env = {"SANDBOX_SECRET_KEYS": secret, "LOG_LEVEL": "DEBUG", **key_env}
        async with running_stack(
            postgres_admin_dsn, amqp_url, "secret-stack", extra_env=env
        ) as running:
            yield SecretStack(running, secret)


@contextlib.asynccontextmanager
async def tapped(target: SecretStack) -> AsyncIterator[None]:
    """Every message published on the stack's exchange, into ``target.messages``."""
    config = target.stack.config
    connection = await aio_pika.connect(config.amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(config.events_exchange)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="#")
        await queue.consume(target.on_message, no_ack=True)
        yield
    finally:
        await connection.close()


def failed(order: dict[str, Any]) -> bool:
    return (order.get("payment") or {}).get("failure") is not None


async def drive_payments(buyer: Buyer, sandbox: httpx.AsyncClient) -> str:
    """Pages, API calls, a payment, a refund, tampering and declines; returns the paid order."""
    for path in ("/", "/storefront-config.js", "/app.js", "/api/products", "/api/me"):
        await buyer.gateway.get(path)
    paid, tampered, declined, invented = [await buyer.place_order() for _ in range(4)]

    result = await buyer.pay(paid)
    await buyer.gateway.get(result.headers["location"])
    await buyer.wait_for(paid["orderId"], lambda o: o["status"] == "PAID")
    await buyer.follow_redirect(await buyer.authenticate(tampered, amount=100))
    await buyer.gateway.get(
        "/payments/success",
        params={
            "paymentKey": f"tgen_{uuid.uuid4().hex}",
            "orderId": invented["orderId"],
            "amount": str(invented["amount"]),
            "paymentType": "NORMAL",
        },
    )
    await sandbox.put("/sandbox/faults", json={"errorRate": 1, "errorCode": "REJECT_CARD_PAYMENT"})
    try:
        await buyer.pay(declined)
        await buyer.wait_for(declined["orderId"], failed)
    finally:
        await sandbox.put("/sandbox/faults", json={"errorRate": 0})
    for order in (tampered, invented):
        await buyer.wait_for(order["orderId"], failed)

    await buyer.gateway.post(f"/api/orders/{paid['orderId']}/cancel", json={"reason": "changed"})
    await buyer.wait_for(paid["orderId"], lambda o: o["status"] == "REFUNDED")
    await bad_requests(buyer)
    return str(paid["orderId"])


async def bad_requests(buyer: Buyer) -> None:
    gateway = buyer.gateway
    await gateway.get("/api/me", headers={"Authorization": "Bearer not-a-token"})
    await gateway.post("/api/orders", content=b"{not json", headers={"Content-Type": "text/x"})
    await gateway.post("/api/orders", json={"items": [{"sku": "NOPE", "quantity": 1}]})
    await gateway.get("/api/orders/ord_does_not_exist")
    await gateway.get("/payments/success", params={"paymentKey": "x", "amount": "-1"})
    await gateway.get("/payments/fail", params={"code": "REJECT_CARD_COMPANY", "orderId": "o"})


async def merchant_rows(database_url: str) -> dict[str, str]:
    """Every row of every table of the merchant's schemas, as text, by table."""
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema = ANY($1::text[]) AND table_type = 'BASE TABLE'",
            list(MERCHANT_SCHEMAS),
        )
        return {
            f"{t['table_schema']}.{t['table_name']}": await conn.fetchval(
                f"SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM \"{t['table_schema']}\"."
                f'"{t["table_name"]}" t'
            )
            for t in tables
        }
    finally:
        await conn.close()


async def keys_the_pg_saw(database_url: str) -> set[str]:
    rows = await asyncpg.connect(database_url)
    try:
        digests = await rows.fetch("SELECT DISTINCT secret_digest FROM sandbox.idempotent_requests")
        return {row["secret_digest"] for row in digests}
    finally:
        await rows.close()


def leaks(needles: dict[str, str], haystacks: dict[str, str]) -> list[str]:
    return [
        f"{what} in {where}"
        for where, text in haystacks.items()
        for what, needle in needles.items()
        if needle in text
    ]


async def test_the_secret_key_appears_in_no_log_response_message_or_row(
    secret_stack: SecretStack,
) -> None:
    stack = secret_stack.stack
    responses: dict[str, str] = {}

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.multi_items())
        where = f"response {len(responses)} {response.request.method} {response.url}"
        responses[where] = f"{response.status_code}\n{headers}\n\n{response.text}"

    async with tapped(secret_stack), Buyer.for_stack(stack.config) as buyer:
        buyer.gateway.event_hooks = {"response": [keep]}
        buyer.sandbox.event_hooks = {"response": [keep]}
        paid_order = await drive_payments(buyer, buyer.sandbox)
    await asyncio.sleep(1.5)  # nginx flushes its access log every second

    logs = {
        str(path): path.read_text(errors="replace")
        for path in stack.config.run_dir.rglob("*")
        if path.is_file() and path.suffix in (".log", ".conf")
    }
    messages = {f"message {i}": body for i, body in enumerate(secret_stack.messages)}
    rows = await merchant_rows(stack.config.database_url)

    # The checks looked at something: the approval used this key, and everything was captured.
    digest = hashlib.sha256(secret_stack.secret.encode()).hexdigest()
    assert await keys_the_pg_saw(stack.config.database_url) == {digest}
    assert any("approval" in name for name in logs)
    assert any(paid_order in body for body in messages.values())
    assert any(paid_order in text for text in rows.values())
    assert len(responses) > 20
    assert leaks(secret_stack.needles, {**logs, **responses, **messages, **rows}) == []
