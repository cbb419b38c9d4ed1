"""The Toss adapter through httpx.MockTransport: what it sends and how it reads every answer."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from services.approval.config import ConfigurationError, Settings
from services.approval.domain import ErrorClass
from services.approval.pg_client import (
    Approved,
    Canceled,
    CancelRequest,
    ConfirmRequest,
    Declined,
    Found,
    NotFound,
    TossClient,
    Unknown,
    build_http_client,
)

SECRET = "test_sk_unit0000000000000000000000"
REQUEST = ConfirmRequest("pk_1", "order-0001", 50_000, "confirm-abc")

Responder = Callable[[httpx.Request], httpx.Response]


def payment_body(status: str = "DONE", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "paymentKey": "pk_1",
        "orderId": "order-0001",
        "status": status,
        "totalAmount": 50_000,
        "balanceAmount": 50_000,
        "method": "카드",
        "approvedAt": "2026-01-01T21:00:00+09:00",
        "cancels": None,
        "failure": None,
    }
    return body | extra


def error(status: int, code: str) -> Responder:
    return lambda _: httpx.Response(status, json={"code": code, "message": "msg"})


class Recorder:
    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)


def client(respond: Responder) -> tuple[TossClient, Recorder]:
    recorder = Recorder(respond)
    http = build_http_client(
        "http://pg.test", SECRET, transport=httpx.MockTransport(recorder), read_timeout=1.0
    )
    return TossClient(http), recorder


async def confirm(respond: Responder) -> object:
    toss, _ = client(respond)
    return await toss.confirm(REQUEST)


def ok(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=payment_body())


async def test_every_call_carries_basic_auth_of_the_secret_key_and_a_colon() -> None:
    toss, recorder = client(ok)
    await toss.confirm(REQUEST)
    expected = "Basic " + base64.b64encode(f"{SECRET}:".encode()).decode()
    assert recorder.requests[0].headers["Authorization"] == expected


async def test_confirm_sends_the_idempotency_key_header() -> None:
    toss, recorder = client(ok)
    await toss.confirm(REQUEST)
    assert recorder.requests[0].headers["Idempotency-Key"] == "confirm-abc"


async def test_confirm_posts_the_stored_amount_order_and_key() -> None:
    toss, recorder = client(ok)
    await toss.confirm(REQUEST)
    sent = recorder.requests[0]
    assert (sent.method, sent.url.path) == ("POST", "/v1/payments/confirm")
    body = orjson.loads(sent.content)
    assert body == {"paymentKey": "pk_1", "orderId": "order-0001", "amount": 50_000}


async def test_a_200_done_is_approved_with_the_payment() -> None:
    result = await confirm(ok)
    assert isinstance(result, Approved)
    assert (result.payment.status, result.payment.total_amount) == ("DONE", 50_000)
    assert result.payment.method == "카드"


async def test_a_200_that_is_not_done_is_unknown() -> None:
    result = await confirm(lambda _: httpx.Response(200, json=payment_body("IN_PROGRESS")))
    assert isinstance(result, Unknown)


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "INVALID_CARD_EXPIRATION"), (400, "INVALID_REQUEST"), (403, "REJECT_CARD_PAYMENT")],
)
async def test_a_definitive_4xx_is_declined_with_its_code(status: int, code: str) -> None:
    assert await confirm(error(status, code)) == Declined(code, "msg")


async def test_a_5xx_is_unknown() -> None:
    result = await confirm(error(500, "FAILED_INTERNAL_SYSTEM_PROCESSING"))
    assert isinstance(result, Unknown)


async def test_provider_error_is_unknown() -> None:
    result = await confirm(error(400, "PROVIDER_ERROR"))
    assert isinstance(result, Unknown)
    assert result.error_class is ErrorClass.OUTCOME_UNKNOWN


async def test_already_processed_payment_is_unknown_but_probably_done() -> None:
    result = await confirm(error(400, "ALREADY_PROCESSED_PAYMENT"))
    assert isinstance(result, Unknown)
    assert result.probably_done


async def test_a_rate_limit_is_unknown_never_a_decline() -> None:
    result = await confirm(error(403, "FORBIDDEN_CONSECUTIVE_REQUEST"))
    assert isinstance(result, Unknown)
    assert result.error_class is ErrorClass.OUTCOME_UNKNOWN


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "UNAUTHORIZED_KEY"), (400, "INVALID_API_KEY"), (400, "NOT_FOUND_TERMINAL_ID")],
)
async def test_a_merchant_configuration_error_is_unknown_and_misconfigured(
    status: int, code: str
) -> None:
    result = await confirm(error(status, code))
    assert isinstance(result, Unknown)
    assert result.misconfigured


async def test_a_cancel_already_canceled_is_only_probably_done() -> None:
    toss, _ = client(error(400, "ALREADY_CANCELED_PAYMENT"))
    result = await toss.cancel(CancelRequest("pk_1", "r", None, "cancel-abc"))
    assert isinstance(result, Unknown)
    assert result.probably_done


async def test_a_lookup_refused_for_our_configuration_is_misconfigured() -> None:
    toss, _ = client(error(401, "UNAUTHORIZED_KEY"))
    result = await toss.get_payment("pk_1")
    assert isinstance(result, Unknown)
    assert result.misconfigured


async def test_a_call_that_outlasts_its_deadline_is_unknown() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=payment_body())

    http = build_http_client(
        "http://pg.test", SECRET, transport=httpx.MockTransport(slow), read_timeout=10
    )
    async with http:
        started = time.monotonic()
        result = await TossClient(http, call_deadline=0.2).confirm(REQUEST)
    assert isinstance(result, Unknown)
    assert time.monotonic() - started < 2


async def test_a_409_idempotent_request_processing_is_unknown() -> None:
    result = await confirm(error(409, "IDEMPOTENT_REQUEST_PROCESSING"))
    assert isinstance(result, Unknown)


async def test_a_429_is_unknown() -> None:
    assert isinstance(await confirm(lambda _: httpx.Response(429, text="slow down")), Unknown)


async def test_a_timeout_is_unknown() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    assert isinstance(await confirm(timeout), Unknown)


async def test_a_connection_error_is_unknown() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    assert isinstance(await confirm(refused), Unknown)


async def test_a_200_with_bad_json_is_unknown_not_a_crash() -> None:
    assert isinstance(await confirm(lambda _: httpx.Response(200, text="<html>")), Unknown)


async def test_a_400_with_bad_json_is_unknown_not_a_decline() -> None:
    assert isinstance(await confirm(lambda _: httpx.Response(400, text="oops")), Unknown)


async def test_a_payment_with_a_malformed_amount_is_unknown() -> None:
    body = payment_body(totalAmount="lots")
    assert isinstance(await confirm(lambda _: httpx.Response(200, json=body)), Unknown)


async def test_the_secret_never_appears_in_a_result() -> None:
    def echo_headers(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"failed {dict(request.headers)}", request=request)

    for respond in (echo_headers, error(401, "UNAUTHORIZED_KEY"), error(500, "X")):
        text = repr(await confirm(respond))
        assert SECRET not in text
        assert base64.b64encode(f"{SECRET}:".encode()).decode() not in text


async def test_a_payment_is_looked_up_by_order() -> None:
    toss, recorder = client(ok)
    result = await toss.get_payment_by_order("order-0001")
    assert isinstance(result, Found)
    assert recorder.requests[0].url.path == "/v1/payments/orders/order-0001"


async def test_a_missing_payment_is_not_found() -> None:
    toss, _ = client(error(404, "NOT_FOUND_PAYMENT"))
    assert await toss.get_payment("pk_1") == NotFound("NOT_FOUND_PAYMENT")


async def test_a_lookup_that_fails_with_a_5xx_is_unknown() -> None:
    toss, _ = client(error(503, "X"))
    assert isinstance(await toss.get_payment("pk_1"), Unknown)


async def test_cancel_sends_reason_amount_and_idempotency_key() -> None:
    canceled = payment_body(
        "PARTIAL_CANCELED",
        balanceAmount=30_000,
        cancels=[{"cancelAmount": 20_000, "cancelReason": "r", "canceledAt": None}],
    )
    toss, recorder = client(lambda _: httpx.Response(200, json=canceled))
    result = await toss.cancel(CancelRequest("pk_1", "r", 20_000, "cancel-abc"))
    assert isinstance(result, Canceled)
    assert result.payment.balance_amount == 30_000
    sent = recorder.requests[0]
    assert sent.url.path == "/v1/payments/pk_1/cancel"
    assert sent.headers["Idempotency-Key"] == "cancel-abc"
    assert orjson.loads(sent.content) == {"cancelReason": "r", "cancelAmount": 20_000}


async def test_a_cancel_refused_by_the_pg_is_declined() -> None:
    toss, _ = client(error(403, "NOT_CANCELABLE_AMOUNT"))
    result = await toss.cancel(CancelRequest("pk_1", "r", None, "cancel-abc"))
    assert result == Declined("NOT_CANCELABLE_AMOUNT", "msg")


def test_the_public_test_key_is_used_only_off_the_real_pg() -> None:
    assert Settings(toss_api_base="http://127.0.0.1:8090").secret_key().startswith("test_sk_")
    with pytest.raises(ConfigurationError):
        Settings(toss_api_base="https://api.tosspayments.com").secret_key()


def test_a_key_that_is_not_a_secret_key_is_refused() -> None:
    with pytest.raises(ConfigurationError):
        Settings(toss_secret_key="test_ck_client_key").secret_key()


def test_the_secret_key_can_come_from_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "toss-secret"
    key_file.write_text("live_sk_fromafile0000000000\n")
    assert Settings(toss_secret_key_file=key_file).secret_key() == "live_sk_fromafile0000000000"


def test_an_empty_secret_key_file_setting_means_unset() -> None:
    settings = Settings(toss_secret_key_file="", toss_api_base="http://127.0.0.1:8090")
    assert settings.secret_key().startswith("test_sk_")
