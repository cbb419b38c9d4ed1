"""6. The SDK stand-in and the window in a real browser: merchant page → window → success URL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Browser
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from tests.browser import needs_chromium
from tests.integration.sandbox.support import serving

pytestmark = [
    pytest.mark.browser,
    needs_chromium,
]

SHOP_PAGE = """<!doctype html><html><body>
<script src="{sandbox}/v2/standard"></script>
<button id="buy">buy</button>
<script>
document.getElementById("buy").addEventListener("click", function () {{
  TossPayments("test_ck_D5GePWvyJnrK0W0k6q8gLzN97Eoq")
    .payment({{customerKey: "cust_Zx81-browser"}})
    .requestPayment({{method: "CARD", amount: {{currency: "KRW", value: 32000}},
      orderId: "order-browser-1", orderName: "Browser order",
      successUrl: location.origin + "/success", failUrl: location.origin + "/fail"}});
}});
</script></body></html>"""


@pytest.fixture
async def shop_url(sandbox_url: str) -> AsyncIterator[str]:
    async def shop(_: Request) -> HTMLResponse:
        return HTMLResponse(SHOP_PAGE.format(sandbox=sandbox_url))

    async def landed(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"{request.url.path} {request.url.query}")

    routes = [Route("/", shop), Route("/success", landed), Route("/fail", landed)]
    async with serving(Starlette(routes=routes)) as url:
        yield url


async def test_the_sdk_opens_the_window_and_paying_lands_on_the_success_url(
    browser: Browser, shop_url: str, client: httpx.AsyncClient
) -> None:
    page = await browser.new_page()
    await page.goto(shop_url)
    await page.click("#buy")
    await page.wait_for_url(re.compile(r"/sandbox/checkout"))
    await page.get_by_role("button", name=re.compile("pay", re.IGNORECASE)).click()
    await page.wait_for_url(re.compile(r"/success"))

    landed = httpx.URL(page.url)
    assert landed.params["orderId"] == "order-browser-1"
    assert landed.params["amount"] == "32000"
    assert landed.params["paymentType"] == "NORMAL"
    payment = await client.get(f"/v1/payments/{landed.params['paymentKey']}")
    assert payment.json()["status"] == "IN_PROGRESS"
