"""Storefront sessions: every visitor a customer of their own, in an HttpOnly cookie; signing in
as a demo customer by token; state changes with the cookie only from the shop's own origin."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from services.order import service as order_service
from services.order.domain import NotAuthenticated
from tests.integration.order.conftest import BEANS, TOKEN, OrderService

ORDER = {"items": [{"sku": BEANS, "quantity": 1}]}


async def visit(browser: httpx.AsyncClient) -> httpx.Response:
    return await browser.post("/api/session", json={})


def cookie_header(response: httpx.Response) -> str:
    [header] = response.headers.get_list("set-cookie")
    return header


async def test_a_first_visit_starts_a_guest_session_in_an_httponly_cookie(
    service: OrderService,
) -> None:
    async with service.browser() as browser:
        response = await visit(browser)

    assert response.status_code == 201
    session = response.json()
    assert session["guest"] is True
    header = cookie_header(response).lower()
    assert header.startswith("session=")
    assert "httponly" in header
    assert "samesite=lax" in header
    assert "path=/" in header
    assert "secure" not in header  # plain http here
    assert "session" not in response.text.replace('"guest"', "")


async def test_a_sandbox_guest_starts_with_points_and_a_coupon_of_their_own(
    service: OrderService,
) -> None:
    async with service.browser() as first, service.browser() as second:
        await visit(first)
        await visit(second)
        mine = (await first.get("/api/me")).json()
        theirs = (await second.get("/api/me")).json()

    assert mine["pointsBalance"] == theirs["pointsBalance"] == 5_000
    [coupon] = mine["coupons"]
    assert coupon["code"].startswith("WELCOME-")
    assert coupon["code"] != theirs["coupons"][0]["code"]
    assert mine["customerKey"] != theirs["customerKey"]


async def test_the_same_visitor_keeps_their_session(service: OrderService) -> None:
    async with service.browser() as browser:
        first = await visit(browser)
        again = await visit(browser)

    assert again.status_code == 200
    assert again.json()["customerKey"] == first.json()["customerKey"]
    assert "set-cookie" not in again.headers


async def test_one_visitor_cannot_read_anothers_order(service: OrderService) -> None:
    async with service.browser() as buyer, service.browser() as stranger:
        await visit(buyer)
        await visit(stranger)
        placed = await buyer.post("/api/orders", json=ORDER)
        order_id = placed.json()["orderId"]

        mine = await buyer.get(f"/api/orders/{order_id}")
        theirs = await stranger.get(f"/api/orders/{order_id}")

    assert placed.status_code == 201
    assert mine.status_code == 200
    assert theirs.status_code == 404


@pytest.mark.parametrize("origin", ["", "https://evil.example", "http://order.test.evil.example"])
async def test_a_state_change_with_the_cookie_from_elsewhere_is_refused(
    service: OrderService, origin: str
) -> None:
    async with service.browser() as visitor:
        await visit(visitor)
        cookies = visitor.cookies
    async with service.browser(origin=origin) as forger:
        forger.cookies = cookies
        response = await forger.post("/api/orders", json=ORDER)
        reading = await forger.get("/api/me")

    assert response.status_code == 403
    assert response.json()["code"] == "CROSS_SITE_REQUEST"
    assert reading.status_code == 200  # reads are safe: another site cannot see the answer


async def test_a_referer_from_the_shop_counts_as_its_origin(service: OrderService) -> None:
    async with service.browser(origin="") as browser:
        await browser.post("/api/session", json={}, headers={"Referer": "http://order.test/"})
        response = await browser.post(
            "/api/orders", json=ORDER, headers={"Referer": "http://order.test/?x=1"}
        )

    assert response.status_code == 201


async def test_signing_in_with_a_demo_token_makes_the_visitor_that_customer(
    service: OrderService,
) -> None:
    async with service.browser() as browser:
        guest = await visit(browser)
        old = dict(browser.cookies)
        signed_in = await browser.post("/api/session", json={"token": TOKEN})
        me = (await browser.get("/api/me")).json()
    demo = (
        await service.client.get("/api/me", headers={"Authorization": f"Bearer {TOKEN}"})
    ).json()
    async with service.browser() as stale:
        stale.cookies = httpx.Cookies(old)
        left_behind = await stale.get("/api/me")

    assert signed_in.status_code == 201
    assert signed_in.json()["guest"] is False
    assert me["customerKey"] == demo["customerKey"] != guest.json()["customerKey"]
    assert left_behind.status_code == 401  # the guest session ended with the sign-in


async def test_signing_in_with_a_wrong_token_is_refused(service: OrderService) -> None:
    async with service.browser() as browser:
        response = await browser.post("/api/session", json={"token": "not-a-token"})

    assert response.status_code == 401


async def test_signing_out_ends_the_session(service: OrderService) -> None:
    async with service.browser() as browser:
        await visit(browser)
        old = dict(browser.cookies)
        response = await browser.delete("/api/session")
    async with service.browser() as stale:
        stale.cookies = httpx.Cookies(old)
        after = await stale.get("/api/me")

    assert response.status_code == 204
    assert 'session=""' in cookie_header(response) or "max-age=0" in cookie_header(response).lower()
    assert after.status_code == 401


async def test_an_expired_session_is_refused(service: OrderService) -> None:
    async with service.browser() as browser:
        await visit(browser)
        await service.pool.execute("UPDATE sessions SET expires_at = created_at + interval '1 ms'")
        response = await browser.get("/api/me")

    assert response.status_code == 401


async def test_only_the_session_ids_hash_is_stored(service: OrderService) -> None:
    async with service.browser() as browser:
        await visit(browser)
        session_id = browser.cookies["session"]
    stored: list[Any] = [bytes(r[0]) for r in await service.pool.fetch("SELECT * FROM sessions")]

    assert stored == [hashlib.sha256(session_id.encode()).digest()]


async def test_over_tls_the_cookie_is_secure(service: OrderService) -> None:
    async with httpx.AsyncClient(
        transport=service.transport,
        base_url="https://order.test",
        headers={"Origin": "https://order.test"},
    ) as browser:
        response = await visit(browser)

    assert "secure" in cookie_header(response).lower()


async def test_a_demo_token_counts_only_where_demo_customers_are_allowed(
    service: OrderService,
) -> None:
    assert await order_service.authenticate(service.pool, TOKEN, demo_allowed=True)
    with pytest.raises(NotAuthenticated):
        await order_service.authenticate(service.pool, TOKEN, demo_allowed=False)
