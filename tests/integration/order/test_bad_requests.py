"""Strangers and garbage: near-miss tokens are refused, tokens exist only as hashes compared in
constant time, and no body or content type, however broken, gets anything but a 4xx problem
that changes nothing."""

from __future__ import annotations

import hashlib
import hmac

import httpx
import pytest

from tests.integration.order.conftest import BEANS, START_POINTS, TOKEN, OrderService, bearer

NEAR_MISSES = {
    "last character changed": TOKEN[:-1] + ("x" if TOKEN[-1] != "x" else "y"),
    "first character changed": ("X" if TOKEN[0] != "X" else "Y") + TOKEN[1:],
    "upper case": TOKEN.upper(),
    "one character more": TOKEN + "a",
    "one character less": TOKEN[:-1],
    "its hash": hashlib.sha256(TOKEN.encode()).hexdigest(),
}


async def test_a_token_that_almost_matches_is_unauthorized(service: OrderService) -> None:
    for miss, token in NEAR_MISSES.items():
        response = await service.client.get("/api/me", headers=bearer(token))

        assert (response.status_code, response.json()["code"]) == (401, "UNAUTHORIZED"), miss


async def test_tokens_are_stored_only_as_their_hash(service: OrderService) -> None:
    rows = await service.pool.fetch("SELECT c::text AS row, token_hash FROM customers c")

    assert rows
    assert all(TOKEN not in row["row"] for row in rows)
    assert hashlib.sha256(TOKEN.encode()).digest() in {bytes(row["token_hash"]) for row in rows}


async def test_the_token_is_compared_in_constant_time(
    service: OrderService, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    constant_time = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return constant_time(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)

    assert (await service.client.get("/api/me", headers=bearer())).status_code == 200
    digest = hashlib.sha256(TOKEN.encode()).digest()
    assert compared == [(digest, digest)]


GARBAGE_BODIES: dict[str, bytes] = {
    "empty": b"",
    "truncated json": b'{"items": [',
    "null": b"null",
    "a list": b"[]",
    "a string": b'"items"',
    "a number too big for a float": b"1e999",
    "items not a list": b'{"items": "BEANS"}',
    "a null item": b'{"items": [null]}',
    "quantity beyond any integer type": b'{"items": [{"sku": "COFFEE-BEANS", "quantity": '
    + b"9" * 40
    + b"}]}",
    "quantity as a float": b'{"items": [{"sku": "COFFEE-BEANS", "quantity": 1.5}]}',
    "points beyond bigint": b'{"items": [{"sku": "COFFEE-BEANS", "quantity": 1}], "points": '
    + b"9" * 30
    + b"}",
    "a nul in the sku": b'{"items": [{"sku": "COFFEE\\u0000", "quantity": 1}]}',
    "a lone surrogate": b'{"items": [{"sku": "\\ud800", "quantity": 1}]}',
    "not utf-8": b'{"items": [{"sku": "\xff\xfe", "quantity": 1}]}',
    "deeply nested": b"[" * 5_000 + b"]" * 5_000,
    "a form": b"items=COFFEE-BEANS&quantity=1",
}
CONTENT_TYPES = [
    "application/json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    None,
]


def assert_problem(response: httpx.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"]
    assert body["status"] == response.status_code
    assert "Traceback" not in response.text


async def post_garbage(
    service: OrderService, path: str, body: bytes, content_type: str | None
) -> httpx.Response:
    headers = bearer()
    if content_type is not None:
        headers["Content-Type"] = content_type
    return await service.client.post(path, content=body, headers=headers)


async def test_a_garbage_order_is_a_problem_and_places_nothing(service: OrderService) -> None:
    for body in GARBAGE_BODIES.values():
        for content_type in CONTENT_TYPES:
            assert_problem(await post_garbage(service, "/api/orders", body, content_type))

    assert await service.pool.fetchval("SELECT count(*) FROM orders") == 0
    assert await service.points() == START_POINTS


async def test_a_garbage_cancel_is_a_problem_and_cancels_nothing(service: OrderService) -> None:
    order = await service.placed(items=[{"sku": BEANS, "quantity": 1}])
    path = f"/api/orders/{order['orderId']}/cancel"
    bodies = [
        *GARBAGE_BODIES.values(),
        b'{"reason": "x", "amount": ' + b"9" * 30 + b"}",
        b'{"reason": "x", "amount": -5}',
        b'{"reason": ""}',
        b'{"reason": "' + b"r" * 201 + b'"}',
    ]

    for body in bodies:
        for content_type in CONTENT_TYPES:
            assert_problem(await post_garbage(service, path, body, content_type))

    assert (await service.order(order["orderId"]))["status"] == "PENDING"


async def test_a_garbage_order_id_is_a_problem(service: OrderService) -> None:
    for order_id in ("%00", "x" * 5_000, "..%2F..%2Fetc", "%F0%28%8C%BC", "ord_%27%3B--"):
        assert_problem(await service.client.get(f"/api/orders/{order_id}", headers=bearer()))
        assert_problem(
            await service.client.post(
                f"/api/orders/{order_id}/cancel", json={"reason": "x"}, headers=bearer()
            )
        )


async def test_an_unknown_route_or_method_is_a_problem(service: OrderService) -> None:
    assert_problem(await service.client.get("/api/no-such-thing", headers=bearer()))
    assert_problem(await service.client.delete("/api/orders", headers=bearer()))
    assert_problem(await service.client.put("/api/products", headers=bearer()))
