"""Checkout's rules: what a PG redirect must look like, and what recording one announces.

Everything here is pure. A redirect is browser-controlled input, so every parameter is checked
against the PG contract's field rules before anything is stored or published; a malformed
redirect becomes :class:`InvalidRedirect`, listing each offending parameter.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.events import PaymentAuthenticated, PaymentAuthenticationFailed

ORDER_ID = re.compile(r"[A-Za-z0-9_-]{6,64}")
AMOUNT = re.compile(r"[0-9]{1,12}")
ERROR_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,99}")
PAYMENT_TYPES = frozenset({"NORMAL", "BRANDPAY", "KEYIN"})
MAX_PAYMENT_KEY = 200
MAX_MESSAGE = 500
# Far above any card payment (Toss caps single card payments well below this).
MAX_AMOUNT = 1_000_000_000
MAX_USER_AGENT = 512
BUYER_CANCELED = "PAY_PROCESS_CANCELED"

# What a buyer is told about a fail redirect: the shop's words for the PG's code, never the
# redirect's own message (anyone can write a fail URL; its text must not speak for the shop).
FAIL_MESSAGES: dict[str, str] = {
    BUYER_CANCELED: "You closed the payment window; nothing was charged.",
    "PAY_PROCESS_ABORTED": "The payment was interrupted; nothing was charged.",
    "REJECT_CARD_COMPANY": "The card company declined the payment; nothing was charged.",
}
UNKNOWN_FAILURE = "The payment was not completed; nothing was charged."


def buyer_message(code: str) -> str:
    return FAIL_MESSAGES.get(code, UNKNOWN_FAILURE)


@dataclass(frozen=True)
class FieldError:
    """One parameter and what is wrong with it, in words a buyer can read."""

    field: str
    reason: str


class InvalidRedirect(ValueError):
    """The redirect's parameters break the contract; nothing may be recorded or published."""

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(f"{e.field}: {e.reason}" for e in self.errors))

    @property
    def fields(self) -> set[str]:
        return {e.field for e in self.errors}


class Outcome(StrEnum):
    """What recording a redirect amounted to."""

    FIRST = "first"  # new: recorded and announced
    HELD = "held"  # new, for an order not placed (yet): recorded, announced once it is placed
    REPEAT = "repeat"  # the same redirect again (refresh, double click): nothing new
    CONFLICT = "conflict"  # a known paymentKey with different details: suspicious, not announced


@dataclass(frozen=True)
class Receipt:
    """Where and when a redirect arrived (for the event and the audit trail)."""

    received_at: datetime
    client_ip: str | None
    user_agent: str | None


@dataclass(frozen=True)
class SuccessRedirect:
    payment_key: str
    order_id: str
    amount: int
    payment_type: str

    def authenticated(self, receipt: Receipt) -> PaymentAuthenticated:
        return PaymentAuthenticated(
            correlation_id=self.order_id,
            order_id=self.order_id,
            payment_key=self.payment_key,
            amount=self.amount,
            payment_type=self.payment_type,
            received_at=receipt.received_at,
            client_ip=receipt.client_ip,
            user_agent=receipt.user_agent,
        )


@dataclass(frozen=True)
class FailRedirect:
    code: str
    message: str  # as the browser sent it: kept for the audit trail, never shown or announced
    order_id: str | None

    @property
    def buyer_message(self) -> str:
        return buyer_message(self.code)

    def authentication_failed(self) -> PaymentAuthenticationFailed | None:
        """The event to announce, or None when there is no order to tell (buyer closed window)."""
        if self.order_id is None:
            return None
        return PaymentAuthenticationFailed(
            correlation_id=self.order_id,
            order_id=self.order_id,
            code=self.code,
            message=self.buyer_message,
        )


class _Params:
    """Query parameters as (name, value) pairs; collects errors instead of stopping at one."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in pairs:
            self._values.setdefault(name, []).append(value)
        self.errors: list[FieldError] = []

    def fail(self, field: str, reason: str) -> None:
        self.errors.append(FieldError(field, reason))

    def get(self, name: str, *, required: bool) -> str | None:
        """The single value of ``name``; '' counts as absent."""
        values = self._values.get(name, [])
        if len(values) > 1:
            self.fail(name, "is given more than once")
            return None
        value = values[0] if values else ""
        if value == "":
            if required:
                self.fail(name, "is missing")
            return None
        return value

    def raise_if_invalid(self) -> None:
        if self.errors:
            raise InvalidRedirect(self.errors)


def _has_control_characters(text: str) -> bool:
    return any(not ch.isprintable() and ch != " " for ch in text)


def _check_order_id(params: _Params, value: str | None) -> None:
    if value is not None and not ORDER_ID.fullmatch(value):
        params.fail("orderId", "must be 6 to 64 letters, digits, '-' or '_'")


def _check_payment_key(params: _Params, value: str | None) -> None:
    if value is None:
        return
    if len(value) > MAX_PAYMENT_KEY:
        params.fail("paymentKey", f"must be at most {MAX_PAYMENT_KEY} characters")
    elif any(ch.isspace() or not ch.isprintable() for ch in value):
        params.fail("paymentKey", "must not contain spaces or control characters")


def _parse_amount(params: _Params, value: str | None) -> int:
    if value is None:
        return 0
    if not AMOUNT.fullmatch(value):
        params.fail("amount", "must be a whole number of won, digits only")
        return 0
    amount = int(value)
    if not 0 < amount <= MAX_AMOUNT:
        params.fail("amount", f"must be between 1 and {MAX_AMOUNT:,} won")
    return amount


def _check_payment_type(params: _Params, value: str | None) -> None:
    if value is not None and value not in PAYMENT_TYPES:
        params.fail("paymentType", "must be one of " + ", ".join(sorted(PAYMENT_TYPES)))


def parse_success(pairs: Iterable[tuple[str, str]]) -> SuccessRedirect:
    """The success redirect ``paymentKey``, ``orderId``, ``amount``, ``paymentType``, checked."""
    params = _Params(pairs)
    payment_key = params.get("paymentKey", required=True)
    order_id = params.get("orderId", required=True)
    raw_amount = params.get("amount", required=True)
    payment_type = params.get("paymentType", required=True)
    _check_payment_key(params, payment_key)
    _check_order_id(params, order_id)
    amount = _parse_amount(params, raw_amount)
    _check_payment_type(params, payment_type)
    if params.errors or payment_key is None or order_id is None or payment_type is None:
        raise InvalidRedirect(params.errors)
    return SuccessRedirect(payment_key, order_id, amount, payment_type)


def _check_code(params: _Params, value: str | None) -> None:
    if value is not None and not ERROR_CODE.fullmatch(value):
        params.fail("code", "must be an UPPER_SNAKE_CASE code of at most 100 characters")


def _check_message(params: _Params, value: str) -> None:
    if len(value) > MAX_MESSAGE:
        params.fail("message", f"must be at most {MAX_MESSAGE} characters")
    elif _has_control_characters(value):
        params.fail("message", "must not contain control characters")


def parse_fail(pairs: Iterable[tuple[str, str]]) -> FailRedirect:
    """The fail redirect ``code``, ``message`` and optional ``orderId``, checked."""
    params = _Params(pairs)
    code = params.get("code", required=True)
    message = params.get("message", required=False) or ""
    order_id = params.get("orderId", required=False)
    _check_code(params, code)
    _check_message(params, message)
    _check_order_id(params, order_id)
    if params.errors or code is None:
        raise InvalidRedirect(params.errors)
    return FailRedirect(code, message, order_id)


@dataclass(frozen=True)
class ResultQuery:
    """What the result page was asked to show: an order, and possibly a failure already known."""

    order_id: str | None
    failure: FailRedirect | None
    payment_key: str | None = None  # the attempt this page follows, when it came from a success


def parse_result(pairs: Iterable[tuple[str, str]]) -> ResultQuery:
    """``orderId`` (to follow), or a failure's ``code``/``message`` (to show), or both."""
    pairs = list(pairs)
    params = _Params(pairs)
    order_id = params.get("orderId", required=False)
    code = params.get("code", required=False)
    payment_key = params.get("paymentKey", required=False)
    _check_order_id(params, order_id)
    _check_payment_key(params, payment_key)
    if order_id is None and code is None:
        params.fail("orderId", "is missing")
    params.raise_if_invalid()
    failure = parse_fail(pairs) if code is not None else None
    return ResultQuery(order_id, failure, payment_key)


def client_ip(real_ip: str | None, forwarded_for: str | None, peer: str | None) -> str | None:
    """The buyer's address: the gateway's X-Real-IP, else the first X-Forwarded-For, else the peer.

    Only well-formed IP addresses are kept; this is for the audit trail, never for a decision.
    """
    first_forwarded = (forwarded_for or "").split(",")[0]
    for candidate in (real_ip, first_forwarded, peer):
        address = _ip_or_none(candidate)
        if address is not None:
            return address
    return None


def _ip_or_none(text: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address((text or "").strip()))
    except ValueError:
        return None


def clean_user_agent(user_agent: str | None) -> str | None:
    if not user_agent:
        return None
    printable = "".join(ch for ch in user_agent if ch.isprintable())
    return printable[:MAX_USER_AGENT] or None


@dataclass(frozen=True)
class Conflict:
    """A known paymentKey presented again with other details (for operators)."""

    received_at: datetime
    payment_key: str
    recorded: SuccessRedirect
    presented: SuccessRedirect
    client_ip: str | None
    user_agent: str | None
