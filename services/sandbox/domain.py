"""The sandbox PG's rules, without I/O: statuses, transitions, clock, errors, the Payment object.

Everything here follows ``pg-contract.md``. Time is passed in (``now``) so the rules are tested
without waiting; the clock scale divides every PG duration (10-minute confirm window, 30-minute
window validity, webhook retry schedule) so expiry can be tested in seconds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

API_VERSION = "2022-11-16"
KST = timezone(timedelta(hours=9))
CONFIRM_WINDOW = timedelta(minutes=10)
WINDOW_VALIDITY = timedelta(minutes=30)
WEBHOOK_RETRY_MINUTES = (1, 4, 16, 64, 256, 1024, 4096)
IDEMPOTENCY_KEY_MAX = 300
DEFAULT_TEST_CARD = "4330123412341234"
MIN_CARD_AMOUNT = 100


class Status(StrEnum):
    READY = "READY"
    IN_PROGRESS = "IN_PROGRESS"
    DONE = "DONE"
    CANCELED = "CANCELED"
    PARTIAL_CANCELED = "PARTIAL_CANCELED"
    ABORTED = "ABORTED"
    EXPIRED = "EXPIRED"


OPEN_STATUSES = frozenset({Status.READY, Status.IN_PROGRESS})
APPROVED_STATUSES = frozenset({Status.DONE, Status.CANCELED, Status.PARTIAL_CANCELED})
# Statuses announced with a PAYMENT_STATUS_CHANGED webhook.
WEBHOOK_STATUSES = frozenset(
    {Status.DONE, Status.ABORTED, Status.EXPIRED, Status.CANCELED, Status.PARTIAL_CANCELED}
)


# ---------------------------------------------------------------- errors


@dataclass(frozen=True)
class ErrorSpec:
    status: int
    korean: str
    english: str


ERRORS: dict[str, ErrorSpec] = {
    "ALREADY_PROCESSED_PAYMENT": ErrorSpec(
        400, "이미 처리된 결제 입니다.", "This payment has already been processed."
    ),
    "PROVIDER_ERROR": ErrorSpec(
        400,
        "일시적인 오류가 발생했습니다. 잠시 후 다시 시도해주세요.",
        "A temporary error occurred.",
    ),
    "INVALID_REQUEST": ErrorSpec(400, "잘못된 요청입니다.", "The request is invalid."),
    "INVALID_API_KEY": ErrorSpec(
        400, "잘못된 시크릿키 연동 정보 입니다.", "The secret key is not valid for this request."
    ),
    "INVALID_CARD_EXPIRATION": ErrorSpec(
        400, "카드 정보를 다시 확인해주세요. (유효기간)", "Check the card's expiry date."
    ),
    "INVALID_STOPPED_CARD": ErrorSpec(400, "정지된 카드 입니다.", "The card has been suspended."),
    "INVALID_CARD_LOST_OR_STOLEN": ErrorSpec(
        400, "분실 혹은 도난 카드입니다.", "The card was reported lost or stolen."
    ),
    "INVALID_CARD_NUMBER": ErrorSpec(
        400, "카드번호를 다시 확인해주세요.", "Check the card number."
    ),
    "EXCEED_MAX_DAILY_PAYMENT_COUNT": ErrorSpec(
        400, "하루 결제 가능 횟수를 초과했습니다.", "The daily payment count limit was exceeded."
    ),
    "EXCEED_MAX_PAYMENT_AMOUNT": ErrorSpec(
        400, "하루 결제 가능 금액을 초과했습니다.", "The maximum payment amount was exceeded."
    ),
    "BELOW_MINIMUM_AMOUNT": ErrorSpec(
        400,
        "신용카드는 결제금액이 100원 이상이어야 합니다.",
        "Card payments need at least 100 KRW.",
    ),
    "CARD_PROCESSING_ERROR": ErrorSpec(
        400, "카드사에서 오류가 발생했습니다.", "The card company had an error."
    ),
    "INVALID_REJECT_CARD": ErrorSpec(400, "카드 사용이 거절되었습니다.", "The card was declined."),
    "NOT_AVAILABLE_PAYMENT": ErrorSpec(
        400, "결제가 불가능한 시간대입니다.", "Payments are not available at this time."
    ),
    "INVALID_IDEMPOTENCY_KEY": ErrorSpec(
        400, "멱등키가 올바르지 않습니다. (최대 300자)", "The idempotency key is invalid (max 300)."
    ),
    "ALREADY_CANCELED_PAYMENT": ErrorSpec(
        400, "이미 취소된 결제 입니다.", "This payment has already been canceled."
    ),
    "UNAUTHORIZED_KEY": ErrorSpec(
        401,
        "인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다.",
        "Unauthorized secret or client key.",
    ),
    "REJECT_CARD_PAYMENT": ErrorSpec(
        403, "한도초과 혹은 잔액부족으로 결제에 실패했습니다.", "Declined: limit or balance."
    ),
    "REJECT_ACCOUNT_PAYMENT": ErrorSpec(
        403, "잔액부족으로 결제에 실패했습니다.", "Declined: insufficient balance."
    ),
    "FORBIDDEN_REQUEST": ErrorSpec(403, "허용되지 않은 요청입니다.", "The request is not allowed."),
    "INCORRECT_BASIC_AUTH_FORMAT": ErrorSpec(
        403,
        "잘못된 요청입니다. ':' 를 포함해 인코딩해주세요.",
        "Malformed Basic auth: encode the key followed by ':'.",
    ),
    "FDS_ERROR": ErrorSpec(
        403, "위험거래가 감지되어 결제가 제한됩니다.", "A risky transaction was detected."
    ),
    "EXCEED_MAX_ONE_DAY_AMOUNT": ErrorSpec(
        403, "일일 한도를 초과했습니다.", "The daily amount limit was exceeded."
    ),
    "NOT_CANCELABLE_AMOUNT": ErrorSpec(
        403, "취소 할 수 없는 금액 입니다.", "The amount cannot be canceled."
    ),
    "NOT_CANCELABLE_PAYMENT": ErrorSpec(
        403, "취소 할 수 없는 결제 입니다.", "The payment cannot be canceled."
    ),
    "NOT_FOUND_PAYMENT": ErrorSpec(
        404, "존재하지 않는 결제 정보 입니다.", "The payment does not exist."
    ),
    "NOT_FOUND_PAYMENT_SESSION": ErrorSpec(
        404,
        "결제 시간이 만료되어 결제 진행 데이터가 존재하지 않습니다.",
        "The payment session expired or does not exist.",
    ),
    "NOT_FOUND": ErrorSpec(404, "존재하지 않는 경로입니다.", "Not found."),
    "METHOD_NOT_ALLOWED": ErrorSpec(405, "허용되지 않는 메소드입니다.", "Method not allowed."),
    "IDEMPOTENT_REQUEST_PROCESSING": ErrorSpec(
        409, "이전 멱등 요청이 처리중입니다.", "A request with this idempotency key is in progress."
    ),
    "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING": ErrorSpec(
        500, "결제가 완료되지 않았어요. 다시 시도해주세요.", "The payment did not complete."
    ),
    "FAILED_INTERNAL_SYSTEM_PROCESSING": ErrorSpec(
        500, "내부 시스템 처리 작업이 실패했습니다.", "Internal processing failed."
    ),
    "UNKNOWN_PAYMENT_ERROR": ErrorSpec(
        500, "결제에 실패했어요. 같은 문제가 반복된다면 문의해주세요.", "The payment failed."
    ),
}

# Codes after which the caller cannot know the outcome (pg-contract.md): an answer carrying one
# of them is not kept for idempotent replay, so a retry with the same key is tried afresh.
UNKNOWN_OUTCOME_CODES = frozenset(
    {"PROVIDER_ERROR", "CARD_PROCESSING_ERROR", "IDEMPOTENT_REQUEST_PROCESSING"}
)


class PgError(Exception):
    """An answer in the PG's error shape: ``{"code", "message"}`` with the code's status."""

    def __init__(self, code: str, detail: str | None = None) -> None:
        if code not in ERRORS:
            raise ValueError(f"unknown PG error code {code}")
        super().__init__(code)
        self.code = code
        self.detail = detail

    @property
    def status(self) -> int:
        return ERRORS[self.code].status

    def message(self, english: bool = False) -> str:
        spec = ERRORS[self.code]
        text = spec.english if english else spec.korean
        return f"{text} ({self.detail})" if self.detail else text

    def body(self, english: bool = False) -> dict[str, str]:
        return {"code": self.code, "message": self.message(english)}

    @property
    def replayable(self) -> bool:
        """Whether an idempotent replay should answer this again (definitive outcomes only)."""
        return self.status < 500 and self.code not in UNKNOWN_OUTCOME_CODES


def wants_english(accept_language: str | None) -> bool:
    return bool(accept_language) and str(accept_language).lower().startswith("en")


# ---------------------------------------------------------------- authentication


def secret_key_from_basic_auth(header: str | None, known_keys: frozenset[str]) -> str:
    """The secret key of an ``Authorization: Basic base64(key + ":")`` header, if it is known."""
    if not header:
        raise PgError("UNAUTHORIZED_KEY")
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise PgError("UNAUTHORIZED_KEY")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise PgError("INCORRECT_BASIC_AUTH_FORMAT") from None
    key, colon, _ = decoded.partition(":")
    if not colon:
        raise PgError("INCORRECT_BASIC_AUTH_FORMAT")
    if key not in known_keys:
        raise PgError("UNAUTHORIZED_KEY")
    return key


def is_test_key(secret_key: str) -> bool:
    return secret_key.startswith("test_")


def test_code_error(secret_key: str, test_code: str | None) -> PgError | None:
    """The error a ``TossPayments-Test-Code`` header asks for (test keys only)."""
    if not test_code or not is_test_key(secret_key):
        return None
    code = test_code.strip().upper()
    if code not in ERRORS:
        return PgError("INVALID_REQUEST", f"unknown TossPayments-Test-Code {code[:60]}")
    return PgError(code)


def secret_digest(secret_key: str) -> str:
    """What the database keeps instead of a secret key."""
    return hashlib.sha256(secret_key.encode()).hexdigest()


def check_idempotency_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key or len(key) > IDEMPOTENCY_KEY_MAX:
        raise PgError("INVALID_IDEMPOTENCY_KEY")
    return key


# ---------------------------------------------------------------- clock and faults


@dataclass(frozen=True)
class Faults:
    """The misbehaviour knobs; the defaults mean none."""

    confirm_latency_ms: int = 0
    drop_response_rate: float = 0.0
    error_rate: float = 0.0
    error_code: str = "PROVIDER_ERROR"
    clock_scale: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "confirmLatencyMs": self.confirm_latency_ms,
            "dropResponseRate": self.drop_response_rate,
            "errorRate": self.error_rate,
            "errorCode": self.error_code,
            "clockScale": self.clock_scale,
        }

    def scaled(self, duration: timedelta) -> timedelta:
        return duration / self.clock_scale


_FAULT_FIELDS = {
    "confirmLatencyMs": "confirm_latency_ms",
    "dropResponseRate": "drop_response_rate",
    "errorRate": "error_rate",
    "errorCode": "error_code",
    "clockScale": "clock_scale",
}


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PgError("INVALID_REQUEST", f"{name} must be a number")
    if not low <= value <= high:
        raise PgError("INVALID_REQUEST", f"{name} must be between {low} and {high}")
    return float(value)


def update_faults(current: Faults, changes: Any) -> Faults:
    """``current`` with the fields of a ``PUT /sandbox/faults`` body applied (all validated)."""
    if not isinstance(changes, dict):
        raise PgError("INVALID_REQUEST", "the body must be a JSON object")
    unknown = sorted(set(changes) - set(_FAULT_FIELDS))
    if unknown:
        raise PgError("INVALID_REQUEST", f"unknown fault {unknown[0][:40]}")
    values: dict[str, Any] = {}
    for name, value in changes.items():
        values[_FAULT_FIELDS[name]] = _fault_value(name, value)
    return replace(current, **values)


def _fault_value(name: str, value: Any) -> Any:
    if name == "confirmLatencyMs":
        latency = _number(name, value, 0, 120_000)
        if latency != int(latency):
            raise PgError("INVALID_REQUEST", f"{name} must be an integer")
        return int(latency)
    if name in ("dropResponseRate", "errorRate"):
        return _number(name, value, 0.0, 1.0)
    if name == "clockScale":
        return _number(name, value, 0.001, 1_000_000)
    if not isinstance(value, str) or value not in ERRORS:
        raise PgError("INVALID_REQUEST", f"{name} must be a documented error code")
    return value


def webhook_retry_delay(retries_done: int, faults: Faults) -> timedelta | None:
    """How long to wait before retry number ``retries_done + 1``; None when retries are spent."""
    if retries_done >= len(WEBHOOK_RETRY_MINUTES):
        return None
    return faults.scaled(timedelta(minutes=WEBHOOK_RETRY_MINUTES[retries_done]))


# ---------------------------------------------------------------- field rules

_ORDER_ID = re.compile(r"[A-Za-z0-9_-]{6,64}")
_CUSTOMER_KEY = re.compile(r"[A-Za-z0-9\-_=.@]{2,50}")
_EMAIL = re.compile(r"[^@]+@[^@]+\.[^@]+")
_INTEGER = re.compile(r"[0-9]{1,15}")


class InvalidField(ValueError):
    """A payment window field breaks the contract's field rules."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field_name = field_name
        self.reason = reason


def check_order_id(value: Any) -> str:
    if not isinstance(value, str) or not _ORDER_ID.fullmatch(value):
        raise InvalidField("orderId", "6-64 characters of A-Z a-z 0-9 - _")
    return value


def parse_amount(value: Any) -> int:
    """A positive integer amount, given as a number or a numeric string."""
    if isinstance(value, bool):
        raise InvalidField("amount", "must be a positive integer")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        value = int(value.strip())
    if not isinstance(value, int) or value <= 0 or value > 10**12:
        raise InvalidField("amount", "must be a positive integer")
    return value


def check_card_amount(value: Any) -> int:
    amount = parse_amount(value)
    if amount < MIN_CARD_AMOUNT:
        raise InvalidField("amount", f"card payments need at least {MIN_CARD_AMOUNT}")
    return amount


def check_order_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 100:
        raise InvalidField("orderName", "1-100 characters")
    return value


def check_customer_key(value: Any) -> str:
    if not isinstance(value, str) or not _CUSTOMER_KEY.fullmatch(value):
        raise InvalidField("customerKey", "2-50 characters of letters, digits and - _ = . @")
    if _EMAIL.fullmatch(value) or value.isdigit():
        raise InvalidField("customerKey", "must be unguessable (no e-mail, phone or sequence)")
    return value


def check_redirect_url(field_name: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > 2000:
        raise InvalidField(field_name, "an absolute http(s) URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidField(field_name, "an absolute http(s) URL")
    return value


def check_payment_key(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 200:
        raise PgError("INVALID_REQUEST", "paymentKey must be 1-200 characters")
    return value


def check_cancel_reason(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise PgError("INVALID_REQUEST", "cancelReason must be 1-200 characters")
    return value


@dataclass(frozen=True)
class WindowRequest:
    """The fields the payment window was opened with (or posted), checked."""

    client_key: str
    customer_key: str
    order_id: str
    order_name: str
    amount: int
    success_url: str
    fail_url: str


def check_window_request(fields: dict[str, str], client_keys: frozenset[str]) -> WindowRequest:
    """The window's fields, or :class:`InvalidField` for the first that breaks a rule."""
    client_key = fields.get("clientKey", "")
    if client_key not in client_keys:
        raise InvalidField("clientKey", "not a known client key")
    return WindowRequest(
        client_key=client_key,
        customer_key=check_customer_key(fields.get("customerKey")),
        order_id=check_order_id(fields.get("orderId")),
        order_name=check_order_name(fields.get("orderName")),
        amount=check_card_amount(fields.get("amount")),
        success_url=check_redirect_url("successUrl", fields.get("successUrl")),
        fail_url=check_redirect_url("failUrl", fields.get("failUrl")),
    )


# ---------------------------------------------------------------- cards

# Card numbers starting with these prefixes are refused in the window (documented in README).
REJECT_PREFIXES: dict[str, tuple[str, str]] = {
    "9999": ("REJECT_CARD_COMPANY", "카드사에서 결제를 거절했습니다. (sandbox reject card)"),
    "9998": ("PAY_PROCESS_ABORTED", "결제가 중단되었습니다. (sandbox aborted card)"),
}


def normalize_card_number(raw: str | None) -> str:
    """Digits only; the default test card when empty. :class:`InvalidField` when not 13-19."""
    digits = re.sub(r"[\s-]", "", raw or "") or DEFAULT_TEST_CARD
    if not digits.isdigit() or not 13 <= len(digits) <= 19:
        raise InvalidField("cardNumber", "13-19 digits")
    return digits


def card_rejection(card_number: str) -> tuple[str, str] | None:
    """(fail code, message) when the card is one of the documented rejecting test cards."""
    for prefix, outcome in REJECT_PREFIXES.items():
        if card_number.startswith(prefix):
            return outcome
    return None


def mask_card(card_number: str) -> str:
    """Like Toss: the first 8 digits, stars, and one more digit near the end."""
    head, tail = card_number[:8], card_number[-4:-1]
    return f"{head}{'*' * (len(card_number) - 12)}{tail}*"


# ---------------------------------------------------------------- the payment


def new_payment_key() -> str:
    return "tsbx_" + secrets.token_urlsafe(30)[:40]


def new_transaction_key() -> str:
    return "txrd_" + secrets.token_hex(16)


@dataclass
class Payment:
    """One payment as the sandbox keeps it."""

    payment_key: str
    order_id: str
    order_name: str
    customer_key: str
    total_amount: int
    balance_amount: int
    status: Status
    secret: str
    requested_at: datetime
    expires_at: datetime
    card_number: str | None = None
    authenticated_at: datetime | None = None
    approved_at: datetime | None = None
    last_transaction_key: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    cancels: list[dict[str, Any]] = field(default_factory=list)
    confirm_calls: int = 0
    approvals: int = 0
    last_confirm_idempotency_key: str | None = None


def open_window(request: WindowRequest, now: datetime, faults: Faults) -> Payment:
    """A READY payment for a window just opened; valid for 30 (scaled) minutes."""
    return Payment(
        payment_key=new_payment_key(),
        order_id=request.order_id,
        order_name=request.order_name,
        customer_key=request.customer_key,
        total_amount=request.amount,
        balance_amount=request.amount,
        status=Status.READY,
        secret="ps_" + secrets.token_urlsafe(18),
        requested_at=now,
        expires_at=now + faults.scaled(WINDOW_VALIDITY),
    )


def authenticate(
    payment: Payment, request: WindowRequest, card_number: str, now: datetime, faults: Faults
) -> None:
    """The buyer passed the window: IN_PROGRESS for the amount the browser sent, 10 minutes."""
    if payment.status is not Status.READY:
        raise PgError("NOT_FOUND_PAYMENT_SESSION", "the window is no longer open")
    payment.status = Status.IN_PROGRESS
    payment.order_name = request.order_name
    payment.total_amount = payment.balance_amount = request.amount
    payment.card_number = mask_card(card_number)
    payment.authenticated_at = now
    payment.expires_at = now + faults.scaled(CONFIRM_WINDOW)


def reject_in_window(payment: Payment, code: str, message: str) -> None:
    payment.status = Status.ABORTED
    payment.failure_code, payment.failure_message = code, message


def expire_if_due(payment: Payment, now: datetime) -> bool:
    """Mark an open payment EXPIRED once its deadline has passed; True when that happened."""
    if payment.status in OPEN_STATUSES and now >= payment.expires_at:
        payment.status = Status.EXPIRED
        payment.failure_code = "EXPIRED_PAYMENT"
        payment.failure_message = "결제 유효 시간이 만료되었습니다."
        return True
    return False


@dataclass(frozen=True)
class ConfirmRequest:
    payment_key: str
    order_id: str
    amount: int


def parse_confirm_body(body: Any) -> ConfirmRequest:
    if not isinstance(body, dict):
        raise PgError("INVALID_REQUEST", "the body must be a JSON object")
    try:
        amount = parse_amount(body.get("amount"))
    except InvalidField as exc:
        raise PgError("INVALID_REQUEST", exc.reason) from None
    order_id = body.get("orderId")
    if not isinstance(order_id, str) or not _ORDER_ID.fullmatch(order_id):
        raise PgError("INVALID_REQUEST", "orderId: 6-64 characters of A-Z a-z 0-9 - _")
    return ConfirmRequest(check_payment_key(body.get("paymentKey")), order_id, amount)


def confirm(payment: Payment, request: ConfirmRequest, now: datetime) -> None:
    """Approve ``payment`` for ``request``, or raise the contract's error and change nothing.

    The caller has already expired the payment if it was due (see :func:`expire_if_due`).
    """
    if payment.status in APPROVED_STATUSES:
        raise PgError("ALREADY_PROCESSED_PAYMENT")
    if payment.status is not Status.IN_PROGRESS:
        raise PgError("NOT_FOUND_PAYMENT_SESSION")
    if request.order_id != payment.order_id:
        raise PgError("FORBIDDEN_REQUEST", "orderId differs from the authenticated one")
    if request.amount != payment.total_amount:
        raise PgError("INVALID_REQUEST", "amount differs from the authenticated amount")
    payment.status = Status.DONE
    payment.approved_at = now
    payment.approvals += 1
    payment.last_transaction_key = new_transaction_key()


def abort(payment: Payment, error: PgError) -> None:
    """A definitive decline at confirm: the payment ends ABORTED with the failure."""
    payment.status = Status.ABORTED
    payment.failure_code, payment.failure_message = error.code, error.message()


@dataclass(frozen=True)
class CancelRequest:
    reason: str
    amount: int | None


def parse_cancel_body(body: Any) -> CancelRequest:
    if not isinstance(body, dict):
        raise PgError("INVALID_REQUEST", "the body must be a JSON object")
    reason = check_cancel_reason(body.get("cancelReason"))
    raw_amount = body.get("cancelAmount")
    if raw_amount is None:
        return CancelRequest(reason, None)
    try:
        return CancelRequest(reason, parse_amount(raw_amount))
    except InvalidField:
        raise PgError("INVALID_REQUEST", "cancelAmount must be a positive integer") from None


def cancel(payment: Payment, request: CancelRequest, now: datetime) -> None:
    """Refund all (no amount) or part of what is left; appends to ``cancels``."""
    if payment.status is Status.CANCELED:
        raise PgError("ALREADY_CANCELED_PAYMENT")
    if payment.status not in (Status.DONE, Status.PARTIAL_CANCELED):
        raise PgError("NOT_CANCELABLE_PAYMENT")
    amount = payment.balance_amount if request.amount is None else request.amount
    if amount > payment.balance_amount:
        raise PgError("NOT_CANCELABLE_AMOUNT")
    payment.balance_amount -= amount
    payment.last_transaction_key = new_transaction_key()
    payment.cancels = [*payment.cancels, _cancel_entry(payment, request.reason, amount, now)]
    payment.status = Status.CANCELED if payment.balance_amount == 0 else Status.PARTIAL_CANCELED


def _cancel_entry(payment: Payment, reason: str, amount: int, now: datetime) -> dict[str, Any]:
    return {
        "transactionKey": payment.last_transaction_key,
        "cancelReason": reason,
        "taxExemptionAmount": 0,
        "canceledAt": kst_iso(now),
        "easyPayDiscountAmount": 0,
        "receiptKey": None,
        "cancelAmount": amount,
        "taxFreeAmount": 0,
        "refundableAmount": payment.balance_amount,
        "cancelStatus": "DONE",
        "cancelRequestId": None,
    }


# ---------------------------------------------------------------- the Payment object


def kst_iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(KST).isoformat(timespec="seconds")


def payment_object(payment: Payment, mid: str = "tosspayments") -> dict[str, Any]:
    """The Payment object as the API answers it (version 2022-11-16)."""
    authenticated = payment.status not in (Status.READY, Status.EXPIRED) or bool(
        payment.authenticated_at
    )
    supplied = round(payment.balance_amount / 1.1)
    failure = (
        {"code": payment.failure_code, "message": payment.failure_message}
        if payment.failure_code
        else None
    )
    return {
        "mId": mid,
        "lastTransactionKey": payment.last_transaction_key,
        "paymentKey": payment.payment_key,
        "orderId": payment.order_id,
        "orderName": payment.order_name,
        "taxExemptionAmount": 0,
        "status": payment.status.value,
        "requestedAt": kst_iso(payment.requested_at),
        "approvedAt": kst_iso(payment.approved_at),
        "useEscrow": False,
        "cultureExpense": False,
        "card": _card_object(payment),
        "virtualAccount": None,
        "transfer": None,
        "mobilePhone": None,
        "giftCertificate": None,
        "cashReceipt": None,
        "cashReceipts": None,
        "discount": None,
        "cancels": payment.cancels or None,
        "secret": payment.secret,
        "type": "NORMAL",
        "easyPay": None,
        "country": "KR",
        "failure": failure,
        "isPartialCancelable": True,
        "receipt": {"url": f"https://sandbox.invalid/receipt/{payment.payment_key}"},
        "checkout": {"url": f"https://sandbox.invalid/checkout/{payment.payment_key}"},
        "currency": "KRW",
        "totalAmount": payment.total_amount,
        "balanceAmount": payment.balance_amount,
        "suppliedAmount": supplied,
        "vat": payment.balance_amount - supplied,
        "taxFreeAmount": 0,
        "metadata": None,
        "method": "카드" if authenticated else None,
        "version": API_VERSION,
    }


def _card_object(payment: Payment) -> dict[str, Any] | None:
    if payment.status not in APPROVED_STATUSES:
        return None
    return {
        "issuerCode": "61",
        "acquirerCode": "31",
        "number": payment.card_number,
        "installmentPlanMonths": 0,
        "isInterestFree": False,
        "interestPayer": None,
        "approveNo": _approve_no(payment.payment_key),
        "useCardPoint": False,
        "cardType": "신용",
        "ownerType": "개인",
        "acquireStatus": "READY",
        "amount": payment.total_amount,
    }


def _approve_no(payment_key: str) -> str:
    """Eight digits, stable for a payment (the same in every sandbox process)."""
    digest = hashlib.sha256(payment_key.encode()).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**8:08d}"


def ledger_entry(payment: Payment) -> dict[str, Any]:
    return {
        "paymentKey": payment.payment_key,
        "orderId": payment.order_id,
        "status": payment.status.value,
        "totalAmount": payment.total_amount,
        "balanceAmount": payment.balance_amount,
        "confirmCalls": payment.confirm_calls,
        "approvals": payment.approvals,
        "cancels": payment.cancels,
        "canceledAmount": payment.total_amount - payment.balance_amount
        if payment.status in APPROVED_STATUSES
        else 0,
        "requestedAt": kst_iso(payment.requested_at),
        "authenticatedAt": kst_iso(payment.authenticated_at),
        "approvedAt": kst_iso(payment.approved_at),
        "failure": payment.failure_code,
        "lastConfirmIdempotencyKey": payment.last_confirm_idempotency_key,
    }


def webhook_body(payment: Payment, now: datetime, mid: str = "tosspayments") -> dict[str, Any]:
    return {
        "eventType": "PAYMENT_STATUS_CHANGED",
        "createdAt": kst_iso(now),
        "data": payment_object(payment, mid),
    }
