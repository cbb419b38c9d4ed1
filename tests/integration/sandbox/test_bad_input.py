"""11. Bad input of any kind: a 4xx in the PG's {code, message} shape, never a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.sandbox.support import authenticate


def _is_pg_error(response: httpx.Response) -> bool:
    body = response.json()
    return set(body) == {"code", "message"} and body["code"].isupper()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b'{"paymentKey": "k", "orderId": "order-bad-1"}',
        b'{"paymentKey": "k", "orderId": "order-bad-1", "amount": "12a"}',
        b'{"paymentKey": "k", "orderId": "order-bad-1", "amount": -5}',
        b'{"paymentKey": "k", "orderId": "order-bad-1", "amount": 1.5}',
        b'{"paymentKey": "k", "orderId": "order-bad-1", "amount": true}',
        b'{"paymentKey": "k", "orderId": "bad", "amount": 100}',
        b'{"paymentKey": 7, "orderId": "order-bad-1", "amount": 100}',
        b'{"paymentKey": "", "orderId": "order-bad-1", "amount": 100}',
        b'{"paymentKey": "k", "orderId": ["order-bad-1"], "amount": 100}',
        b'{"paymentKey": "k", "orderId": "order-bad-1", "amount": 1e400}',
        b"\xff\xfe",
    ],
)
async def test_a_malformed_confirm_body_is_a_400_invalid_request(
    client: httpx.AsyncClient, content: bytes
) -> None:
    response = await client.post(
        "/v1/payments/confirm", content=content, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert _is_pg_error(response)
    assert response.json()["code"] == "INVALID_REQUEST"


async def test_malformed_cancels_are_400_invalid_request(client: httpx.AsyncClient) -> None:
    key = await authenticate(client, "order-bad-2")
    for body in (
        {},
        {"cancelReason": ""},
        {"cancelReason": "x" * 201},
        {"cancelReason": "ok", "cancelAmount": 0},
        {"cancelReason": "ok", "cancelAmount": "lots"},
    ):
        response = await client.post(f"/v1/payments/{key}/cancel", json=body)
        assert response.status_code == 400, body
        assert _is_pg_error(response)


async def test_unknown_paths_and_methods_answer_in_the_pg_shape(
    client: httpx.AsyncClient,
) -> None:
    missing = await client.get("/v1/nothing")
    wrong_method = await client.delete("/v1/payments/confirm")

    assert (missing.status_code, missing.json()["code"]) == (404, "NOT_FOUND")
    assert (wrong_method.status_code, wrong_method.json()["code"]) == (405, "METHOD_NOT_ALLOWED")


async def test_garbage_authorization_headers_are_refused_in_the_pg_shape(
    client: httpx.AsyncClient,
) -> None:
    for header, status in (
        ("Bearer token", 401),
        ("Basic", 401),
        ("Basic !!!not-base64!!!", 403),
        ("Basic //79", 403),
    ):
        response = await client.get("/v1/payments/tsbx_x", headers={"Authorization": header})
        assert response.status_code == status, header
        assert _is_pg_error(response)


async def test_an_oversized_payment_key_or_body_is_refused(client: httpx.AsyncClient) -> None:
    long_key = await client.post(
        "/v1/payments/confirm",
        json={"paymentKey": "k" * 201, "orderId": "order-bad-3", "amount": 100},
    )
    huge = await client.post("/v1/payments/confirm", content=b"{" + b" " * 70000 + b"}")

    assert (long_key.status_code, huge.status_code) == (400, 400)
    assert _is_pg_error(long_key)
    assert _is_pg_error(huge)


async def test_an_unknown_test_code_is_a_400_not_a_crash(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/v1/payments/tsbx_x", headers={"TossPayments-Test-Code": "NO_SUCH_CODE"}
    )

    assert response.status_code == 400
    assert _is_pg_error(response)
