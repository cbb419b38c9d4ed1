"""The gateway's limits and error pages: with a small rate a burst is refused with 429 (a
problem on /api/ and /webhooks/, a page on /payments/), the defaults refuse a burst of forged
redirects from one address, every timeout that bounds a slow client or upstream is set, and an
unknown storefront page is a short HTML page."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from gateway import render
from tests.integration.gateway.conftest import Gateway, Upstream, start_gateway


@pytest.fixture(scope="module")
def limited(upstreams: tuple[Upstream, Upstream]) -> Iterator[Gateway]:
    order, checkout = upstreams
    yield from start_gateway(
        order.address, checkout.address, GATEWAY_RATE_LIMIT="1", GATEWAY_RATE_BURST="3"
    )


def statuses(client: httpx.Client, path: str, count: int) -> list[int]:
    return [client.get(path).status_code for _ in range(count)]


def test_a_burst_past_the_api_limit_is_refused_with_a_429_problem(limited: Gateway) -> None:
    with httpx.Client(base_url=limited.url, timeout=5) as client:
        answered = statuses(client, "/api/x", 10)
        refused = client.get("/api/x")

    assert answered[:4] == [200] * 4  # the rate's one request and a burst of three
    assert 429 in answered[4:]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "RATE_LIMITED"
    assert refused.headers["x-content-type-options"] == "nosniff"


def test_a_burst_past_the_payments_limit_gets_a_429_page(limited: Gateway) -> None:
    with httpx.Client(base_url=limited.url, timeout=5) as client:
        answered = statuses(client, "/payments/result?orderId=order-1", 10)
        refused = client.get("/payments/result?orderId=order-1")

    assert 429 in answered
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("text/html")
    assert "Too many requests" in refused.text


async def test_a_burst_of_150_concurrent_redirects_from_one_address_gets_429s(
    default_gateway: Gateway, upstreams: tuple[Upstream, Upstream]
) -> None:
    limits = httpx.Limits(max_connections=150, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=default_gateway.url, timeout=10, limits=limits) as client:
        forged = [
            client.get(f"/payments/success?paymentKey=forged_{n}&orderId=order-1&amount=1")
            for n in range(150)
        ]
        started = time.monotonic()
        answers = await asyncio.gather(*forged)
        took = time.monotonic() - started

    statuses = Counter(answer.status_code for answer in answers)
    assert set(statuses) <= {200, 429}
    # A rate of 10/s with a burst of 20, and 10 connections at once: most are refused. The rate
    # lets one more through every 100 ms the burst lasts (long on a busy machine).
    assert statuses[429] >= 100, statuses
    assert statuses[200] <= 21 + math.ceil(10 * took), (statuses, took)
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert "Too many requests" in refused.text


def test_a_burst_of_webhooks_is_refused_with_a_429_problem(limited: Gateway) -> None:
    with httpx.Client(base_url=limited.url, timeout=5) as client:
        answered = [client.post("/webhooks/toss", json={}).status_code for _ in range(10)]
        refused = client.post("/webhooks/toss", json={})

    assert 429 in answered
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "RATE_LIMITED"


def test_the_result_pages_script_is_not_rate_limited(limited: Gateway) -> None:
    with httpx.Client(base_url=limited.url, timeout=5) as client:
        assert set(statuses(client, "/payments/static/result.js", 10)) == {200}


def test_the_storefront_is_not_rate_limited(limited: Gateway) -> None:
    with httpx.Client(base_url=limited.url, timeout=5) as client:
        assert set(statuses(client, "/", 10)) == {200}


@pytest.mark.parametrize(
    "directive",
    [
        "client_header_timeout 10s",
        "client_body_timeout 10s",
        "send_timeout 10s",
        "keepalive_timeout 65s",
        "proxy_connect_timeout 3s",
        "proxy_send_timeout 30s",
        "proxy_read_timeout 30s",
        "client_max_body_size 64k",
        "server_tokens off",
    ],
)
def test_slow_clients_and_upstreams_are_bounded_by_a_timeout(directive: str) -> None:
    config = render.render(render.settings({}))

    assert re.search(rf"^\s*{re.escape(directive)};", config, re.MULTILINE), directive


def test_an_unknown_storefront_page_is_a_friendly_html_404(client: httpx.Client) -> None:
    response = client.get("/no-such-page")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Page not found" in response.text
    assert "nginx" not in response.text
    assert "default-src 'self'" in response.headers["content-security-policy"]
