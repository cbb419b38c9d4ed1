"""The approval rules, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.approval.domain import (
    CLAIMABLE,
    LIVE,
    TERMINAL,
    Answer,
    AttemptFacts,
    AttemptState,
    IllegalTransition,
    Intent,
    IntentStatus,
    PgCancel,
    PgPayment,
    Presentation,
    Reason,
    RefundState,
    Window,
    cancel_idempotency_key,
    classify_confirm_success,
    classify_error,
    confirm_idempotency_key,
    find_refund,
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


def test_a_presentation_beside_an_approved_attempt_is_rejected_already_paid() -> None:
    assert judge(intent(), other=S.APPROVED) == (S.REJECTED, Reason.ALREADY_PAID)


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


def test_terminal_states_are_approved_declined_and_rejected() -> None:
    assert {S.APPROVED, S.DECLINED, S.REJECTED} == TERMINAL


def test_only_a_verified_or_unknown_attempt_can_be_claimed_for_confirming() -> None:
    assert {S.VERIFIED, S.UNKNOWN} == CLAIMABLE


def test_the_states_that_hold_an_order_match_the_unique_index() -> None:
    assert {S.VERIFIED, S.CONFIRMING, S.UNKNOWN, S.APPROVED} == LIVE


def test_a_settled_refund_cannot_move_again() -> None:
    with pytest.raises(IllegalTransition):
        refund_transition(RefundState.SUCCEEDED, RefundState.CANCELING)


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


def test_unknown_checks_back_off_exponentially_up_to_a_cap() -> None:
    assert [retry_delay(n, 2.0, 10.0) for n in range(4)] == [2.0, 4.0, 8.0, 10.0]


# --- classification of PG answers -----------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_is_unknown(status: int) -> None:
    assert classify_error(status, "FAILED_INTERNAL_SYSTEM_PROCESSING") is Answer.UNKNOWN


def test_429_is_unknown() -> None:
    assert classify_error(429, "TOO_MANY_REQUESTS") is Answer.UNKNOWN


@pytest.mark.parametrize(
    "code", ["PROVIDER_ERROR", "CARD_PROCESSING_ERROR", "IDEMPOTENT_REQUEST_PROCESSING"]
)
def test_codes_that_leave_the_outcome_open_are_unknown(code: str) -> None:
    status = 409 if code == "IDEMPOTENT_REQUEST_PROCESSING" else 400
    assert classify_error(status, code) is Answer.UNKNOWN


def test_already_processed_payment_is_only_probably_approved() -> None:
    assert classify_error(400, "ALREADY_PROCESSED_PAYMENT") is Answer.PROBABLY_APPROVED


def test_an_unreadable_error_body_is_unknown() -> None:
    assert classify_error(400, None) is Answer.UNKNOWN


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "INVALID_REQUEST"),
        (400, "INVALID_CARD_EXPIRATION"),
        (400, "INVALID_STOPPED_CARD"),
        (400, "EXCEED_MAX_PAYMENT_AMOUNT"),
        (400, "BELOW_MINIMUM_AMOUNT"),
        (400, "NOT_AVAILABLE_PAYMENT"),
        (401, "UNAUTHORIZED_KEY"),
        (403, "REJECT_CARD_PAYMENT"),
        (403, "FORBIDDEN_REQUEST"),
        (403, "FDS_ERROR"),
        (404, "NOT_FOUND_PAYMENT"),
        (404, "NOT_FOUND_PAYMENT_SESSION"),
    ],
)
def test_every_other_error_is_a_definitive_decline(status: int, code: str) -> None:
    assert classify_error(status, code) is Answer.DECLINED


def test_a_200_is_an_approval_only_when_the_payment_is_done() -> None:
    assert classify_confirm_success("DONE") is Answer.APPROVED
    assert classify_confirm_success("IN_PROGRESS") is Answer.UNKNOWN


# --- settling by query ----------------------------------------------------------------------

FACTS = AttemptFacts("pk_1", "order-0001", 50_000, T0)


def payment(status: str = "DONE", key: str = "pk_1", total: int = 50_000) -> PgPayment:
    return PgPayment(key, "order-0001", status, total, total)


def settled(found: PgPayment | None, now: datetime = T0, answered: bool = True) -> AttemptState:
    return settle(found, answered, FACTS, now, WINDOW).state


def test_a_done_payment_with_this_key_and_the_stored_amount_settles_approved() -> None:
    assert settled(payment()) is S.APPROVED


def test_a_done_payment_under_another_key_is_never_this_attempts_approval() -> None:
    assert settled(payment(key="pk_other")) is S.UNKNOWN


def test_a_done_payment_under_another_key_after_the_window_is_declined() -> None:
    late = T0 + timedelta(seconds=601)
    assert settled(payment(key="pk_other"), now=late) is S.DECLINED


def test_a_done_payment_with_another_amount_is_not_an_approval() -> None:
    assert settled(payment(total=100)) is S.UNKNOWN


def test_an_aborted_payment_settles_declined_by_the_pg() -> None:
    result = settle(payment("ABORTED"), True, FACTS, T0, WINDOW)
    assert (result.state, result.reason, result.pg_code) == (
        S.DECLINED,
        Reason.PG_DECLINED,
        "ABORTED",
    )


def test_an_expired_payment_settles_declined_window_closed() -> None:
    result = settle(payment("EXPIRED"), True, FACTS, T0, WINDOW)
    assert (result.state, result.reason) == (S.DECLINED, Reason.CONFIRM_WINDOW_CLOSED)


def test_an_in_progress_payment_inside_the_window_stays_unknown() -> None:
    assert settled(payment("IN_PROGRESS")) is S.UNKNOWN


def test_an_in_progress_payment_past_the_window_settles_window_closed() -> None:
    result = settle(payment("IN_PROGRESS"), True, FACTS, T0 + timedelta(seconds=600), WINDOW)
    assert (result.state, result.reason) == (S.DECLINED, Reason.CONFIRM_WINDOW_CLOSED)


def test_no_answer_from_the_pg_stays_unknown_even_past_the_window() -> None:
    assert settled(None, now=T0 + timedelta(hours=1), answered=False) is S.UNKNOWN


# --- refunds --------------------------------------------------------------------------------


def test_our_cancel_is_found_in_cancels_by_its_refund_tag() -> None:
    reason = tagged_cancel_reason("buyer asked", "r-1")
    found = PgPayment("pk_1", "o", "PARTIAL_CANCELED", 100, 60, cancels=(PgCancel(40, reason),))
    assert find_refund(found, "r-1") == PgCancel(40, reason)
    assert find_refund(found, "r-2") is None


def test_a_tagged_cancel_reason_fits_the_pgs_200_characters() -> None:
    assert len(tagged_cancel_reason("x" * 500, "r-1")) <= 200
