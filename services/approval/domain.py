"""The approval rules: verifying a presented authentication, the attempt state machine, the
confirm window, idempotency keys and what each PG answer means. Pure: no I/O imports.

An attempt is one ``paymentKey`` the PG authenticated for one order::

    RECEIVED ───────> VERIFIED | REJECTED | AWAITING_ORDER (the order is not known yet)
    AWAITING_ORDER ─> VERIFIED | REJECTED
    VERIFIED ───────> CONFIRMING | REJECTED (the order stopped being payable; nothing sent)
    CONFIRMING ─────> APPROVED | DECLINED | UNKNOWN
    UNKNOWN ────────> CONFIRMING (same key) | APPROVED | DECLINED (settled by a query)
    any but APPROVED ──> APPROVED (the PG reports an approval after all: its word outranks ours)

``CONFIRMING`` is written (with the idempotency key) *before* the PG is called, so a crash in the
middle leaves a row that says "the money may have moved": it is settled by asking the PG, never
by guessing. Only the PG settles an attempt that reached it: a confirm answer, or a lookup that
says ``DONE``, ``ABORTED``, ``EXPIRED``, ``CANCELED`` or that it has no such payment. While the
PG says ``IN_PROGRESS`` or cannot be reached, the attempt stays ``UNKNOWN`` however long that
takes (our clock only stops us from *sending* a confirm once the window is closing).
``VERIFIED`` → ``REJECTED`` happens only before any confirm was sent.
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta


class AttemptState(enum.StrEnum):
    RECEIVED = "RECEIVED"
    AWAITING_ORDER = "AWAITING_ORDER"
    VERIFIED = "VERIFIED"
    CONFIRMING = "CONFIRMING"
    UNKNOWN = "UNKNOWN"
    APPROVED = "APPROVED"
    DECLINED = "DECLINED"
    REJECTED = "REJECTED"


S = AttemptState

TRANSITIONS: dict[AttemptState, frozenset[AttemptState]] = {
    S.RECEIVED: frozenset({S.VERIFIED, S.REJECTED, S.AWAITING_ORDER}),
    S.AWAITING_ORDER: frozenset({S.VERIFIED, S.REJECTED}),
    S.VERIFIED: frozenset({S.CONFIRMING, S.REJECTED}),
    S.CONFIRMING: frozenset({S.APPROVED, S.DECLINED, S.UNKNOWN}),
    S.UNKNOWN: frozenset({S.CONFIRMING, S.APPROVED, S.DECLINED}),
    S.APPROVED: frozenset(),
    S.DECLINED: frozenset(),
    S.REJECTED: frozenset(),
}
# Nobody drives these any more; only the PG's news of an approval moves one (approved_by_pg).
SETTLED = frozenset({S.APPROVED, S.DECLINED, S.REJECTED})
UNSETTLED = frozenset(S) - SETTLED
# States that hold the order (the attempt could still turn out approved): the partial unique
# index on attempts(order_id) lists the same, so no second payment is confirmed meanwhile.
LIVE = frozenset({S.VERIFIED, S.CONFIRMING, S.UNKNOWN})
# States a driver may claim a lease from (the states that may move to CONFIRMING).
CLAIMABLE = frozenset(state for state, targets in TRANSITIONS.items() if S.CONFIRMING in targets)


class IntentStatus(enum.StrEnum):
    PAYABLE = "PAYABLE"
    EXPIRED = "EXPIRED"
    CANCELED = "CANCELED"
    PAID = "PAID"


class Reason(enum.StrEnum):
    """Why an attempt was not approved (``PaymentRejected.reason``)."""

    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
    ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
    ORDER_NOT_PAYABLE = "ORDER_NOT_PAYABLE"
    ORDER_EXPIRED = "ORDER_EXPIRED"
    ALREADY_PAID = "ALREADY_PAID"
    PAYMENT_IN_PROGRESS = "PAYMENT_IN_PROGRESS"
    CONFIRM_WINDOW_CLOSED = "CONFIRM_WINDOW_CLOSED"
    PG_DECLINED = "PG_DECLINED"
    NOT_AUTHENTICATED = "NOT_AUTHENTICATED"


REASON_MESSAGES: dict[Reason, str] = {
    Reason.AMOUNT_MISMATCH: "The presented amount or currency differs from the order's.",
    Reason.ORDER_NOT_FOUND: "No such order is known.",
    Reason.ORDER_NOT_PAYABLE: "The order can no longer be paid.",
    Reason.ORDER_EXPIRED: "The order expired before it was paid.",
    Reason.ALREADY_PAID: "The order is already paid.",
    Reason.PAYMENT_IN_PROGRESS: "Another payment for this order is in progress.",
    Reason.CONFIRM_WINDOW_CLOSED: "The payment was not confirmed within the PG's window.",
    Reason.PG_DECLINED: "The payment gateway declined the payment.",
    Reason.NOT_AUTHENTICATED: "The PG authenticated no such payment for this order.",
}


class ApprovalError(Exception):
    """Base of the approval domain's exceptions."""


class IllegalTransition(ApprovalError):
    """The state machine does not allow this move (a bug, or a row changed under us)."""

    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"illegal transition {current} -> {target}")
        self.current = current
        self.target = target


class UnexpectedEvent(ApprovalError):
    """An event reached a handler that does not take it (a topology mistake)."""


def transition(current: AttemptState, target: AttemptState) -> AttemptState:
    """``target`` if the state machine allows ``current`` → ``target``; raise otherwise."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(current, target)
    return target


def approved_by_pg(current: AttemptState) -> AttemptState:
    """APPROVED, from any state but APPROVED: the PG's word that it approved the payment
    outranks every record of ours (a confirm that completed after all, one made outside our
    flow, before or after ours)."""
    if current is S.APPROVED:
        raise IllegalTransition(current, S.APPROVED)
    return S.APPROVED


# --- the confirm window ---------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """The PG keeps an authentication confirmable for ``seconds``; we stop ``margin`` earlier so
    that a confirm we start always ends (read timeout included) before the PG's window does."""

    seconds: int = 600
    margin: int = 30

    def confirm_deadline(self, authenticated_at: datetime) -> datetime:
        return authenticated_at + timedelta(seconds=self.seconds - self.margin)

    def closes_at(self, authenticated_at: datetime) -> datetime:
        return authenticated_at + timedelta(seconds=self.seconds)

    def may_confirm(self, authenticated_at: datetime, now: datetime) -> bool:
        return now < self.confirm_deadline(authenticated_at)

    def is_closed(self, authenticated_at: datetime, now: datetime) -> bool:
        return now >= self.closes_at(authenticated_at)


def confirm_idempotency_key(payment_key: str, generation: int = 0) -> str:
    """The key every confirm of this payment carries (the PG keeps it 15 days). Only a refusal
    for our own configuration, which the PG never processed, moves a payment to a new
    generation: a PG that replays error answers would otherwise repeat that refusal forever."""
    return _generation_key("confirm-", payment_key, generation)


def cancel_idempotency_key(refund_id: str, generation: int = 0) -> str:
    """As :func:`confirm_idempotency_key`; an operator's retry of a refused refund is also a new
    generation (a new request, not a retry of the refused one)."""
    return _generation_key("cancel-", refund_id, generation)


def orphan_refund_id(payment_key: str) -> str:
    """The refund of money approved for an order we never had: one per payment, redelivery-safe."""
    return "orphan_" + hashlib.sha256(payment_key.encode()).hexdigest()[:40]


def _generation_key(prefix: str, identity: str, generation: int) -> str:
    key = prefix + hashlib.sha256(identity.encode()).hexdigest()[:40]
    return key if generation == 0 else f"{key}-g{generation}"


def retry_delay(tries: int, base: float, cap: float) -> float:
    """Seconds to wait before checking an UNKNOWN attempt again, after ``tries`` rounds."""
    return float(min(cap, base * 2 ** max(0, tries)))


# --- verification ---------------------------------------------------------------------------


# The confirm API takes no currency: it confirms in won. An order in anything else is not ours
# to confirm.
CONFIRM_CURRENCY = "KRW"


@dataclass(frozen=True)
class Intent:
    """What approval knows of an order. ``amount`` is None for a tombstone (an OrderExpired or
    OrderCanceled seen before its OrderPlaced)."""

    order_id: str
    status: IntentStatus
    amount: int | None
    expires_at: datetime | None
    paid_by: str | None = None
    currency: str | None = CONFIRM_CURRENCY


@dataclass(frozen=True)
class Presentation:
    """An authentication as the browser presented it to checkout."""

    payment_key: str
    order_id: str
    amount: int
    authenticated_at: datetime


@dataclass(frozen=True)
class Verdict:
    state: AttemptState
    reason: Reason | None = None

    @property
    def message(self) -> str:
        return REASON_MESSAGES[self.reason] if self.reason else ""


VERIFIED = Verdict(S.VERIFIED)
AWAIT_ORDER = Verdict(S.AWAITING_ORDER)


def rejected(reason: Reason) -> Verdict:
    return Verdict(S.REJECTED, reason)


@dataclass(frozen=True)
class PgRecord:
    """The PG's record of a presented paymentKey, asked for before the attempt may hold its
    order: ``payment`` is None when the PG has no such payment; ``answered`` False when it did
    not say (then the confirm, which checks the same, decides)."""

    payment: PgPayment | None
    answered: bool


NOT_ASKED = PgRecord(None, answered=False)


def verify(
    presentation: Presentation,
    intent: Intent | None,
    other_live: AttemptState | None,
    now: datetime,
    window: Window,
    *,
    awaiting_expired: bool = False,
    pg: PgRecord = NOT_ASKED,
) -> Verdict:
    """Decide whether a presented authentication may be confirmed.

    ``other_live`` is the state of another attempt of the same order that holds it (see LIVE),
    if any. ``awaiting_expired`` says the order has been waited for long enough. ``pg`` is the
    PG's record of the paymentKey: a key the PG did not authenticate for this order, amount and
    currency never holds the order, so a forged redirect cannot block the buyer's real payment.
    """
    if not window.may_confirm(presentation.authenticated_at, now):
        return rejected(Reason.CONFIRM_WINDOW_CLOSED)
    if intent is None:
        return rejected(Reason.ORDER_NOT_FOUND) if awaiting_expired else AWAIT_ORDER
    return _verify_against(presentation, intent, other_live, now, pg)


def authentication_refusal(
    pg: PgRecord, presentation: Presentation, intent: Intent
) -> Reason | None:
    """Why the PG's record shows this is not an authentication of this order's payment."""
    if not pg.answered:
        return None
    if pg.payment is None or pg.payment.order_id != presentation.order_id:
        return Reason.NOT_AUTHENTICATED
    if pg.payment.total_amount != intent.amount or pg.payment.currency != intent.currency:
        return Reason.AMOUNT_MISMATCH
    return None


def _verify_against(
    presentation: Presentation,
    intent: Intent,
    other_live: AttemptState | None,
    now: datetime,
    pg: PgRecord,
) -> Verdict:
    if intent.status is IntentStatus.PAID:
        return rejected(Reason.ALREADY_PAID)
    if intent.status is not IntentStatus.PAYABLE:
        return rejected(
            Reason.ORDER_EXPIRED
            if intent.status is IntentStatus.EXPIRED
            else Reason.ORDER_NOT_PAYABLE
        )
    if intent.expires_at is not None and now >= intent.expires_at:
        return rejected(Reason.ORDER_EXPIRED)
    if presentation.amount != intent.amount or intent.currency != CONFIRM_CURRENCY:
        return rejected(Reason.AMOUNT_MISMATCH)
    if (refusal := authentication_refusal(pg, presentation, intent)) is not None:
        return rejected(refusal)
    if other_live is not None:
        return rejected(Reason.PAYMENT_IN_PROGRESS)
    return VERIFIED


def still_confirmable(
    authenticated_at: datetime, intent: Intent | None, now: datetime, window: Window
) -> Reason | None:
    """Before a VERIFIED attempt's first confirm: the reason it must not be sent, if any."""
    if not window.may_confirm(authenticated_at, now):
        return Reason.CONFIRM_WINDOW_CLOSED
    if intent is None:
        return Reason.ORDER_NOT_FOUND
    if intent.status is IntentStatus.EXPIRED or (
        intent.expires_at is not None and now >= intent.expires_at
    ):
        return Reason.ORDER_EXPIRED
    if intent.status is IntentStatus.PAID:
        return Reason.ALREADY_PAID
    if intent.status is not IntentStatus.PAYABLE:
        return Reason.ORDER_NOT_PAYABLE
    return None


# --- what the PG's answers mean: one table ---------------------------------------------------


class ErrorClass(enum.Enum):
    """What an error answer of the PG means for the money (pg-contract.md, "Errors")."""

    # The request may or may not have been done: look the payment up, then retry with the same
    # Idempotency-Key.
    OUTCOME_UNKNOWN = "outcome unknown"
    # Our own configuration is wrong (keys, terminal, registration): not the buyer's decline.
    # The payment is held (the buyer sees "processing"), an operator is alerted, and the call is
    # retried until the configuration is fixed (or, for a confirm, the window closes).
    MERCHANT_CONFIGURATION = "merchant configuration error"
    # Probably done already (a confirm or cancel of ours that we did not hear back from): only a
    # lookup can say so, never the code on its own.
    PROBABLY_DONE = "probably done"
    # Anything else: a definitive refusal, final.
    DECLINED = "declined"


EC = ErrorClass
ERROR_CLASSES: dict[str, ErrorClass] = {
    "PROVIDER_ERROR": EC.OUTCOME_UNKNOWN,
    "CARD_PROCESSING_ERROR": EC.OUTCOME_UNKNOWN,
    "IDEMPOTENT_REQUEST_PROCESSING": EC.OUTCOME_UNKNOWN,
    "FORBIDDEN_CONSECUTIVE_REQUEST": EC.OUTCOME_UNKNOWN,  # a rate limit: retry later
    "COMMON_ERROR": EC.OUTCOME_UNKNOWN,
    "UNAUTHORIZED_KEY": EC.MERCHANT_CONFIGURATION,
    "INVALID_API_KEY": EC.MERCHANT_CONFIGURATION,
    "INCORRECT_BASIC_AUTH_FORMAT": EC.MERCHANT_CONFIGURATION,
    "INVALID_IDEMPOTENCY_KEY": EC.MERCHANT_CONFIGURATION,
    "NOT_FOUND_TERMINAL_ID": EC.MERCHANT_CONFIGURATION,
    "NOT_REGISTERED_BUSINESS": EC.MERCHANT_CONFIGURATION,
    "INVALID_UNREGISTERED_SUBMALL": EC.MERCHANT_CONFIGURATION,
    "ALREADY_PROCESSED_PAYMENT": EC.PROBABLY_DONE,
    "ALREADY_CANCELED_PAYMENT": EC.PROBABLY_DONE,
    "ALREADY_REFUND_PAYMENT": EC.PROBABLY_DONE,
}


def error_class(http_status: int, code: str | None) -> ErrorClass:
    """What a non-200 answer of a POST (confirm or cancel) means. A timeout or a broken
    connection never gets here: it is OUTCOME_UNKNOWN. ``code`` is None when the body could not
    be read: we cannot tell what happened."""
    if code is not None and code in ERROR_CLASSES:
        return ERROR_CLASSES[code]
    if http_status >= 500 or http_status == 429 or code is None:
        return EC.OUTCOME_UNKNOWN
    return EC.DECLINED


def lookup_error_class(http_status: int, code: str | None) -> ErrorClass:
    """A lookup's error (other than 404: the PG has no such payment) never declines anything:
    it is our configuration, or we simply do not know yet."""
    if error_class(http_status, code) is EC.MERCHANT_CONFIGURATION:
        return EC.MERCHANT_CONFIGURATION
    return EC.OUTCOME_UNKNOWN


# --- settling an outcome by asking the PG ---------------------------------------------------


@dataclass(frozen=True)
class PgCancel:
    cancel_amount: int
    cancel_reason: str
    canceled_at: datetime | None = None
    transaction_key: str | None = None


@dataclass(frozen=True)
class PgPayment:
    """The fields of the PG's Payment object approval relies on."""

    payment_key: str
    order_id: str
    status: str
    total_amount: int
    balance_amount: int
    method: str | None = None
    approved_at: datetime | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    cancels: tuple[PgCancel, ...] = ()
    currency: str = "KRW"

    @property
    def approved(self) -> bool:
        """The money moved at some point (it may have gone back since)."""
        return self.status in APPROVED_STATUSES


@dataclass(frozen=True)
class PgTransaction:
    """One line of the PG's transactions (``GET /v1/transactions``): an approval or a cancel."""

    transaction_key: str
    payment_key: str
    order_id: str
    status: str  # the payment's status after this transaction
    amount: int
    transaction_at: datetime
    currency: str = "KRW"

    @property
    def is_approval(self) -> bool:
        return self.status == "DONE"


APPROVED_STATUSES = frozenset({"DONE", "CANCELED", "PARTIAL_CANCELED"})
FAILED_STATUSES = frozenset({"ABORTED", "EXPIRED"})


@dataclass(frozen=True)
class AttemptFacts:
    payment_key: str
    order_id: str
    expected_amount: int | None  # None: refused before an amount was ever expected
    authenticated_at: datetime


@dataclass(frozen=True)
class Settlement:
    state: AttemptState  # APPROVED, DECLINED or UNKNOWN
    reason: Reason | None = None
    pg_code: str | None = None
    message: str = ""
    payment: PgPayment | None = None
    finding: SecurityFinding | None = None  # a decline that shows tampering or forgery
    # UNKNOWN because our own configuration is wrong: held, alerted, retried with a fresh key.
    misconfigured: bool = False


NOT_YET = "not settled at the PG yet"


def settle(payment: PgPayment | None, answered: bool, facts: AttemptFacts) -> Settlement:
    """Judge an attempt from the PG's record of its paymentKey.

    ``payment`` is the PG's payment for this paymentKey (None: the PG has no such payment);
    ``answered`` is False when the PG did not answer at all. An approved payment for this key is
    an approval whatever it disagrees in (the money moved: the order refunds what it cannot
    take); one for another order is not ours at all (a foreign paymentKey). Still
    ``IN_PROGRESS`` is UNKNOWN, however late it is: only the PG settles.
    """
    if not answered:
        return Settlement(S.UNKNOWN, message="the PG did not answer the query")
    if payment is None:
        return Settlement(
            S.DECLINED,
            Reason.PG_DECLINED,
            "NOT_FOUND_PAYMENT",
            "The PG has no such payment.",
            finding=SecurityFinding(
                SecurityKind.UNKNOWN_PAYMENT_KEY, "a paymentKey the PG issued", facts.payment_key
            ),
        )
    if payment.order_id != facts.order_id:
        return Settlement(
            S.DECLINED,
            Reason.PG_DECLINED,
            "FORBIDDEN_REQUEST",
            "The paymentKey belongs to another order.",
            finding=SecurityFinding(
                SecurityKind.FOREIGN_PAYMENT_KEY, facts.order_id, payment.order_id
            ),
        )
    if payment.approved:
        return Settlement(S.APPROVED, payment=payment)
    if payment.status in FAILED_STATUSES:
        return failed_at_pg(payment)
    return Settlement(S.UNKNOWN, message=f"{NOT_YET} ({payment.status})")


def failed_at_pg(payment: PgPayment) -> Settlement:
    """ABORTED or EXPIRED: the PG's own word that this payment will never be approved."""
    code = payment.failure_code or payment.status
    message = payment.failure_message or f"payment {payment.status}"
    reason = Reason.CONFIRM_WINDOW_CLOSED if payment.status == "EXPIRED" else Reason.PG_DECLINED
    return Settlement(S.DECLINED, reason, code, message)


# --- security findings: tampering and forgery ----------------------------------------------


class SecurityKind(enum.StrEnum):
    """What a refused attempt tells an operator about the browser that presented it."""

    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"  # another amount than the stored intent (or than the PG's)
    FOREIGN_PAYMENT_KEY = "FOREIGN_PAYMENT_KEY"  # a paymentKey authenticated for another order
    UNKNOWN_PAYMENT_KEY = "UNKNOWN_PAYMENT_KEY"  # a paymentKey the PG never issued
    ALREADY_PAID = "ALREADY_PAID"  # another paymentKey for an order that is paid (a replay)


@dataclass(frozen=True)
class SecurityFinding:
    kind: SecurityKind
    expected: str
    presented: str


def rejection_finding(
    reason: Reason, presentation: Presentation, intent: Intent | None, pg: PgRecord = NOT_ASKED
) -> SecurityFinding | None:
    """The finding behind a verification refusal, if the refusal shows tampering or a replay."""
    if intent is None:
        return None
    if reason is Reason.NOT_AUTHENTICATED:
        return _not_authenticated_finding(pg.payment, presentation)
    if reason is Reason.AMOUNT_MISMATCH:
        expected = "?" if intent.amount is None else str(intent.amount)
        payment = pg.payment
        if presentation.amount != intent.amount or payment is None:
            return SecurityFinding(SecurityKind.AMOUNT_MISMATCH, expected, str(presentation.amount))
        # The browser's figure was right; the PG authenticated another amount or currency.
        authenticated = f"{payment.total_amount} {payment.currency}"
        return SecurityFinding(
            SecurityKind.AMOUNT_MISMATCH, f"{expected} {intent.currency}", authenticated
        )
    if reason is Reason.ALREADY_PAID:
        paid_by = intent.paid_by or "(another paymentKey)"
        return SecurityFinding(SecurityKind.ALREADY_PAID, paid_by, presentation.payment_key)
    return None


def _not_authenticated_finding(
    payment: PgPayment | None, presentation: Presentation
) -> SecurityFinding:
    if payment is None:
        return SecurityFinding(
            SecurityKind.UNKNOWN_PAYMENT_KEY, "a paymentKey the PG issued", presentation.payment_key
        )
    return SecurityFinding(
        SecurityKind.FOREIGN_PAYMENT_KEY, presentation.order_id, payment.order_id
    )


# Confirm declines that may mean a forged paymentKey or amount (the PG is asked which).
FORGERY_CODES = frozenset(
    {"FORBIDDEN_REQUEST", "INVALID_REQUEST", "NOT_FOUND_PAYMENT", "NOT_FOUND_PAYMENT_SESSION"}
)
NOT_FOUND_CODES = frozenset({"NOT_FOUND_PAYMENT", "NOT_FOUND_PAYMENT_SESSION"})


def decline_finding(
    code: str, facts: AttemptFacts, payment: PgPayment | None, answered: bool
) -> SecurityFinding | None:
    """The finding behind a confirm the PG refused, judged from the PG's own record of the
    paymentKey (``payment``; None if it has none, ``answered`` False if it did not say).

    An expired authentication also answers NOT_FOUND_PAYMENT_SESSION: it is no finding, because
    the PG still knows the payment, for this order and this amount.
    """
    if code not in FORGERY_CODES:
        return None
    if payment is not None:
        if payment.order_id != facts.order_id:
            return SecurityFinding(
                SecurityKind.FOREIGN_PAYMENT_KEY, facts.order_id, payment.order_id
            )
        if payment.total_amount != facts.expected_amount:
            return SecurityFinding(
                SecurityKind.AMOUNT_MISMATCH,
                str(facts.expected_amount),
                str(payment.total_amount),
            )
        return None
    if code == "FORBIDDEN_REQUEST":
        return SecurityFinding(SecurityKind.FOREIGN_PAYMENT_KEY, facts.order_id, "(another order)")
    # A confirm's NOT_FOUND_PAYMENT already says the key is unknown; a session may have expired.
    if code == "NOT_FOUND_PAYMENT" or (code in NOT_FOUND_CODES and answered):
        return SecurityFinding(
            SecurityKind.UNKNOWN_PAYMENT_KEY, "a paymentKey the PG issued", facts.payment_key
        )
    return None


# --- refunds --------------------------------------------------------------------------------


class RefundState(enum.StrEnum):
    """A cancel at the PG::

        REQUESTED ──> CANCELING ──> SUCCEEDED | FAILED | UNKNOWN
        UNKNOWN ────> CANCELING (same key) | SUCCEEDED | FAILED
        FAILED ─────> REQUESTED (an operator's retry, with a new key)

    FAILED is only ever a definitive refusal by the PG, kept with its code for an operator; a
    lost or unclear answer is UNKNOWN and settled by reading the payment's ``cancels[]``.
    """

    REQUESTED = "REQUESTED"
    CANCELING = "CANCELING"
    UNKNOWN = "UNKNOWN"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


R = RefundState
REFUND_TRANSITIONS: dict[RefundState, frozenset[RefundState]] = {
    R.REQUESTED: frozenset({R.CANCELING}),
    R.CANCELING: frozenset({R.SUCCEEDED, R.FAILED, R.UNKNOWN}),
    R.UNKNOWN: frozenset({R.CANCELING, R.SUCCEEDED, R.FAILED}),
    R.SUCCEEDED: frozenset(),
    R.FAILED: frozenset({R.REQUESTED}),
}
REFUND_CLAIMABLE = frozenset(
    s for s, targets in REFUND_TRANSITIONS.items() if R.CANCELING in targets
)
REFUND_SETTLED = frozenset({R.SUCCEEDED, R.FAILED})


def refund_transition(current: RefundState, target: RefundState) -> RefundState:
    if target not in REFUND_TRANSITIONS[current]:
        raise IllegalTransition(current, target)
    return target


REFUND_TAG_PREFIX = " #refund:"


def tagged_cancel_reason(reason: str, refund_id: str) -> str:
    """The cancel reason sent to the PG, tagged with the refund id so that our cancel can be
    found in ``cancels[]`` when its answer was lost (cancel reasons hold 200 characters)."""
    tag = f"{REFUND_TAG_PREFIX}{refund_id}"
    return reason[: max(0, 200 - len(tag))] + tag


def refund_id_in(cancel: PgCancel) -> str | None:
    """The refund id our tag put in a cancel's reason, if the cancel carries one."""
    _, tag, refund_id = cancel.cancel_reason.rpartition(REFUND_TAG_PREFIX)
    return refund_id if tag and refund_id else None


def find_refund(payment: PgPayment, refund_id: str) -> PgCancel | None:
    tag = f"{REFUND_TAG_PREFIX}{refund_id}"
    return next((c for c in payment.cancels if c.cancel_reason.endswith(tag)), None)


# --- the records the repository hands back --------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    payment_key: str
    order_id: str
    presented_amount: int
    expected_amount: int | None
    authenticated_at: datetime
    state: AttemptState
    tries: int
    idempotency_key: str | None
    lease_owner: str | None
    created_at: datetime
    event_id: uuid.UUID
    generation: int = 0  # of the confirm's idempotency key (see confirm_idempotency_key)

    @property
    def presentation(self) -> Presentation:
        return Presentation(
            self.payment_key, self.order_id, self.presented_amount, self.authenticated_at
        )

    def facts(self) -> AttemptFacts:
        """What a settlement is judged against."""
        return AttemptFacts(
            self.payment_key, self.order_id, self.expected_amount, self.authenticated_at
        )


@dataclass(frozen=True)
class SecurityEvent:
    """A recorded finding, as operators see it."""

    occurred_at: datetime
    kind: SecurityKind
    order_id: str
    payment_key: str
    expected: str
    presented: str
    client_ip: str | None
    user_agent: str | None


@dataclass(frozen=True)
class Refund:
    refund_id: str
    order_id: str
    payment_key: str
    amount: int | None
    reason: str
    state: RefundState
    idempotency_key: str
    tries: int
    event_id: uuid.UUID
    generation: int = 0  # of the cancel's idempotency key (see cancel_idempotency_key)
