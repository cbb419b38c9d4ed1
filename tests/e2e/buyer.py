"""A buyer driving the HTTP flow the way a browser would: gateway, sandbox window, redirects."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from deploy.stack import TEST_CLIENT_KEY, StackConfig

TERMINAL_ORDER_STATES = {"PAID", "EXPIRED", "CANCELED", "REFUNDED", "PARTIALLY_REFUNDED"}


@dataclass
class Buyer:
    gateway: httpx.AsyncClient
    sandbox: httpx.AsyncClient
    gateway_url: str

    @classmethod
    @contextlib.asynccontextmanager
    async def for_stack(
        cls, config: StackConfig, token: str = "demo-token"
    ) -> AsyncIterator[Buyer]:
        gateway_url = f"http://127.0.0.1:{config.gateway_port}"
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx.AsyncClient(base_url=gateway_url, headers=headers, timeout=15) as gateway,
            httpx.AsyncClient(base_url=config.sandbox_url, timeout=15) as sandbox,
        ):
            yield cls(gateway, sandbox, gateway_url)

    async def place_order(self, **body: Any) -> dict[str, Any]:
        body.setdefault("items", [{"sku": await self.first_sku(), "quantity": 1}])
        response = await self.gateway.post("/api/orders", json=body)
        assert response.status_code == 201, response.text
        order: dict[str, Any] = response.json()
        return order

    async def first_sku(self) -> str:
        products = (await self.gateway.get("/api/products")).json()
        sku: str = products[0]["sku"]
        return sku

    async def authenticate(self, order: dict[str, Any], amount: int | None = None) -> str:
        """Approve in the sandbox window; returns the success redirect URL the PG sends back."""
        form = {
            "clientKey": TEST_CLIENT_KEY,
            "customerKey": order["customerKey"],
            "orderId": order["orderId"],
            "orderName": order["orderName"],
            "amount": str(order["amount"] if amount is None else amount),
            "successUrl": f"{self.gateway_url}/payments/success",
            "failUrl": f"{self.gateway_url}/payments/fail",
            "action": "approve",
        }
        response = await self.sandbox.post("/sandbox/checkout", data=form)
        assert response.status_code == 303, response.text
        return response.headers["location"]

    async def follow_redirect(self, location: str, **overrides: str) -> httpx.Response:
        """Send the browser to the PG's redirect, optionally tampering with its parameters."""
        parts = urlsplit(location)
        params = {k: v[0] for k, v in parse_qs(parts.query).items()} | overrides
        return await self.gateway.get(f"{parts.path}?{urlencode(params)}")

    async def pay(self, order: dict[str, Any]) -> httpx.Response:
        return await self.follow_redirect(await self.authenticate(order))

    async def order(self, order_id: str) -> dict[str, Any]:
        response = await self.gateway.get(f"/api/orders/{order_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_for(self, order_id: str, predicate: Any, within: float = 20) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            order = await self.order(order_id)
            if predicate(order):
                return order
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"order never reached the expected state: {order}")
            await asyncio.sleep(0.1)

    async def ledger(self, order_id: str) -> list[dict[str, Any]]:
        response = await self.sandbox.get("/sandbox/ledger", params={"orderId": order_id})
        response.raise_for_status()
        payments: list[dict[str, Any]] = response.json()
        return [p for p in payments if p["orderId"] == order_id]
