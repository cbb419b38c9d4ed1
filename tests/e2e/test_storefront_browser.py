"""Buyers click through the storefront and the sandbox window in Debian's chromium: each visitor
is a customer of their own (a session cookie no script can read), who cannot read another's
orders; in sandbox mode a visitor may sign in as a demo customer by token."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from deploy.stack import Stack
from tests.browser import needs_chromium
from tests.e2e.buyer import Buyer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    needs_chromium,
]


async def place_order_with_coupon_and_points(page: Page) -> str:
    await page.locator("#products [data-sku] input.qty").first.fill("2")
    await page.locator("#coupon").select_option(index=1)
    await page.locator("#points").fill("1000")
    await page.locator("#place-order").click()
    amount = page.locator("#order-amount")
    await expect(amount).to_have_text(re.compile(r"\d"))
    return await amount.inner_text()


async def test_a_buyer_pays_with_coupon_and_points_in_the_browser_and_sees_it_paid(
    stack: Stack, browser: Browser, buyer: Buyer
) -> None:
    page = await browser.new_page()
    await page.goto(stack.config.storefront_url)
    await expect(page.locator("#products [data-sku]").first).to_be_visible()

    await place_order_with_coupon_and_points(page)
    await page.locator("#pay").click()
    await page.wait_for_url(re.compile(r"/sandbox/checkout"))
    await page.get_by_role("button", name=re.compile("pay", re.IGNORECASE)).click()
    await page.wait_for_url(re.compile(r"/payments/result"))

    status = page.locator("#payment-status")
    await expect(status).to_have_attribute("data-status", "PAID", timeout=20_000)
    order_id = re.search(r"orderId=([A-Za-z0-9_-]+)", page.url)
    assert order_id is not None
    [payment] = await buyer.ledger(order_id.group(1))
    assert payment["approvals"] == 1
    await page.screenshot(path=str(stack.config.run_dir / "storefront-paid.png"))


async def open_shop(browser: Browser, stack: Stack) -> tuple[BrowserContext, Page]:
    """A fresh visitor: a browser context of its own (its own cookies), on the storefront."""
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(stack.config.storefront_url)
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return context, page


async def customer_key(page: Page) -> str:
    key = await page.locator("#customer").get_attribute("data-customer-key")
    assert key
    return key


async def test_two_visitors_are_two_customers_and_one_cannot_read_the_others_order(
    stack: Stack, browser: Browser
) -> None:
    first, first_page = await open_shop(browser, stack)
    second, second_page = await open_shop(browser, stack)
    try:
        await place_order_with_coupon_and_points(first_page)
        order_id = await first_page.locator("#order-summary").get_attribute("data-order-id")
        assert order_id

        mine = await first.request.get(f"{stack.config.storefront_url}api/orders/{order_id}")
        theirs = await second.request.get(f"{stack.config.storefront_url}api/orders/{order_id}")

        assert await customer_key(first_page) != await customer_key(second_page)
        assert mine.status == 200
        assert theirs.status == 404
        # The identity is an HttpOnly cookie: no script on the page can read it.
        assert await first_page.evaluate("document.cookie") == ""
        page_and_scripts = await first_page.content() + "".join(
            [
                await (await first.request.get(f"{stack.config.storefront_url}{path}")).text()
                for path in ("storefront-config.js", "app.js")
            ]
        )
        assert "demo-token" not in page_and_scripts
    finally:
        await first.close()
        await second.close()


async def test_in_sandbox_mode_a_visitor_signs_in_as_a_demo_customer_by_token(
    stack: Stack, browser: Browser, buyer: Buyer
) -> None:
    demo = (await buyer.gateway.get("/api/me")).json()["customerKey"]
    context, page = await open_shop(browser, stack)
    try:
        guest = await customer_key(page)
        await page.locator("#sign-in-token").fill("demo-token")
        await page.locator("#sign-in button").click()
        await expect(page.locator("#customer")).to_have_attribute("data-customer-key", demo)
    finally:
        await context.close()

    assert guest != demo
