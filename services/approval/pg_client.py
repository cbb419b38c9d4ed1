"""The Toss Payments adapter (pg-contract.md): typed results, never an exception for an answer.

Every call returns one of a few dataclasses. Whatever cannot be read as a clear answer — a
timeout, a dropped connection, a 5xx, a body that is not JSON — is :class:`Unknown`: the money
may or may not have moved, and only a later query can tell. The secret key is registered with
the log redactor and appears only in the ``Authorization`` header.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlencode

import httpx
import orjson
from httpx_aiohttp import AiohttpTransport

from services.approval.domain import (
    ErrorClass,
    PgCancel,
    PgPayment,
    PgTransaction,
    error_class,
    lookup_error_class,
)
from services.approval.metrics import (
    PG_CALL_SECONDS,
    PG_CONFIGURATION_ERRORS,
    PG_DECLINES,
    PG_ERRORS,
)
from shared.logging import redact, register_secret

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Approved:
    payment: PgPayment


@dataclass(frozen=True)
class Declined:
    code: str
    message: str


@dataclass(frozen=True)
class Unknown:
    """No clear answer. ``error_class`` says what kind (see ErrorClass): the outcome is unknown,
    the PG says it was probably done already, or it refused us for our own configuration."""

    reason: str
    code: str | None = None
    error_class: ErrorClass = ErrorClass.OUTCOME_UNKNOWN

    @property
    def misconfigured(self) -> bool:
        return self.error_class is ErrorClass.MERCHANT_CONFIGURATION

    @property
    def probably_done(self) -> bool:
        return self.error_class is ErrorClass.PROBABLY_DONE


@dataclass(frozen=True)
class Found:
    payment: PgPayment


@dataclass(frozen=True)
class NotFound:
    code: str


@dataclass(frozen=True)
class Canceled:
    payment: PgPayment


@dataclass(frozen=True)
class Page:
    """A page of the PG's transactions, oldest first."""

    transactions: tuple[PgTransaction, ...]


ConfirmResult = Approved | Declined | Unknown
LookupResult = Found | NotFound | Unknown
CancelResult = Canceled | Declined | Unknown
PageResult = Page | Unknown
Result = ConfirmResult | LookupResult | CancelResult | PageResult
R = TypeVar("R", bound=Result)


@dataclass(frozen=True)
class ConfirmRequest:
    payment_key: str
    order_id: str
    amount: int  # always the stored intent amount, never the presented one
    idempotency_key: str


@dataclass(frozen=True)
class CancelRequest:
    payment_key: str
    reason: str
    amount: int | None  # None cancels the remaining balance
    idempotency_key: str


class PaymentGateway(Protocol):
    """What the approval worker needs from the PG."""

    async def confirm(self, request: ConfirmRequest) -> ConfirmResult: ...

    async def get_payment_by_order(self, order_id: str) -> LookupResult: ...

    async def get_payment(self, payment_key: str) -> LookupResult: ...

    async def get_authentication(self, payment_key: str) -> LookupResult:
        """The payment a presented paymentKey names, asked before it may hold its order (the
        same call as :meth:`get_payment`, counted apart)."""
        ...

    async def cancel(self, request: CancelRequest) -> CancelResult: ...

    async def transactions(
        self, start: str, end: str, starting_after: str | None, limit: int
    ) -> PageResult: ...


# Whatever the transport's own timeouts say, no PG call takes longer than this by default.
DEFAULT_CALL_DEADLINE = 10.0


def basic_auth(secret_key: str) -> str:
    """``Basic base64(secretKey + ":")``: the key is the user name, the password is empty."""
    return "Basic " + base64.b64encode(f"{secret_key}:".encode()).decode()


def build_http_client(
    base_url: str,
    secret_key: str,
    *,
    connect_timeout: float = 3.0,
    read_timeout: float = DEFAULT_CALL_DEADLINE,
    max_connections: int = 100,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The process's one long-lived client for the PG, authenticated, with explicit timeouts."""
    authorization = basic_auth(secret_key)
    register_secret(secret_key)
    register_secret(authorization.removeprefix("Basic "))
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        headers={"Authorization": authorization, "Accept-Language": "en-US"},
        timeout=httpx.Timeout(
            connect=connect_timeout, read=read_timeout, write=10.0, pool=read_timeout
        ),
        # aiohttp's connection handling costs a fifth of httpcore's CPU per request
        # (bench/micro_pg_client.py); its errors arrive as httpx's timeout/transport errors.
        transport=transport or AiohttpTransport(limits=limits),
    )


class TossClient:
    """:class:`PaymentGateway` over HTTP. Holds no state beyond the shared client.

    Every call ends within ``call_deadline`` seconds, connection queueing and retries of the
    transport included (an unanswered call is :class:`Unknown`): a confirm started before the
    confirm deadline is over well before the PG's window closes.
    """

    def __init__(
        self, http: httpx.AsyncClient, call_deadline: float = DEFAULT_CALL_DEADLINE
    ) -> None:
        self._http = http
        self._call_deadline = call_deadline

    async def confirm(self, request: ConfirmRequest) -> ConfirmResult:
        body = {
            "paymentKey": request.payment_key,
            "orderId": request.order_id,
            "amount": request.amount,
        }
        response = await self._send(
            "POST", "/v1/payments/confirm", json=body, idempotency_key=request.idempotency_key
        )
        if isinstance(response, Unknown):
            return response
        if response.status_code == 200:
            return _confirm_success(response)
        return _post_error(response)

    async def get_payment_by_order(self, order_id: str) -> LookupResult:
        return await self._lookup(f"/v1/payments/orders/{quote(order_id, safe='')}")

    async def get_payment(self, payment_key: str) -> LookupResult:
        return await self._lookup(f"/v1/payments/{quote(payment_key, safe='')}")

    async def get_authentication(self, payment_key: str) -> LookupResult:
        return await self.get_payment(payment_key)

    async def cancel(self, request: CancelRequest) -> CancelResult:
        body: dict[str, Any] = {"cancelReason": request.reason}
        if request.amount is not None:
            body["cancelAmount"] = request.amount
        path = f"/v1/payments/{quote(request.payment_key, safe='')}/cancel"
        response = await self._send(
            "POST", path, json=body, idempotency_key=request.idempotency_key
        )
        if isinstance(response, Unknown):
            return response
        if response.status_code == 200:
            payment = parse_payment(_json(response))
            return Canceled(payment) if payment else Unknown("unreadable cancel answer")
        return _post_error(response)

    async def transactions(
        self, start: str, end: str, starting_after: str | None, limit: int
    ) -> PageResult:
        """One page of the day's approvals and cancels (``startDate``/``endDate`` as the
        contract has them, in Asia/Seoul)."""
        query = {"startDate": start, "endDate": end, "limit": str(limit)}
        if starting_after:
            query["startingAfter"] = starting_after
        response = await self._send("GET", f"/v1/transactions?{urlencode(query)}")
        if isinstance(response, Unknown):
            return response
        if response.status_code != 200:
            code, _ = _error_body(response)
            kind = lookup_error_class(response.status_code, code)
            return Unknown(f"transactions answered {response.status_code}", code, kind)
        page = parse_transactions(_json(response))
        return page if page is not None else Unknown("unreadable transactions")

    async def _lookup(self, path: str) -> LookupResult:
        response = await self._send("GET", path)
        if isinstance(response, Unknown):
            return response
        if response.status_code == 200:
            payment = parse_payment(_json(response))
            return Found(payment) if payment else Unknown("unreadable payment")
        code, _ = _error_body(response)
        if response.status_code == 404 and code is not None:
            return NotFound(code)
        kind = lookup_error_class(response.status_code, code)
        return Unknown(f"query answered {response.status_code} {code or ''}".rstrip(), code, kind)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response | Unknown:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        try:
            async with asyncio.timeout(self._call_deadline):
                return await self._http.request(method, path, json=json, headers=headers)
        except TimeoutError:
            return Unknown(f"no answer within {self._call_deadline:g} s")
        except httpx.TimeoutException as exc:
            return Unknown(f"timeout ({type(exc).__name__})")
        except httpx.TransportError as exc:
            return Unknown(f"transport error ({type(exc).__name__})")


def _confirm_success(response: httpx.Response) -> ConfirmResult:
    payment = parse_payment(_json(response))
    if payment is None:
        return Unknown("unreadable confirm answer")
    # A 200 from confirm is an approval only if the payment says DONE.
    if payment.status == "DONE":
        return Approved(payment)
    return Unknown(f"confirm answered status {payment.status}")


def _post_error(response: httpx.Response) -> Declined | Unknown:
    code, message = _error_body(response)
    kind = error_class(response.status_code, code)
    if kind is ErrorClass.DECLINED:
        assert code is not None
        return Declined(code, message)
    reason = f"PG answered {response.status_code} {code or '(unreadable body)'}"
    return Unknown(reason, code, kind)


def _json(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


def _error_body(response: httpx.Response) -> tuple[str | None, str]:
    body = _json(response)
    if not isinstance(body, dict) or not isinstance(body.get("code"), str):
        return None, ""
    message = body.get("message")
    # The PG's words travel on in events and pages: never with a registered secret in them.
    return body["code"], redact(message) if isinstance(message, str) else ""


def parse_payment(body: Any) -> PgPayment | None:
    """The PG's Payment object, or None if the body is not one."""
    if not isinstance(body, dict):
        return None
    try:
        failure = body.get("failure") or {}
        return PgPayment(
            payment_key=_str(body["paymentKey"]),
            order_id=_str(body["orderId"]),
            status=_str(body["status"]),
            total_amount=_int(body["totalAmount"]),
            balance_amount=_int(body.get("balanceAmount", body["totalAmount"])),
            method=body.get("method") if isinstance(body.get("method"), str) else None,
            approved_at=_datetime(body.get("approvedAt")),
            failure_code=failure.get("code") if isinstance(failure, dict) else None,
            failure_message=_failure_message(failure),
            cancels=tuple(_cancel(c) for c in body.get("cancels") or ()),
            currency=_str(body.get("currency") or "KRW"),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def parse_transactions(body: Any) -> Page | None:
    """The PG's array of transactions, or None if the body is not one."""
    if not isinstance(body, list):
        return None
    try:
        return Page(tuple(_transaction(raw) for raw in body))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _transaction(raw: Any) -> PgTransaction:
    at = _datetime(raw["transactionAt"])
    if at is None:
        raise ValueError("transactionAt is not a time")
    return PgTransaction(
        transaction_key=_str(raw["transactionKey"]),
        payment_key=_str(raw["paymentKey"]),
        order_id=_str(raw["orderId"]),
        status=_str(raw["status"]),
        amount=abs(_int(raw["amount"])),
        transaction_at=at,
        currency=_str(raw.get("currency") or "KRW"),
    )


def _failure_message(failure: Any) -> str | None:
    message = failure.get("message") if isinstance(failure, dict) else None
    return redact(message) if isinstance(message, str) else None


def _cancel(raw: Any) -> PgCancel:
    if not isinstance(raw, dict):
        raise TypeError("cancel is not an object")
    return PgCancel(
        cancel_amount=_int(raw["cancelAmount"]),
        cancel_reason=str(raw.get("cancelReason") or ""),
        canceled_at=_datetime(raw.get("canceledAt")),
        transaction_key=raw.get("transactionKey")
        if isinstance(raw.get("transactionKey"), str)
        else None,
    )


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError("expected a number")
    number = float(value)
    if number != int(number):
        raise ValueError("expected an integer amount")
    return int(number)


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


class MeteredGateway:
    """A :class:`PaymentGateway` that times every call and counts what was not a clear answer,
    by endpoint and error class; a refusal for our own configuration is also logged as an
    error (an operator must act)."""

    def __init__(self, gateway: PaymentGateway) -> None:
        self._gateway = gateway

    async def confirm(self, request: ConfirmRequest) -> ConfirmResult:
        return await self._timed("confirm", self._gateway.confirm(request))

    async def get_payment_by_order(self, order_id: str) -> LookupResult:
        return await self._timed("lookup_by_order", self._gateway.get_payment_by_order(order_id))

    async def get_payment(self, payment_key: str) -> LookupResult:
        return await self._timed("lookup_by_key", self._gateway.get_payment(payment_key))

    async def get_authentication(self, payment_key: str) -> LookupResult:
        call = self._gateway.get_authentication(payment_key)
        return await self._timed("authentication", call)

    async def cancel(self, request: CancelRequest) -> CancelResult:
        return await self._timed("cancel", self._gateway.cancel(request))

    async def transactions(
        self, start: str, end: str, starting_after: str | None, limit: int
    ) -> PageResult:
        page = self._gateway.transactions(start, end, starting_after, limit)
        return await self._timed("transactions", page)

    async def _timed(self, endpoint: str, call: Awaitable[R]) -> R:
        started = time.perf_counter()
        result = await call
        PG_CALL_SECONDS.labels(endpoint, _outcome(result)).observe(time.perf_counter() - started)
        if isinstance(result, Declined):
            PG_DECLINES.labels(endpoint, result.code).inc()
        if isinstance(result, Unknown):
            PG_ERRORS.labels(endpoint, result.error_class.name, result.code or "").inc()
            if result.misconfigured:
                PG_CONFIGURATION_ERRORS.labels(endpoint, result.code or "").inc()
                log.error(
                    "the PG refused us for our own configuration",
                    extra={"endpoint": endpoint, "code": result.code},
                )
        return result


def _outcome(result: Result) -> str:
    if isinstance(result, Unknown):
        return result.error_class.name.lower()
    if isinstance(result, Declined):
        return "declined"
    if isinstance(result, NotFound):
        return "not_found"
    return "ok"
