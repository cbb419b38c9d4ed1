"""The buyers: orders placed and authenticated beforehand, then redirects fired at a fixed rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import httpx
from yarl import URL

from deploy.stack import TEST_CLIENT_KEY

SETUP_CONCURRENCY = 32


@dataclass(frozen=True)
class Authenticated:
    order_id: str
    redirect_path: str  # "/payments/success?…" exactly as the PG sent it


async def bounded(
    jobs: Iterable[Callable[[], Awaitable[Any]]], limit: int, tick: Callable[[], None]
) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[Any]]) -> Any:
        async with semaphore:
            result = await job()
            tick()
            return result

    return await asyncio.gather(*(run(job) for job in jobs))


async def place_order(client: httpx.AsyncClient, sku: str) -> dict[str, Any]:
    response = await client.post("/api/orders", json={"items": [{"sku": sku, "quantity": 1}]})
    response.raise_for_status()
    order: dict[str, Any] = response.json()
    return order


async def authenticate(
    sandbox: httpx.AsyncClient, order: dict[str, Any], return_base: str
) -> Authenticated:
    form = {
        "clientKey": TEST_CLIENT_KEY,
        "customerKey": order["customerKey"],
        "orderId": order["orderId"],
        "orderName": order["orderName"],
        "amount": str(order["amount"]),
        "successUrl": f"{return_base}/payments/success",
        "failUrl": f"{return_base}/payments/fail",
        "action": "approve",
    }
    response = await sandbox.post("/sandbox/checkout", data=form)
    if response.status_code != 303:
        raise RuntimeError(f"sandbox window refused: {response.status_code} {response.text[:200]}")
    location = urlsplit(response.headers["location"])
    return Authenticated(order["orderId"], f"{location.path}?{location.query}")


async def prepare(
    order_api: httpx.AsyncClient,
    sandbox: httpx.AsyncClient,
    count: int,
    return_base: str,
    tick: Callable[[], None],
) -> list[Authenticated]:
    """Place ``count`` orders and authenticate each in the sandbox window (not measured)."""
    products = (await order_api.get("/api/products")).raise_for_status().json()
    sku = min(products, key=lambda p: p["price"])["sku"]
    orders = await bounded([lambda: place_order(order_api, sku)] * count, SETUP_CONCURRENCY, tick)
    jobs = [_authenticate_job(sandbox, order, return_base) for order in orders]
    result: list[Authenticated] = await bounded(jobs, SETUP_CONCURRENCY, tick)
    return result


def _authenticate_job(
    sandbox: httpx.AsyncClient, order: dict[str, Any], return_base: str
) -> Callable[[], Awaitable[Authenticated]]:
    return lambda: authenticate(sandbox, order, return_base)


@dataclass
class FireResult:
    started: float
    finished: float
    errors: int
    behind_schedule_max_s: float
    refused: int = 0  # answers 5xx (or none) that the buyer tried again after (``retry_for_s``)


class Redirects(Protocol):
    async def status(self, path: str) -> int: ...


@dataclass(frozen=True)
class RedirectClient:
    session: aiohttp.ClientSession
    base_url: str

    async def status(self, path: str) -> int:
        """GET ``path`` as the PG wrote it (no re-quoting), not followed; body read, released."""
        url = URL(self.base_url + path, encoded=True)
        async with self.session.get(url, allow_redirects=False) as response:
            await response.read()
            return response.status


@asynccontextmanager
async def redirect_session(
    base_url: str, max_inflight: int, timeout: float = 60
) -> AsyncIterator[RedirectClient]:
    """The buyers' browsers, through aiohttp: its pool's cost per request does not grow with it.

    (httpcore's pool walks all its connections, and per idle one counts them all again, each
    time a request comes or goes: with hundreds in flight the load generator took as much CPU
    per payment as the services it measured, on the same cores.)
    No cookie jar: every redirect is a different buyer.
    """
    connector = aiohttp.TCPConnector(limit=max_inflight, limit_per_host=0)
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=timeout),
        auto_decompress=False,
    )
    async with session:
        yield RedirectClient(session, base_url)


async def fire(
    client: Redirects,
    payments: list[Authenticated],
    rate: float,
    max_inflight: int,
    tick: Callable[[], None],
    retry_for_s: float = 0.0,
) -> FireResult:
    """Open model: request i is due at start + i / rate whatever the earlier ones are doing.

    With ``retry_for_s``, a buyer whose redirect was refused (5xx or no answer: a service
    unavailable) loads the page again every second for that long, as a person would.
    """
    semaphore = asyncio.Semaphore(max_inflight)
    errors = refused = 0
    lag = 0.0
    start = time.monotonic()

    async def one(index: int, payment: Authenticated) -> None:
        nonlocal errors, refused, lag
        due = start + index / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        async with semaphore:
            lag = max(lag, time.monotonic() - due)
            status = await _status(client, payment.redirect_path)
        while status >= 500 and time.monotonic() < due + retry_for_s:
            refused += 1
            await asyncio.sleep(1.0)
            async with semaphore:
                status = await _status(client, payment.redirect_path)
        if status >= 400:
            errors += 1
        tick()

    await asyncio.gather(*(one(i, p) for i, p in enumerate(payments)))
    return FireResult(start, time.monotonic(), errors, lag, refused)


async def _status(client: Redirects, path: str) -> int:
    """The redirect's HTTP status; no answer at all counts as 503."""
    try:
        return await client.status(path)
    except (aiohttp.ClientError, TimeoutError):
        return 503
