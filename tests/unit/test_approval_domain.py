"""The approval rules, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.approval.domain import (
    CLAIMABLE,
    LIVE,
    SETTLED,
    AttemptFacts,
    AttemptState,
    ErrorClass,
    IllegalTransition,
    Intent,
    IntentStatus,
    PgCancel,
    PgPayment,
    Presentation,
    Reason,
    RefundState,
    SecurityKind,
    Window,
    approved_by_pg,
    cancel_idempotency_key,
    confirm_idempotency_key,
    error_class,
    find_refund,
    lookup_error_class,
    refund_transition,
    retry_delay,
    settle,
    still_confirmable,
    tagged_cancel_reason,
    transition,
    verify,
)

S = AttemptState
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
WINDOW = Window(seconds=600, margin=30)


def presentation(amount: int = 50_000) -> Presentation:
    return Presentation("pk_1", "order-0001", amount, authenticated_at=T0)


def intent(
    status: IntentStatus = IntentStatus.PAYABLE,
    amount: int | None = 50_000,
    expires_at: datetime | None = T0 + timedelta(minutes=30),
) -> Intent:
    return Intent("order-0001", status, amount, expires_at)


def judge(
    found: Intent | None = None,
    *,
    amount: int = 50_000,
    other: AttemptState | None = None,
    now: datetime = T0 + timedelta(seconds=1),
    waited: bool = False,
) -> tuple[AttemptState, Reason | None]:
    verdict = verify(presentation(amount), found, other, now, WINDOW, awaiting_expired=waited)
    return verdict.state, verdict.reason


# --- verification ---------------------------------------------------------------------------


def test_a_matching_presentation_for_a_payable_order_is_verified() -> None:
    assert judge(intent()) == (S.VERIFIED, None)


def test_a_presentation_with_a_different_amount_is_rejected_amount_mismatch() -> None:
    assert judge(intent(), amount=100) == (S.REJECTED, Reason.AMOUNT_MISMATCH)


def test_a_presentation_for_an_unknown_order_awaits_the_order() -> None:
    assert judge(None) == (S.AWAITING_ORDER, None)


def test_a_presentation_whose_order_never_came_is_rejected_order_not_found() -> None:
    assert judge(None, waited=True) == (S.REJECTED, Reason.ORDER_NOT_FOUND)


def test_a_presentation_for_an_expired_order_is_rejected_order_expired() -> None:
    assert judge(intent(IntentStatus.EXPIRED)) == (S.REJECTED, Reason.ORDER_EXPIRED)


def test_a_presentation_after_the_orders_expiry_time_is_rejected_order_expired() -> None:
    found = intent(expires_at=T0 - timedelta(seconds=1))
    assert judge(found) == (S.REJECTED, Reason.ORDER_EXPIRED)


def test_a_presentation_for_a_canceled_order_is_rejected_order_not_payable() -> None:
    assert judge(intent(IntentStatus.CANCELED)) == (S.REJECTED, Reason.ORDER_NOT_PAYABLE)


def test_a_tombstone_never_becomes_payable() -> None:
    tombstone = intent(IntentStatus.EXPIRED, amount=None, expires_at=None)
    assert judge(tombstone) == (S.REJECTED, Reason.ORDER_EXPIRED)


def test_a_presentation_for_a_paid_order_is_rejected_already_paid() -> None:
    assert judge(intent(IntentStatus.PAID)) == (S.REJECTED, Reason.ALREADY_PAID)


@pytest.mark.parametrize("other", [S.VERIFIED, S.CONFIRMING, S.UNKNOWN])
def test_a_presentation_beside_a_live_attempt_is_rejected_payment_in_progress(
    other: AttemptState,
) -> None:
    assert judge(intent(), other=other) == (S.REJECTED, Reason.PAYMENT_IN_PROGRESS)


def test_a_presentation_past_the_confirm_deadline_is_rejected_window_closed() -> None:
    late = T0 + timedelta(seconds=570)
    assert judge(intent(), now=late) == (S.REJECTED, Reason.CONFIRM_WINDOW_CLOSED)


def test_a_verified_attempt_whose_order_was_canceled_is_no_longer_confirmable() -> None:
    found = intent(IntentStatus.CANCELED)
    assert still_confirmable(T0, found, T0, WINDOW) is Reason.ORDER_NOT_PAYABLE


def test_a_verified_attempt_for_a_payable_order_is_still_confirmable() -> None:
    assert still_confirmable(T0, intent(), T0, WINDOW) is None


# --- state machine --------------------------------------------------------------------------

LEGAL = [
    (S.RECEIVED, S.VERIFIED),
    (S.RECEIVED, S.REJECTED),
    (S.RECEIVED, S.AWAITING_ORDER),
    (S.AWAITING_ORDER, S.VERIFIED),
    (S.AWAITING_ORDER, S.REJECTED),
    (S.VERIFIED, S.CONFIRMING),
    (S.VERIFIED, S.REJECTED),
    (S.CONFIRMING, S.APPROVED),
    (S.CONFIRMING, S.DECLINED),
    (S.CONFIRMING, S.UNKNOWN),
    (S.UNKNOWN, S.CONFIRMING),
    (S.UNKNOWN, S.APPROVED),
    (S.UNKNOWN, S.DECLINED),
]


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_a_legal_transition_is_allowed(current: AttemptState, target: AttemptState) -> None:
    assert transition(current, target) is target


ILLEGAL = [
    (current, target)
    for current in AttemptState
    for target in AttemptState
    if (current, target) not in LEGAL
]


@pytest.mark.parametrize(("current", "target"), ILLEGAL)
def test_an_illegal_transition_raises(current: AttemptState, target: AttemptState) -> None:
    with pytest.raises(IllegalTransition):
        transition(current, target)


def test_settled_states_are_approved_declined_and_rejected() -> None:
    assert {S.APPROVED, S.DECLINED, S.REJECTED} == SETTLED


def test_an_approved_attempt_never_moves_again() -> None:
    for target in AttemptState:
        with pytest.raises(IllegalTransition):
            transition(S.APPROVED, target)
    with pytest.raises(IllegalTransition):
        approved_by_pg(S.APPROVED)


@pytest.mark.parametrize("state", [s for s in AttemptState if s is not S.APPROVED])
def test_the_pgs_approval_outranks_every_record_of_ours(state: AttemptState) -> None:
    assert approved_by_pg(state) is S.APPROVED


def test_only_a_verified_or_unknown_attempt_can_be_claimed_for_confirming() -> None:
    assert {S.VERIFIED, S.UNKNOWN} == CLAIMABLE


def test_the_states_that_hold_an_order_match_the_unique_index() -> None:
    assert {S.VERIFIED, S.CONFIRMING, S.UNKNOWN} == LIVE


def test_a_succeeded_refund_cannot_move_again() -> None:
    for target in RefundState:
        with pytest.raises(IllegalTransition):
            refund_transition(RefundState.SUCCEEDED, target)


def test_only_an_operator_retry_moves_a_failed_refund() -> None:
    assert refund_transition(RefundState.FAILED, RefundState.REQUESTED) is RefundState.REQUESTED
    with pytest.raises(IllegalTransition):
        refund_transition(RefundState.FAILED, RefundState.CANCELING)


# --- window, keys and backoff ---------------------------------------------------------------


def test_confirm_is_allowed_until_the_window_minus_the_safety_margin() -> None:
    assert WINDOW.may_confirm(T0, T0 + timedelta(seconds=569))
    assert not WINDOW.may_confirm(T0, T0 + timedelta(seconds=570))


def test_the_window_closes_ten_minutes_after_authentication() -> None:
    assert not WINDOW.is_closed(T0, T0 + timedelta(seconds=599))
    assert WINDOW.is_closed(T0, T0 + timedelta(seconds=600))


def test_the_confirm_key_is_the_same_for_a_payment_forever() -> None:
    assert confirm_idempotency_key("pk_1") == confirm_idempotency_key("pk_1")


def test_the_confirm_key_differs_between_payments() -> None:
    assert confirm_idempotency_key("pk_1") != confirm_idempotency_key("pk_2")


def test_keys_fit_the_pgs_limit_and_do_not_reveal_their_source() -> None:
    key = confirm_idempotency_key("pk_" + "x" * 200)
    assert len(key) <= 300
    assert "pk_" not in key


def test_the_cancel_key_derives_from_the_refund_id() -> None:
    assert cancel_idempotency_key("r-1") == cancel_idempotency_key("r-1")
    assert cancel_idempotency_key("r-1") != cancel_idempotency_key("r-2")


def test_a_new_key_generation_is_a_new_key_for_the_same_payment() -> None:
    keys = {confirm_idempotency_key("pk_1", generation) for generation in range(3)}
    assert len(keys) == 3
    assert confirm_idempotency_key("pk_1", 0) == confirm_idempotency_key("pk_1")


def test_unknown_checks_back_off_exponentially_up_to_a_cap() -> None:
    assert [retry_delay(n, 2.0, 10.0) for n in range(4)] == [2.0, 4.0, 8.0, 10.0]


# --- classification of PG answers: the error-class table -----------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_leaves_the_outcome_unknown(status: int) -> None:
    assert error_class(status, "FAILED_INTERNAL_SYSTEM_PROCESSING") is ErrorClass.OUTCOME_UNKNOWN


def test_429_leaves_the_outcome_unknown() -> None:
    assert error_class(429, "TOO_MANY_REQUESTS") is ErrorClass.OUTCOME_UNKNOWN


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "PROVIDER_ERROR"),
        (400, "CARD_PROCESSING_ERROR"),
        (409, "IDEMPOTENT_REQUEST_PROCESSING"),
        (403, "FORBIDDEN_CONSECUTIVE_REQUEST"),
        (500, "COMMON_ERROR"),
    ],
)
def test_codes_that_leave_the_outcome_open_are_unknown(status: int, code: str) -> None:
    assert error_class(status, code) is ErrorClass.OUTCOME_UNKNOWN


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, "UNAUTHORIZED_KEY"),
        (400, "INVALID_API_KEY"),
        (403, "INCORRECT_BASIC_AUTH_FORMAT"),
        (400, "INVALID_IDEMPOTENCY_KEY"),
        (400, "NOT_FOUND_TERMINAL_ID"),
        (400, "NOT_REGISTERED_BUSINESS"),
        (400, "INVALID_UNREGISTERED_SUBMALL"),
    ],
)
def test_our_own_configuration_errors_are_never_the_buyers_decline(status: int, code: str) -> None:
    assert error_class(status, code) is ErrorClass.MERCHANT_CONFIGURATION


@pytest.mark.parametrize(
    "code", ["ALREADY_PROCESSED_PAYMENT", "ALREADY_CANCELED_PAYMENT", "ALREADY_REFUND_PAYMENT"]
)
def test_already_done_codes_are_only_probably_done(code: str) -> None:
    assert error_class(400, code) is ErrorClass.PROBABLY_DONE


def test_an_unreadable_error_body_is_unknown() -> None:
    assert error_class(400, None) is ErrorClass.OUTCOME_UNKNOWN


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "INVALID_REQUEST"),
        (400, "INVALID_CARD_EXPIRATION"),
        (400, "INVALID_STOPPED_CARD"),
        (400, "EXCEED_MAX_PAYMENT_AMOUNT"),
        (400, "BELOW_MINIMUM_AMOUNT"),
        (400, "NOT_AVAILABLE_PAYMENT"),
        (403, "REJECT_CARD_PAYMENT"),
        (403, "REJECT_CARD_COMPANY"),
        (403, "FORBIDDEN_REQUEST"),
        (403, "FDS_ERROR"),
        (404, "NOT_FOUND_PAYMENT"),
        (404, "NOT_FOUND_PAYMENT_SESSION"),
        (403, "NOT_CANCELABLE_AMOUNT"),
    ],
)
def test_every_other_error_is_a_definitive_decline(status: int, code: str) -> None:
    assert error_class(status, code) is ErrorClass.DECLINED


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (403, "FORBIDDEN_CONSECUTIVE_REQUEST"),
        (500, "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING"),
        (400, "NOT_SUPPORTED_MONTHLY_INSTALLMENT_PLAN_BELOW_AMOUNT"),
    ],
)
def test_a_lookup_error_never_declines_anything(status: int, code: str) -> None:
    assert lookup_error_class(status, code) is ErrorClass.OUTCOME_UNKNOWN


def test_a_lookup_refused_for_our_configuration_says_so() -> None:
    assert lookup_error_class(401, "UNAUTHORIZED_KEY") is ErrorClass.MERCHANT_CONFIGURATION


# --- settling by query: only the PG settles ---------------------------------------------------

FACTS = AttemptFacts("pk_1", "order-0001", 50_000, T0)


def payment(
    status: str = "DONE", key: str = "pk_1", total: int = 50_000, order: str = "order-0001"
) -> PgPayment:
    return PgPayment(key, order, status, total, total)


def settled(found: PgPayment | None, answered: bool = True) -> AttemptState:
    return settle(found, answered, FACTS).state


def test_a_done_payment_with_this_key_settles_approved() -> None:
    assert settled(payment()) is S.APPROVED


@pytest.mark.parametrize("status", ["CANCELED", "PARTIAL_CANCELED"])
def test_a_payment_canceled_since_its_approval_settles_approved(status: str) -> None:
    assert settled(payment(status)) is S.APPROVED


def test_a_done_payment_with_another_amount_is_still_an_approval_to_refund() -> None:
    result = settle(payment(total=100), True, FACTS)
    assert result.state is S.APPROVED
    assert result.payment is not None
    assert result.payment.total_amount == 100


def test_a_payment_of_this_key_for_another_order_is_a_foreign_key_declined() -> None:
    result = settle(payment(order="order-9999"), True, FACTS)
    assert (result.state, result.pg_code) == (S.DECLINED, "FORBIDDEN_REQUEST")
    assert result.finding is not None
    assert result.finding.kind is SecurityKind.FOREIGN_PAYMENT_KEY


def test_a_key_the_pg_does_not_know_settles_declined() -> None:
    result = settle(None, True, FACTS)
    assert (result.state, result.pg_code) == (S.DECLINED, "NOT_FOUND_PAYMENT")


def test_an_aborted_payment_settles_declined_by_the_pg() -> None:
    result = settle(payment("ABORTED"), True, FACTS)
    assert (result.state, result.reason, result.pg_code) == (
        S.DECLINED,
        Reason.PG_DECLINED,
        "ABORTED",
    )


def test_an_expired_payment_settles_declined_window_closed() -> None:
    result = settle(payment("EXPIRED"), True, FACTS)
    assert (result.state, result.reason) == (S.DECLINED, Reason.CONFIRM_WINDOW_CLOSED)


@pytest.mark.parametrize("status", ["IN_PROGRESS", "READY", "WAITING_FOR_DEPOSIT"])
def test_a_payment_the_pg_has_not_settled_stays_unknown_however_late(status: str) -> None:
    assert settled(payment(status)) is S.UNKNOWN


def test_no_answer_from_the_pg_stays_unknown() -> None:
    assert settled(None, answered=False) is S.UNKNOWN


# --- refunds --------------------------------------------------------------------------------


def test_our_cancel_is_found_in_cancels_by_its_refund_tag() -> None:
    reason = tagged_cancel_reason("buyer asked", "r-1")
    found = PgPayment("pk_1", "o", "PARTIAL_CANCELED", 100, 60, cancels=(PgCancel(40, reason),))
    assert find_refund(found, "r-1") == PgCancel(40, reason)
    assert find_refund(found, "r-2") is None


def test_a_tagged_cancel_reason_fits_the_pgs_200_characters() -> None:
    assert len(tagged_cancel_reason("x" * 500, "r-1")) <= 200
