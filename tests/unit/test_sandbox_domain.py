"""The sandbox PG's rules, without I/O."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from services.sandbox import domain
from services.sandbox.domain import ConfirmRequest, InvalidField, Payment, Status, WindowRequest
from services.sandbox.errors import ERRORS, PgError
from services.sandbox.faults import EndpointFaults, Faults, update_faults

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
