"""A buyer clicks through the storefront and the sandbox window in Debian's chromium."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, Page, expect

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
