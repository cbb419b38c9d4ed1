"""The sandbox PG's rules, without I/O: statuses, transitions, clock, the Payment object, pending
completions, transactions, and the parsing of what the API receives.

Everything here follows ``pg-contract.md``. Time is passed in (``now``) and so is chance (a
``Chance``: true with the given probability), so the rules are tested without waiting or luck;
the clock scale divides every PG duration (10-minute confirm window, 30-minute window validity,
webhook retry schedule) so expiry can be tested in seconds.

A payment's life::

    READY --authenticate--> IN_PROGRESS --confirm--> DONE --cancel--> PARTIAL_CANCELED / CANCELED
      |                        |    |                                    (each cancel recorded)
      |                        |    +--decline--> ABORTED
      +---------deadline-------+--------------->  EXPIRED

A confirm or cancel may instead be *deferred*: accepted, the payment left as it is with a
:class:`Pending` completion that a background task applies at ``due_at`` (late completions and
scripted timelines). A payment with a pending completion neither expires nor takes another
confirm or cancel until then.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from services.sandbox.errors import ERRORS, Outcome, PgError
from services.sandbox.faults import ConfirmScript, EndpointFaults, Faults

API_VERSION = "2022-11-16"
KST = timezone(timedelta(hours=9))
CONFIRM_WINDOW = timedelta(minutes=10)
WINDOW_VALIDITY = timedelta(minutes=30)
WEBHOOK_RETRY_MINUTES = (1, 4, 16, 64, 256, 1024, 4096)
IDEMPOTENCY_KEY_MAX = 300
DEFAULT_TEST_CARD = "4330123412341234"
MIN_CARD_AMOUNT = 100
METHOD_CARD = "카드"

# True with the given probability (``lambda rate: random.random() < rate`` when serving).
Chance = Callable[[float], bool]


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


# ---------------------------------------------------------------- clock


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


def parse_webhook_registration(body: Any) -> str | None:
    """``PUT /sandbox/webhook``: ``{"url": "http(s)://…"}``, or ``{"url": null}`` for none."""
    if not isinstance(body, dict) or set(body) != {"url"}:
        raise PgError("INVALID_REQUEST", 'the body must be {"url": "http(s)://…"}')
    if body["url"] is None:
        return None
    try:
        return check_redirect_url("url", body["url"])
    except InvalidField:
        raise PgError("INVALID_REQUEST", "url must be an absolute http(s) URL") from None


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


_TRANSMISSION_ALPHABET = string.ascii_lowercase + string.digits


def new_transmission_id() -> str:
    """A webhook's ``tosspayments-webhook-transmission-id`` (``whtrans_…``)."""
    return "whtrans_" + "".join(secrets.choice(_TRANSMISSION_ALPHABET) for _ in range(26))


@dataclass(frozen=True)
class IdempotencySlot:
    """The identity of an idempotent request: key + secret key (digest) + method + path."""

    key: str
    secret_digest: str
    method: str
    path: str


@dataclass(frozen=True)
class CancelRequest:
    reason: str
    amount: int | None


class PendingKind(StrEnum):
    CONFIRM = "CONFIRM"
    CANCEL = "CANCEL"


@dataclass(frozen=True)
class Pending:
    """A confirm or cancel accepted but not applied yet; applied at ``due_at`` by itself.

    A confirm ends ``outcome`` (DONE, or ABORTED with ``failure_code``); a cancel applies
    ``cancel``. ``slot`` is the idempotency slot that waits for the answer (None without a key).
    """

    kind: PendingKind
    due_at: datetime
    outcome: Status = Status.DONE
    failure_code: str | None = None
    cancel: CancelRequest | None = None
    slot: IdempotencySlot | None = None
    english: bool = False


@dataclass(frozen=True)
class Transaction:
    """One approval or one cancel, as ``GET /v1/transactions`` lists it."""

    transaction_key: str
    payment_key: str
    order_id: str
    customer_key: str
    status: Status  # the payment's status after this transaction
    amount: int
    transaction_at: datetime


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
    pending: Pending | None = None
    # Transactions made since the payment was read: saved with it, in the same transaction.
    recorded: list[Transaction] = field(default_factory=list)


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


def due_for_expiry(payment: Payment, now: datetime) -> bool:
    """An open payment past its deadline. One waiting for a pending completion does not
    expire: the PG has taken it on."""
    return payment.status in OPEN_STATUSES and now >= payment.expires_at and payment.pending is None


def expire_if_due(payment: Payment, now: datetime) -> bool:
    """Mark an open payment EXPIRED once its deadline has passed; True when that happened."""
    if due_for_expiry(payment, now):
        payment.status = Status.EXPIRED
        payment.failure_code = "EXPIRED_PAYMENT"
        payment.failure_message = "결제 유효 시간이 만료되었습니다."
        return True
    return False


def _record(payment: Payment, amount: int, now: datetime) -> None:
    """A new transaction (approval or cancel) under a new transaction key."""
    payment.last_transaction_key = new_transaction_key()
    payment.recorded.append(
        Transaction(
            transaction_key=payment.last_transaction_key,
            payment_key=payment.payment_key,
            order_id=payment.order_id,
            customer_key=payment.customer_key,
            status=payment.status,
            amount=amount,
            transaction_at=now,
        )
    )


# ---------------------------------------------------------------- confirm


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


def check_confirm(payment: Payment, request: ConfirmRequest) -> None:
    """The contract's error for confirming ``payment`` with ``request``, if there is one.

    The caller has already expired the payment if it was due (see :func:`expire_if_due`)."""
    if payment.status in APPROVED_STATUSES:
        raise PgError("ALREADY_PROCESSED_PAYMENT")
    if payment.status is not Status.IN_PROGRESS:
        raise PgError("NOT_FOUND_PAYMENT_SESSION")
    if request.order_id != payment.order_id:
        raise PgError("FORBIDDEN_REQUEST", "orderId differs from the authenticated one")
    if request.amount != payment.total_amount:
        raise PgError("INVALID_REQUEST", "amount differs from the authenticated amount")


def confirm(payment: Payment, request: ConfirmRequest, now: datetime) -> None:
    """Approve ``payment`` for ``request``, or raise the contract's error and change nothing."""
    check_confirm(payment, request)
    approve(payment, now)


def approve(payment: Payment, now: datetime) -> None:
    payment.status = Status.DONE
    payment.approved_at = now
    payment.approvals += 1
    _record(payment, payment.total_amount, now)


def abort(payment: Payment, error: PgError) -> None:
    """A definitive decline at confirm: the payment ends ABORTED with the failure."""
    payment.status = Status.ABORTED
    payment.failure_code, payment.failure_message = error.code, error.message()


@dataclass(frozen=True)
class Answer:
    """What an API call answers: the Payment object (``error`` None) or an error.

    ``drop``: the connection closes instead. ``hold``: a completion is pending, so the
    idempotency slot waits for it instead of keeping this answer."""

    error: PgError | None = None
    drop: bool = False
    hold: bool = False


@dataclass(frozen=True)
class Call:
    """Who is calling, as far as a deferred completion must remember."""

    slot: IdempotencySlot | None
    english: bool
    now: datetime


def decide_confirm(
    payment: Payment,
    request: ConfirmRequest,
    call: Call,
    faults: EndpointFaults,
    script: ConfirmScript | None,
    chance: Chance,
) -> Answer:
    """A confirm of ``payment``: changes it (or defers the change) and says what to answer."""
    if payment.pending is not None:
        return Answer(PgError("IDEMPOTENT_REQUEST_PROCESSING", "a completion is pending"))
    if expire_if_due(payment, call.now):
        return Answer(PgError("NOT_FOUND_PAYMENT_SESSION"))
    if script is not None and payment.status is Status.IN_PROGRESS:
        return _scripted_confirm(payment, request, call, script)
    if payment.status is Status.IN_PROGRESS and chance(faults.error_rate):
        return _injected_confirm_error(payment, faults.error_code)
    try:
        check_confirm(payment, request)
    except PgError as error:
        return Answer(error)
    if chance(faults.late_completion_rate):
        after = timedelta(seconds=faults.late_completion_seconds)
        payment.pending = Pending(
            PendingKind.CONFIRM, call.now + after, slot=call.slot, english=call.english
        )
        return Answer(drop=True, hold=True)
    approve(payment, call.now)
    return Answer(drop=chance(faults.drop_response_rate))


def _injected_confirm_error(payment: Payment, code: str) -> Answer:
    """Only the buyer's definitive decline ends the payment; an unknown outcome or our own
    configuration error leaves it as it was."""
    injected = PgError(code, "sandbox fault")
    if injected.outcome is Outcome.DECLINED:
        abort(payment, injected)
    return Answer(injected)


def _scripted_confirm(
    payment: Payment, request: ConfirmRequest, call: Call, script: ConfirmScript
) -> Answer:
    try:
        check_confirm(payment, request)
    except PgError as error:
        return Answer(error)
    payment.pending = Pending(
        PendingKind.CONFIRM,
        call.now + script.complete_after,
        outcome=Status(script.outcome),
        failure_code=script.failure_code,
        slot=call.slot,
        english=call.english,
    )
    if script.drops:
        return Answer(drop=True, hold=True)
    return Answer(PgError(script.answer, "sandbox script"), hold=True)


# ---------------------------------------------------------------- cancel


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


def check_cancel(payment: Payment, request: CancelRequest) -> int:
    """The amount ``request`` cancels, or the contract's error for it."""
    if payment.status is Status.CANCELED:
        raise PgError("ALREADY_CANCELED_PAYMENT")
    if payment.status not in (Status.DONE, Status.PARTIAL_CANCELED):
        raise PgError("NOT_CANCELABLE_PAYMENT")
    amount = payment.balance_amount if request.amount is None else request.amount
    if amount > payment.balance_amount:
        raise PgError("NOT_CANCELABLE_AMOUNT")
    return amount


def cancel(payment: Payment, request: CancelRequest, now: datetime) -> None:
    """Refund all (no amount) or part of what is left; appends to ``cancels``."""
    amount = check_cancel(payment, request)
    payment.balance_amount -= amount
    payment.status = Status.CANCELED if payment.balance_amount == 0 else Status.PARTIAL_CANCELED
    _record(payment, amount, now)
    payment.cancels = [*payment.cancels, _cancel_entry(payment, request.reason, amount, now)]


def decide_cancel(
    payment: Payment, request: CancelRequest, call: Call, faults: EndpointFaults, chance: Chance
) -> Answer:
    """A cancel of ``payment``: an injected error changes nothing; else it cancels (or defers)."""
    if chance(faults.error_rate):
        return Answer(PgError(faults.error_code, "sandbox fault"))
    if payment.pending is not None:
        return Answer(PgError("IDEMPOTENT_REQUEST_PROCESSING", "a completion is pending"))
    try:
        check_cancel(payment, request)
    except PgError as error:
        return Answer(error)
    if chance(faults.late_completion_rate):
        after = timedelta(seconds=faults.late_completion_seconds)
        payment.pending = Pending(
            PendingKind.CANCEL,
            call.now + after,
            cancel=request,
            slot=call.slot,
            english=call.english,
        )
        return Answer(drop=True, hold=True)
    cancel(payment, request, call.now)
    return Answer(drop=chance(faults.drop_response_rate))


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


# ---------------------------------------------------------------- pending completions


def complete_pending(payment: Payment, now: datetime) -> PgError | None:
    """Apply the payment's pending completion (even past its confirm window: the PG had
    accepted it in time). Returns the error it ends with, if any."""
    pending = payment.pending
    assert pending is not None
    payment.pending = None
    if pending.kind is PendingKind.CANCEL:
        assert pending.cancel is not None
        try:
            cancel(payment, pending.cancel, now)
        except PgError as error:
            return error
        return None
    if pending.outcome is Status.DONE:
        approve(payment, now)
        return None
    failure = PgError(pending.failure_code or "UNKNOWN_PAYMENT_ERROR")
    abort(payment, failure)
    return failure


def pending_to_json(pending: Pending | None) -> dict[str, Any] | None:
    if pending is None:
        return None
    slot = pending.slot
    return {
        "kind": pending.kind.value,
        "dueAt": pending.due_at.isoformat(),
        "outcome": pending.outcome.value,
        "failureCode": pending.failure_code,
        "cancelReason": pending.cancel.reason if pending.cancel else None,
        "cancelAmount": pending.cancel.amount if pending.cancel else None,
        "slot": [slot.key, slot.secret_digest, slot.method, slot.path] if slot else None,
        "english": pending.english,
    }


def pending_from_json(stored: dict[str, Any] | None) -> Pending | None:
    if stored is None:
        return None
    reason = stored.get("cancelReason")
    return Pending(
        kind=PendingKind(stored["kind"]),
        due_at=datetime.fromisoformat(stored["dueAt"]),
        outcome=Status(stored["outcome"]),
        failure_code=stored.get("failureCode"),
        cancel=CancelRequest(reason, stored.get("cancelAmount")) if reason is not None else None,
        slot=IdempotencySlot(*stored["slot"]) if stored.get("slot") else None,
        english=bool(stored.get("english")),
    )


# ---------------------------------------------------------------- the Payment object


def kst_iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(KST).isoformat(timespec="seconds")


def kst_local(moment: datetime) -> str:
    """``yyyy-MM-ddTHH:mm:ss.SSSSSS`` in Korean time without an offset (a webhook's createdAt)."""
    return moment.astimezone(KST).replace(tzinfo=None).isoformat(timespec="microseconds")


def receipt_url(payment_key: str) -> str:
    return f"https://sandbox.invalid/receipt/{payment_key}"


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
        "receipt": {"url": receipt_url(payment.payment_key)},
        "checkout": {"url": f"https://sandbox.invalid/checkout/{payment.payment_key}"},
        "currency": "KRW",
        "totalAmount": payment.total_amount,
        "balanceAmount": payment.balance_amount,
        "suppliedAmount": supplied,
        "vat": payment.balance_amount - supplied,
        "taxFreeAmount": 0,
        "metadata": None,
        "method": METHOD_CARD if authenticated else None,
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
    pending = payment.pending
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
        "pendingCompletion": {"kind": pending.kind.value, "dueAt": kst_iso(pending.due_at)}
        if pending
        else None,
    }


def webhook_body(payment: Payment, now: datetime, mid: str = "tosspayments") -> dict[str, Any]:
    return {
        "eventType": "PAYMENT_STATUS_CHANGED",
        "createdAt": kst_local(now),
        "data": payment_object(payment, mid),
    }


# ---------------------------------------------------------------- transactions

TRANSACTIONS_LIMIT_DEFAULT = 100
TRANSACTIONS_LIMIT_MAX = 10_000


@dataclass(frozen=True)
class TransactionQuery:
    """``GET /v1/transactions``: from ``start`` (inclusive) to ``end`` (exclusive)."""

    start: datetime
    end: datetime
    starting_after: str | None
    limit: int


def _kst_moment(name: str, value: str | None, is_end: bool) -> datetime:
    """``yyyy-MM-dd`` or ``yyyy-MM-ddTHH:mm:ss`` in Korean time; an end date is exclusive, so a
    bare end date takes its whole day and an end time its whole second's start."""
    if not value:
        raise PgError("INVALID_REQUEST", f"{name} is required (yyyy-MM-dd or yyyy-MM-ddTHH:mm:ss)")
    try:
        if len(value) == len("yyyy-MM-dd"):
            day = date.fromisoformat(value)
            moment = datetime.combine(day, time(), KST)
            return moment + timedelta(days=1) if is_end else moment
        moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=KST)
    except ValueError:
        raise PgError(
            "INVALID_REQUEST", f"{name} must be yyyy-MM-dd or yyyy-MM-ddTHH:mm:ss"
        ) from None
    return moment + timedelta(microseconds=1) if is_end else moment


def _limit(value: str | None) -> int:
    if value is None:
        return TRANSACTIONS_LIMIT_DEFAULT
    if not value.isdigit() or not 1 <= int(value) <= TRANSACTIONS_LIMIT_MAX:
        raise PgError(
            "INVALID_REQUEST", f"limit must be an integer from 1 to {TRANSACTIONS_LIMIT_MAX}"
        )
    return int(value)


def parse_transaction_query(params: Mapping[str, str]) -> TransactionQuery:
    start = _kst_moment("startDate", params.get("startDate"), is_end=False)
    end = _kst_moment("endDate", params.get("endDate"), is_end=True)
    if end <= start:
        raise PgError("INVALID_REQUEST", "endDate must not be before startDate")
    starting_after = params.get("startingAfter") or None
    if starting_after is not None and len(starting_after) > 200:
        raise PgError("INVALID_REQUEST", "startingAfter must be a transactionKey")
    return TransactionQuery(start, end, starting_after, _limit(params.get("limit")))


def transaction_object(transaction: Transaction, mid: str = "tosspayments") -> dict[str, Any]:
    return {
        "mId": mid,
        "transactionKey": transaction.transaction_key,
        "paymentKey": transaction.payment_key,
        "orderId": transaction.order_id,
        "method": METHOD_CARD,
        "customerKey": transaction.customer_key,
        "useEscrow": False,
        "receiptUrl": receipt_url(transaction.payment_key),
        "status": transaction.status.value,
        "transactionAt": kst_iso(transaction.transaction_at),
        "currency": "KRW",
        "amount": transaction.amount,
    }


# ---------------------------------------------------------------- bulk generator

GENERATE_MAX = 1_000_000
_PREFIX = re.compile(r"[A-Za-z0-9_-]{0,30}")


@dataclass(frozen=True)
class GenerateRequest:
    """``POST /sandbox/generate``: ``payments`` DONE payments approved on ``day`` (KST), a share
    ``cancel_rate`` of them canceled (about half of those partially)."""

    day: date
    payments: int
    cancel_rate: float
    order_id_prefix: str

    @property
    def day_start(self) -> datetime:
        return datetime.combine(self.day, time(), KST)


def parse_generate_body(body: Any) -> GenerateRequest:
    if not isinstance(body, dict):
        raise PgError("INVALID_REQUEST", "the body must be a JSON object")
    unknown = sorted(set(body) - {"date", "payments", "cancelRate", "orderIdPrefix"})
    if unknown:
        raise PgError("INVALID_REQUEST", f"unknown field {unknown[0][:40]}")
    try:
        day = date.fromisoformat(str(body.get("date")))
    except ValueError:
        raise PgError("INVALID_REQUEST", "date must be YYYY-MM-DD") from None
    count = body.get("payments")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= GENERATE_MAX:
        raise PgError("INVALID_REQUEST", f"payments must be an integer from 1 to {GENERATE_MAX}")
    rate = body.get("cancelRate", 0.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise PgError("INVALID_REQUEST", "cancelRate must be a number from 0 to 1")
    prefix = body.get("orderIdPrefix", "gen_")
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise PgError("INVALID_REQUEST", "orderIdPrefix: up to 30 of A-Z a-z 0-9 - _")
    return GenerateRequest(day, count, float(rate), prefix)
