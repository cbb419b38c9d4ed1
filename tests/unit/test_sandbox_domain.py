"""The sandbox PG's rules, without I/O."""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from services.sandbox import domain
from services.sandbox.domain import (
    Call,
    ConfirmRequest,
    IdempotencySlot,
    InvalidField,
    Payment,
    Status,
    WindowRequest,
)
from services.sandbox.errors import ERRORS, PgError
from services.sandbox.faults import ConfirmScript, EndpointFaults, Faults, update_faults

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SECRET = "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R"
KEYS = frozenset({SECRET})
CLIENT = "test_ck_D5GePWvyJnrK0W0k6q8gLzN97Eoq"


def window(amount: int = 15000, order_id: str = "order-unit-1") -> WindowRequest:
    return WindowRequest(
        CLIENT, "cust_Zx81-aa", order_id, "Unit order", amount, "http://m/s", "http://m/f"
    )


def authenticated(amount: int = 15000, faults: Faults | None = None) -> Payment:
    faults = faults or Faults()
    payment = domain.open_window(window(amount), NOW, faults)
    domain.authenticate(payment, window(amount), "4330123412341234", NOW, faults)
    return payment


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_basic_auth_with_a_known_key_and_a_colon_gives_the_key() -> None:
    assert domain.secret_key_from_basic_auth(basic(f"{SECRET}:"), KEYS) == SECRET


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "UNAUTHORIZED_KEY"),
        ("Bearer x", "UNAUTHORIZED_KEY"),
        (basic("test_sk_other:"), "UNAUTHORIZED_KEY"),
        (basic(SECRET), "INCORRECT_BASIC_AUTH_FORMAT"),
        ("Basic %%%", "INCORRECT_BASIC_AUTH_FORMAT"),
    ],
)
def test_basic_auth_refusals_carry_the_contracts_codes(header: str | None, code: str) -> None:
    with pytest.raises(PgError) as refused:
        domain.secret_key_from_basic_auth(header, KEYS)

    assert refused.value.code == code


def test_every_catalogued_error_has_a_status_and_both_languages() -> None:
    for code, spec in ERRORS.items():
        assert 400 <= spec.status < 600, code
        assert spec.korean, code
        assert spec.english, code


def test_the_contracts_statuses_are_kept() -> None:
    expected = {
        "ALREADY_PROCESSED_PAYMENT": 400,
        "UNAUTHORIZED_KEY": 401,
        "FORBIDDEN_REQUEST": 403,
        "INCORRECT_BASIC_AUTH_FORMAT": 403,
        "NOT_FOUND_PAYMENT_SESSION": 404,
        "IDEMPOTENT_REQUEST_PROCESSING": 409,
        "UNKNOWN_PAYMENT_ERROR": 500,
    }
    assert {code: ERRORS[code].status for code in expected} == expected


def test_a_test_code_applies_to_test_keys_only() -> None:
    asked = domain.test_code_error(SECRET, "reject_card_payment")

    assert asked is not None
    assert (asked.code, asked.status) == ("REJECT_CARD_PAYMENT", 403)
    assert domain.test_code_error("live_sk_abcdefgh", "REJECT_CARD_PAYMENT") is None


def test_idempotency_keys_longer_than_300_are_invalid() -> None:
    assert domain.check_idempotency_key("k" * 300) == "k" * 300
    with pytest.raises(PgError, match="INVALID_IDEMPOTENCY_KEY"):
        domain.check_idempotency_key("k" * 301)


def test_confirm_approves_the_authenticated_amount_and_order_once() -> None:
    payment = authenticated()

    domain.confirm(payment, ConfirmRequest(payment.payment_key, "order-unit-1", 15000), NOW)

    assert (payment.status, payment.approvals, payment.approved_at) == (Status.DONE, 1, NOW)
    with pytest.raises(PgError, match="ALREADY_PROCESSED_PAYMENT"):
        domain.confirm(payment, ConfirmRequest(payment.payment_key, "order-unit-1", 15000), NOW)
    assert payment.approvals == 1


@pytest.mark.parametrize(
    ("order_id", "amount", "code"),
    [("order-unit-1", 14999, "INVALID_REQUEST"), ("order-unit-2", 15000, "FORBIDDEN_REQUEST")],
)
def test_confirm_refuses_a_different_amount_or_order(order_id: str, amount: int, code: str) -> None:
    payment = authenticated()

    with pytest.raises(PgError) as refused:
        domain.confirm(payment, ConfirmRequest(payment.payment_key, order_id, amount), NOW)

    assert refused.value.code == code
    assert payment.status is Status.IN_PROGRESS


# The columns repository.save_confirm writes (besides confirm_calls and the idempotency key),
# and the transactions it records.
CONFIRM_WRITES = {"status", "failure_code", "failure_message", "approved_at", "approvals",
                  "last_transaction_key", "pending", "recorded"}  # fmt: skip


@pytest.mark.parametrize(
    "outcome",
    [
        lambda p: domain.confirm(p, ConfirmRequest(p.payment_key, "order-unit-1", 15000), NOW),
        lambda p: domain.abort(p, PgError("FDS_ERROR")),
        lambda p: domain.expire_if_due(p, NOW + timedelta(hours=1)),
    ],
    ids=["approve", "abort", "expire"],
)
def test_a_confirm_changes_only_the_columns_a_confirm_writes(
    outcome: Callable[[Payment], object],
) -> None:
    payment = authenticated()
    before = dataclasses.asdict(payment)

    outcome(payment)

    changed = {name for name, value in dataclasses.asdict(payment).items() if before[name] != value}
    assert changed
    assert changed <= CONFIRM_WRITES


def test_the_confirm_window_is_ten_minutes_divided_by_the_clock_scale() -> None:
    payment = authenticated(faults=Faults(clock_scale=600))

    assert not domain.expire_if_due(payment, NOW + timedelta(seconds=0.99))
    assert domain.expire_if_due(payment, NOW + timedelta(seconds=1))
    assert (payment.status, payment.failure_code) == (Status.EXPIRED, "EXPIRED_PAYMENT")


def test_an_opened_window_is_valid_thirty_minutes() -> None:
    payment = domain.open_window(window(), NOW, Faults())

    assert payment.expires_at - NOW == timedelta(minutes=30)
    assert payment.status is Status.READY


def test_partial_and_full_cancels_track_the_balance() -> None:
    payment = authenticated(10000)
    domain.confirm(payment, ConfirmRequest(payment.payment_key, "order-unit-1", 10000), NOW)

    domain.cancel(payment, domain.CancelRequest("part", 4000), NOW)
    assert (payment.status, payment.balance_amount) == (Status.PARTIAL_CANCELED, 6000)
    with pytest.raises(PgError, match="NOT_CANCELABLE_AMOUNT"):
        domain.cancel(payment, domain.CancelRequest("too much", 6001), NOW)
    domain.cancel(payment, domain.CancelRequest("rest", None), NOW)

    assert (payment.status, payment.balance_amount, payment.total_amount) == (
        Status.CANCELED,
        0,
        10000,
    )
    assert [c["cancelAmount"] for c in payment.cancels] == [4000, 6000]
    with pytest.raises(PgError, match="ALREADY_CANCELED_PAYMENT"):
        domain.cancel(payment, domain.CancelRequest("again", None), NOW)


@pytest.mark.parametrize(("raw", "amount"), [(15000, 15000), ("15000", 15000), (15000.0, 15000)])
def test_amounts_arrive_as_numbers_or_numeric_strings(raw: object, amount: int) -> None:
    assert domain.parse_amount(raw) == amount


@pytest.mark.parametrize("raw", [0, -1, "1.5", 1.5, True, None, "", "1e3", [1]])
def test_anything_else_is_not_an_amount(raw: object) -> None:
    with pytest.raises(InvalidField):
        domain.parse_amount(raw)


def test_window_fields_follow_the_contracts_rules() -> None:
    good = {
        "clientKey": CLIENT,
        "customerKey": "cust_Zx81-aa",
        "orderId": "order_OK-1",
        "orderName": "n",
        "amount": "100",
        "successUrl": "https://m/s",
        "failUrl": "http://m/f",
    }
    assert domain.check_window_request(good, frozenset({CLIENT})).amount == 100
    for name, bad in [
        ("orderId", "abc"),
        ("orderId", "order id!"),
        ("amount", "99"),
        ("orderName", "x" * 101),
        ("customerKey", "me@example.com"),
        ("customerKey", "01012345678"),
        ("successUrl", "javascript:alert(1)"),
        ("clientKey", "test_ck_other"),
    ]:
        with pytest.raises(InvalidField) as refused:
            domain.check_window_request({**good, name: bad}, frozenset({CLIENT}))
        assert refused.value.field_name == name


def test_reject_prefixes_are_recognised_and_cards_are_masked() -> None:
    assert domain.card_rejection("9999123412341234") is not None
    assert domain.card_rejection(domain.DEFAULT_TEST_CARD) is None
    assert domain.mask_card("4330123412341234") == "43301234****123*"


def test_webhook_retries_follow_the_schedule_divided_by_the_clock_scale() -> None:
    faults = Faults(clock_scale=60)

    delays = [domain.webhook_retry_delay(n, faults) for n in range(8)]

    assert delays[:7] == [timedelta(seconds=m) for m in (1, 4, 16, 64, 256, 1024, 4096)]
    assert delays[7] is None


def test_the_legacy_flat_names_set_the_confirm_knobs() -> None:
    updated = update_faults(Faults(), {"errorRate": 0.5, "errorCode": "FDS_ERROR"})

    assert updated == Faults(confirm=EndpointFaults("FDS_ERROR", error_rate=0.5))


def test_faults_updates_are_validated_and_partial() -> None:
    for bad in ({"errorRate": 1.5}, {"clockScale": 0}, {"x": 1}, {"confirmLatencyMs": 0.5}):
        with pytest.raises(PgError):
            update_faults(Faults(), bad)


def test_the_payment_object_has_the_contracts_fields_and_kst_times() -> None:
    payment = authenticated()
    domain.confirm(payment, ConfirmRequest(payment.payment_key, "order-unit-1", 15000), NOW)

    body = domain.payment_object(payment)

    assert body["approvedAt"] == "2026-01-02T12:04:05+09:00"
    assert (body["status"], body["method"], body["currency"]) == ("DONE", "카드", "KRW")
    assert body["card"]["number"] == "43301234****123*"
    assert body["virtualAccount"] is None
    assert body["cancels"] is None


def test_unknown_outcome_errors_are_not_replayed() -> None:
    assert not PgError("PROVIDER_ERROR").replayable
    assert not PgError("FAILED_INTERNAL_SYSTEM_PROCESSING").replayable
    assert PgError("INVALID_REQUEST").replayable


# ---------------------------------------------------------------- decisions with faults


def always(rate: float) -> bool:
    """Chance where whatever may happen does."""
    return rate > 0


def never(rate: float) -> bool:
    return False


def call(now: datetime = NOW) -> Call:
    return Call(IdempotencySlot("k", "digest", "POST", "/v1/payments/confirm"), False, now)


def code_of(answer: domain.Answer) -> str | None:
    return answer.error.code if answer.error else None


def confirm_request(payment: Payment, amount: int = 15000) -> ConfirmRequest:
    return ConfirmRequest(payment.payment_key, "order-unit-1", amount)


def test_an_injected_decline_at_confirm_aborts_the_payment() -> None:
    payment = authenticated()
    knobs = EndpointFaults("REJECT_CARD_COMPANY", error_rate=1.0)

    answer = domain.decide_confirm(payment, confirm_request(payment), call(), knobs, None, always)

    assert answer.error is not None
    assert (answer.error.code, answer.error.status) == ("REJECT_CARD_COMPANY", 403)
    assert (payment.status, payment.failure_code) == (Status.ABORTED, "REJECT_CARD_COMPANY")


@pytest.mark.parametrize(
    "code",
    ["PROVIDER_ERROR", "FAILED_INTERNAL_SYSTEM_PROCESSING", "COMMON_ERROR", "INVALID_API_KEY",
     "NOT_FOUND_TERMINAL_ID", "INVALID_IDEMPOTENCY_KEY", "IDEMPOTENT_REQUEST_PROCESSING"],
)  # fmt: skip
def test_an_injected_unknown_outcome_or_configuration_error_changes_nothing(code: str) -> None:
    payment = authenticated()
    knobs = EndpointFaults(code, error_rate=1.0)

    answer = domain.decide_confirm(payment, confirm_request(payment), call(), knobs, None, always)

    assert code_of(answer) == code
    assert (payment.status, payment.failure_code) == (Status.IN_PROGRESS, None)


def test_a_late_confirm_is_accepted_dropped_and_left_in_progress() -> None:
    payment = authenticated()
    knobs = EndpointFaults(late_completion_rate=1.0, late_completion_seconds=30)

    answer = domain.decide_confirm(payment, confirm_request(payment), call(), knobs, None, always)

    assert (answer.error, answer.drop, answer.hold) == (None, True, True)
    assert (payment.status, payment.approvals) == (Status.IN_PROGRESS, 0)
    assert payment.pending is not None
    assert payment.pending.due_at == NOW + timedelta(seconds=30)


def test_a_late_confirm_completes_even_after_the_window_closed() -> None:
    payment = authenticated()
    knobs = EndpointFaults(late_completion_rate=1.0, late_completion_seconds=900)
    domain.decide_confirm(payment, confirm_request(payment), call(), knobs, None, always)
    later = NOW + timedelta(seconds=900)

    expired = domain.expire_if_due(payment, later)
    failure = domain.complete_pending(payment, later)

    assert not expired
    assert failure is None
    assert (payment.status, payment.approvals, payment.approved_at) == (Status.DONE, 1, later)
    assert payment.pending is None


def test_a_payment_waiting_for_a_completion_answers_409_to_another_confirm() -> None:
    payment = authenticated()
    late = EndpointFaults(late_completion_rate=1.0)
    domain.decide_confirm(payment, confirm_request(payment), call(), late, None, always)

    again = domain.decide_confirm(
        payment, confirm_request(payment), call(), EndpointFaults(), None, never
    )

    assert again.error is not None
    assert (again.error.code, again.error.status) == ("IDEMPOTENT_REQUEST_PROCESSING", 409)


def test_a_scripted_confirm_answers_its_error_then_ends_aborted_with_it() -> None:
    payment = authenticated()
    script = ConfirmScript("PROVIDER_ERROR", timedelta(seconds=5), "ABORTED", "PROVIDER_ERROR")

    answer = domain.decide_confirm(
        payment, confirm_request(payment), call(), EndpointFaults(), script, never
    )
    failure = domain.complete_pending(payment, NOW + timedelta(seconds=5))

    assert code_of(answer) == "PROVIDER_ERROR"
    assert (answer.drop, answer.hold) == (False, True)
    assert failure is not None
    assert failure.code == "PROVIDER_ERROR"
    assert (payment.status, payment.failure_code, payment.approvals) == (
        Status.ABORTED,
        "PROVIDER_ERROR",
        0,
    )


def test_a_script_does_not_take_a_confirm_with_the_wrong_amount() -> None:
    payment = authenticated()
    script = ConfirmScript("DROP", timedelta(seconds=5), "DONE", "REJECT_CARD_PAYMENT")

    answer = domain.decide_confirm(
        payment, confirm_request(payment, 100), call(), EndpointFaults(), script, never
    )

    assert code_of(answer) == "INVALID_REQUEST"
    assert payment.pending is None


def test_a_dropped_approval_is_still_an_approval() -> None:
    payment = authenticated()
    knobs = EndpointFaults(drop_response_rate=1.0)

    answer = domain.decide_confirm(payment, confirm_request(payment), call(), knobs, None, always)

    assert (answer.error, answer.drop, answer.hold) == (None, True, False)
    assert payment.status is Status.DONE


def done(amount: int = 10000) -> Payment:
    payment = authenticated(amount)
    domain.confirm(payment, ConfirmRequest(payment.payment_key, "order-unit-1", amount), NOW)
    payment.recorded.clear()
    return payment


def test_an_injected_cancel_error_changes_nothing() -> None:
    payment = done()
    knobs = EndpointFaults("REFUND_REJECTED", error_rate=1.0)

    answer = domain.decide_cancel(payment, domain.CancelRequest("x", None), call(), knobs, always)

    assert code_of(answer) == "REFUND_REJECTED"
    assert (payment.status, payment.balance_amount, payment.cancels) == (Status.DONE, 10000, [])


def test_a_late_cancel_changes_the_payment_only_when_it_completes() -> None:
    payment = done()
    knobs = EndpointFaults(late_completion_rate=1.0, late_completion_seconds=10)

    answer = domain.decide_cancel(
        payment, domain.CancelRequest("late", 4000), call(), knobs, always
    )
    status_meanwhile = payment.status
    domain.complete_pending(payment, NOW + timedelta(seconds=10))

    assert (answer.drop, answer.hold, status_meanwhile) == (True, True, Status.DONE)
    assert (payment.status, payment.balance_amount) == (Status.PARTIAL_CANCELED, 6000)
    assert [c["cancelAmount"] for c in payment.cancels] == [4000]


def test_pending_completions_read_back_from_their_stored_form() -> None:
    pending = domain.Pending(
        domain.PendingKind.CANCEL,
        NOW,
        cancel=domain.CancelRequest("why", 300),
        slot=IdempotencySlot("k", "d", "POST", "/p"),
        english=True,
    )

    assert domain.pending_from_json(domain.pending_to_json(pending)) == pending


# ---------------------------------------------------------------- transactions


def test_each_approval_and_cancel_records_a_transaction_with_the_status_after_it() -> None:
    payment = authenticated(10000)
    domain.confirm(payment, ConfirmRequest(payment.payment_key, "order-unit-1", 10000), NOW)
    domain.cancel(payment, domain.CancelRequest("part", 3000), NOW)
    domain.cancel(payment, domain.CancelRequest("rest", None), NOW)

    made = [(t.status, t.amount) for t in payment.recorded]

    assert made == [
        (Status.DONE, 10000),
        (Status.PARTIAL_CANCELED, 3000),
        (Status.CANCELED, 7000),
    ]
    assert payment.recorded[-1].transaction_key == payment.last_transaction_key
    assert payment.cancels[-1]["transactionKey"] == payment.last_transaction_key


def test_transaction_dates_are_korean_and_a_bare_end_date_takes_its_whole_day() -> None:
    query = domain.parse_transaction_query({"startDate": "2026-01-02", "endDate": "2026-01-02"})

    assert query.start == datetime(2026, 1, 1, 15, 0, tzinfo=UTC)
    assert query.end == datetime(2026, 1, 2, 15, 0, tzinfo=UTC)
    assert (query.limit, query.starting_after) == (100, None)


def test_a_transaction_end_time_includes_that_second_only() -> None:
    query = domain.parse_transaction_query(
        {"startDate": "2026-01-02T09:00:00", "endDate": "2026-01-02T10:00:00", "limit": "10000"}
    )

    assert query.start == datetime(2026, 1, 2, 0, 0, tzinfo=UTC)
    assert query.end == datetime(2026, 1, 2, 1, 0, 0, 1, tzinfo=UTC)
    assert query.limit == 10000


@pytest.mark.parametrize(
    "params",
    [
        {"endDate": "2026-01-02"},
        {"startDate": "2026-01-02"},
        {"startDate": "2026/01/02", "endDate": "2026-01-02"},
        {"startDate": "2026-01-02T25:00:00", "endDate": "2026-01-03"},
        {"startDate": "2026-01-03", "endDate": "2026-01-02"},
        {"startDate": "2026-01-02", "endDate": "2026-01-02", "limit": "0"},
        {"startDate": "2026-01-02", "endDate": "2026-01-02", "limit": "10001"},
        {"startDate": "2026-01-02", "endDate": "2026-01-02", "limit": "ten"},
    ],
)
def test_bad_transaction_queries_are_invalid_requests(params: dict[str, str]) -> None:
    with pytest.raises(PgError, match="INVALID_REQUEST"):
        domain.parse_transaction_query(params)


def test_a_transaction_has_the_contracts_fields() -> None:
    payment = authenticated(10000)
    domain.confirm(payment, ConfirmRequest(payment.payment_key, "order-unit-1", 10000), NOW)

    body = domain.transaction_object(payment.recorded[0])

    assert body == {
        "mId": "tosspayments",
        "transactionKey": payment.last_transaction_key,
        "paymentKey": payment.payment_key,
        "orderId": "order-unit-1",
        "method": "카드",
        "customerKey": "cust_Zx81-aa",
        "useEscrow": False,
        "receiptUrl": f"https://sandbox.invalid/receipt/{payment.payment_key}",
        "status": "DONE",
        "transactionAt": "2026-01-02T12:04:05+09:00",
        "currency": "KRW",
        "amount": 10000,
    }


# ---------------------------------------------------------------- webhooks and the generator


def test_a_webhook_is_created_at_korean_local_time_with_microseconds() -> None:
    body = domain.webhook_body(authenticated(), NOW + timedelta(microseconds=5))

    assert body["createdAt"] == "2026-01-02T12:04:05.000005"


def test_transmission_ids_have_the_contracts_form() -> None:
    ids = {domain.new_transmission_id() for _ in range(20)}

    assert len(ids) == 20
    assert all(re.fullmatch(r"whtrans_[a-z0-9]{26}", i) for i in ids)


@pytest.mark.parametrize(
    "body",
    [
        {"date": "2026-13-01", "payments": 1},
        {"date": "2026-01-01", "payments": 0},
        {"date": "2026-01-01", "payments": True},
        {"date": "2026-01-01", "payments": 10, "cancelRate": 1.5},
        {"date": "2026-01-01", "payments": 10, "orderIdPrefix": "no spaces"},
        {"date": "2026-01-01", "payments": 10, "surprise": 1},
    ],
)
def test_bad_generator_bodies_are_invalid_requests(body: dict[str, object]) -> None:
    with pytest.raises(PgError, match="INVALID_REQUEST"):
        domain.parse_generate_body(body)
