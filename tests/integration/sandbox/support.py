"""Running the sandbox (and small helper apps) in-process under a real uvicorn server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import httpx
import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from services.sandbox.bootstrap import create_app, migrate
from services.sandbox.config import PUBLIC_TEST_CLIENT_KEY, PUBLIC_TEST_SECRET_KEY, Settings

_QUIET = {"latencyMs": 0, "errorRate": 0.0, "dropResponseRate": 0.0}
_NOT_LATE = {"lateCompletionRate": 0.0, "lateCompletionSeconds": 30.0}
_LOOKUP_ERROR = "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING"
NO_FAULTS: dict[str, Any] = {
    "clockScale": 1.0,
    "replayErrors": True,
    "forgetIdempotencyKeys": False,
    "confirm": {**_QUIET, "errorCode": "PROVIDER_ERROR", **_NOT_LATE},
    "cancel": {**_QUIET, "errorCode": "PROVIDER_ERROR", **_NOT_LATE},
    "lookupByKey": {**_QUIET, "errorCode": _LOOKUP_ERROR},
    "lookupByOrder": {**_QUIET, "errorCode": _LOOKUP_ERROR},
    "webhooks": {"dropRate": 0.0, "delayMs": 0, "duplicateRate": 0.0, "reorder": False},
}
AUTH = "Basic " + base64.b64encode(f"{PUBLIC_TEST_SECRET_KEY}:".encode()).decode()


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """``app`` served by uvicorn (httptools, as in production) on a free port; yields its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, http="httptools", lifespan="on", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped before starting")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def sandbox_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "db_pool_min": 1,
        "db_pool_max": 8,
        "sandbox_sweep_interval_s": 0.1,
        "sandbox_webhook_poll_s": 0.1,
        **overrides,
    }
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_sandbox(settings: Settings) -> AsyncIterator[str]:
    await migrate(settings)
    async with serving(create_app(settings)) as url:
        yield url


def api_client(base_url: str, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": AUTH, **headers}, timeout=10
    )


def window_fields(order_id: str, amount: int = 15000, **extra: str) -> dict[str, str]:
    return {
        "clientKey": PUBLIC_TEST_CLIENT_KEY,
        "customerKey": "cust_Zx81-aa",
        "orderId": order_id,
        "orderName": "Sandbox test order",
        "amount": str(amount),
        "successUrl": "http://merchant.test/payments/success",
        "failUrl": "http://merchant.test/payments/fail",
        **extra,
    }


async def authenticate(client: httpx.AsyncClient, order_id: str, amount: int = 15000) -> str:
    """Pass the window without the GET (as load generators do); returns the paymentKey."""
    response = await client.post(
        "/sandbox/checkout", data=window_fields(order_id, amount, action="approve")
    )
    assert response.status_code == 303, response.text
    query = httpx.URL(response.headers["location"]).params
    return str(query["paymentKey"])


async def confirm(
    client: httpx.AsyncClient,
    payment_key: str,
    order_id: str,
    amount: int | str,
    idempotency_key: str | None = None,
) -> httpx.Response:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    body = {"paymentKey": payment_key, "orderId": order_id, "amount": amount}
    return await client.post("/v1/payments/confirm", json=body, headers=headers)


async def ledger(client: httpx.AsyncClient, order_id: str | None = None) -> list[dict[str, Any]]:
    params = {"orderId": order_id} if order_id else {}
    response = await client.get("/sandbox/ledger", params=params)
    assert response.status_code == 200
    entries: list[dict[str, Any]] = response.json()
    return entries


class FormParser(HTMLParser):
    """The inputs and submit buttons of the first form of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.method: str | None = None
        self.fields: dict[str, str] = {}
        self.buttons: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and self.action is None:
            self.action, self.method = attributes.get("action"), attributes.get("method")
        elif tag == "input" and "name" in attributes:
            self.fields[attributes["name"]] = attributes.get("value", "")
        elif tag == "button" and attributes.get("type") == "submit":
            self.buttons[attributes.get("value", "")] = attributes.get("name", "")


def parse_form(html: str) -> FormParser:
    parser = FormParser()
    parser.feed(html)
    return parser


@dataclass
class Receiver:
    """A merchant's webhook endpoint that refuses the first ``failures`` calls."""

    url: str = ""
    failures: int = 0
    calls: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        self.calls.append((dict(request.headers), await request.json()))
        return Response(status_code=500 if len(self.calls) <= self.failures else 200)

    def statuses(self) -> list[str]:
        return [body["data"]["status"] for _, body in self.calls]

    async def wait_for(self, count: int, seconds: float = 5.0) -> None:
        async with asyncio.timeout(seconds):
            while len(self.calls) < count:  # noqa: ASYNC110 - polling a list a handler fills
                await asyncio.sleep(0.02)
