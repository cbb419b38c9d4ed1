"""Client CPU per PG confirm, in isolation: ``python -m bench.micro_pg_client``.

Runs the approval worker's real client path (:class:`TossClient` over the client that
:func:`build_http_client` makes) against a stub PG in another process that answers every
confirm with a fixed DONE payment, so the figures are the client's own: CPU ms per request
(this process only) and requests per second, for each transport variant.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from deploy.stack import free_port
from services.approval.pg_client import ConfirmRequest, TossClient, build_http_client

PAYMENT = orjson.dumps(
    {
        "paymentKey": "tgen_micro",
        "orderId": "order-micro",
        "status": "DONE",
        "totalAmount": 15000,
        "balanceAmount": 15000,
        "method": "카드",
        "approvedAt": "2026-01-01T00:00:00+09:00",
    }
)


async def stub_pg(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app: drain the request, answer the payment."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": PAYMENT})


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(stub_pg, host="127.0.0.1", port=port, log_level="warning", loop="uvloop")


Variant = Callable[[str], httpx.AsyncClient]
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)


def httpcore(base: str) -> httpx.AsyncClient:
    return build_http_client(
        base, "test_sk_micro", transport=httpx.AsyncHTTPTransport(limits=LIMITS)
    )


def httpcore_no_retries(base: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(retries=0, limits=LIMITS)
    return build_http_client(base, "test_sk_micro", transport=transport)


def as_built(base: str) -> httpx.AsyncClient:
    return build_http_client(base, "test_sk_micro")


VARIANTS: dict[str, Variant] = {
    "httpx over httpcore": httpcore,
    "httpcore, retries=0": httpcore_no_retries,
    "as built (aiohttp)": as_built,
}


async def measure(
    client: httpx.AsyncClient, requests: int, concurrency: int
) -> tuple[float, float]:
    """(client CPU ms per request, requests per second)."""
    toss = TossClient(client)
    request = ConfirmRequest("tgen_micro", "order-micro", 15000, "idem-micro")
    queue = iter(range(requests))

    async def worker() -> None:
        for _ in queue:
            await toss.confirm(request)

    await asyncio.gather(*(worker() for _ in range(concurrency)))  # warm the pool
    queue = iter(range(requests))
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu * 1000 / requests, requests / wall


async def run(base: str, requests: int, concurrency: int) -> None:
    for name, make in VARIANTS.items():
        async with make(base) as client:
            await wait_up(client)
            cpu_ms, rate = await measure(client, requests, concurrency)
        print(f"{name:<22} {cpu_ms:6.3f} ms CPU/request  {rate:8.0f} requests/s")


async def wait_up(client: httpx.AsyncClient) -> None:
    for _ in range(100):
        try:
            await client.get("/")
            return
        except httpx.TransportError:
            await asyncio.sleep(0.1)
    raise TimeoutError("the stub PG did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.micro_pg_client")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.micro_pg_client", "--serve", str(port)])
    try:
        import uvloop

        uvloop.run(run(f"http://127.0.0.1:{port}", args.requests, args.concurrency))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
