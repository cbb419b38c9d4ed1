"""The sandbox's error catalogue, fault knobs and scripts, without I/O."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from services.sandbox import errors
from services.sandbox.errors import ERRORS, Outcome, PgError, outcome_of
from services.sandbox.faults import (
    ConfirmScript,
    EndpointFaults,
    Faults,
    faults_from_json,
    parse_script,
    update_faults,
)

DOCUMENTED_SHAPE = {
    "clockScale": 1.0,
    "replayErrors": True,
    "forgetIdempotencyKeys": False,
    "confirm": {"latencyMs": 0, "errorRate": 0.0, "errorCode": "PROVIDER_ERROR",
                "dropResponseRate": 0.0, "lateCompletionRate": 0.0, "lateCompletionSeconds": 30},
    "cancel": {"latencyMs": 0, "errorRate": 0.0, "errorCode": "PROVIDER_ERROR",
               "dropResponseRate": 0.0, "lateCompletionRate": 0.0, "lateCompletionSeconds": 30},
    "lookupByKey": {"latencyMs": 0, "errorRate": 0.0,
                    "errorCode": "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING",
                    "dropResponseRate": 0.0},
    "lookupByOrder": {"latencyMs": 0, "errorRate": 0.0,
                      "errorCode": "FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING",
                      "dropResponseRate": 0.0},
    "webhooks": {"dropRate": 0.0, "delayMs": 0, "duplicateRate": 0.0, "reorder": False},
}  # fmt: skip


# ---------------------------------------------------------------- errors


def test_the_confirm_table_has_the_contracts_47_codes() -> None:
    assert len(errors.CONFIRM_TABLE) == 47


def test_every_code_of_every_endpoint_is_catalogued_with_both_languages() -> None:
    for code in errors.CONFIRM_CODES | errors.QUERY_CODES | errors.CANCEL_CODES:
        assert ERRORS[code].korean, code
        assert ERRORS[code].english, code


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("REJECT_CARD_COMPANY", 403),
        ("EXCEED_MAX_AUTH_COUNT", 403),
        ("UNAPPROVED_ORDER_ID", 400),
        ("NOT_SUPPORTED_MONTHLY_INSTALLMENT_PLAN_BELOW_AMOUNT", 400),
        ("FORBIDDEN_CONSECUTIVE_REQUEST", 403),
        ("NOT_FOUND", 404),
        ("REFUND_REJECTED", 400),
        ("EXCEED_MAX_REFUND_DUE", 403),
        ("EXCEED_CANCEL_LIMIT", 403),
        ("FAILED_REFUND_PROCESS", 500),
        ("COMMON_ERROR", 500),
        ("INVALID_IDEMPOTENCY_KEY", 400),
        ("IDEMPOTENT_REQUEST_PROCESSING", 409),
    ],
)
def test_codes_carry_their_documented_status(code: str, status: int) -> None:
    assert ERRORS[code].status == status


def test_each_endpoint_has_its_own_codes() -> None:
    assert "REJECT_CARD_COMPANY" in errors.CONFIRM_CODES
    assert "REJECT_CARD_COMPANY" not in errors.CANCEL_CODES
    assert "REFUND_REJECTED" in errors.CANCEL_CODES
    assert "NOT_FOUND" in errors.QUERY_CODES
    assert "NOT_FOUND" not in errors.CONFIRM_CODES


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        ("PROVIDER_ERROR", Outcome.UNKNOWN),
        ("CARD_PROCESSING_ERROR", Outcome.UNKNOWN),
        ("FORBIDDEN_CONSECUTIVE_REQUEST", Outcome.UNKNOWN),
        ("COMMON_ERROR", Outcome.UNKNOWN),
        ("UNKNOWN_PAYMENT_ERROR", Outcome.UNKNOWN),
        ("INVALID_API_KEY", Outcome.MERCHANT),
        ("NOT_FOUND_TERMINAL_ID", Outcome.MERCHANT),
        ("ALREADY_PROCESSED_PAYMENT", Outcome.PROBABLY_DONE),
        ("REJECT_CARD_COMPANY", Outcome.DECLINED),
        ("INVALID_CARD_LOST_OR_STOLEN", Outcome.DECLINED),
    ],
)
def test_codes_are_read_as_the_contract_reads_them(code: str, outcome: Outcome) -> None:
    assert outcome_of(code) is outcome


def test_only_definitive_answers_are_replayable() -> None:
    assert PgError("REJECT_CARD_PAYMENT").replayable
    assert PgError("ALREADY_PROCESSED_PAYMENT").replayable
    assert not PgError("PROVIDER_ERROR").replayable
    assert not PgError("UNAUTHORIZED_KEY").replayable
    assert not PgError("FAILED_INTERNAL_SYSTEM_PROCESSING").replayable


# ---------------------------------------------------------------- faults


def test_no_faults_have_the_documented_shape() -> None:
    assert Faults().to_json() == DOCUMENTED_SHAPE


def test_a_nested_update_changes_only_its_endpoint() -> None:
    updated = update_faults(Faults(), {"cancel": {"errorRate": 0.5}})

    assert updated.cancel == EndpointFaults(error_rate=0.5)
    assert updated.confirm == Faults().confirm


def test_a_nested_confirm_knob_wins_over_its_legacy_alias() -> None:
    updated = update_faults(Faults(), {"errorRate": 0.1, "confirm": {"errorRate": 0.2}})

    assert updated.confirm.error_rate == 0.2


@pytest.mark.parametrize(
    "body",
    [
        {"cancel": {"errorCode": "REJECT_CARD_COMPANY"}},
        {"confirm": {"errorCode": "NOT_FOUND"}},
        {"lookupByKey": {"errorCode": "REJECT_CARD_PAYMENT"}},
        {"lookupByKey": {"lateCompletionRate": 0.5}},
        {"confirm": {"latencyMs": 120_001}},
        {"confirm": {"lateCompletionSeconds": -1}},
        {"cancel": {"dropResponseRate": 1.01}},
        {"webhooks": {"reorder": 1}},
        {"webhooks": {"surprise": 1}},
        {"replayErrors": "no"},
        {"confirm": []},
    ],
)
def test_bad_knobs_are_invalid_requests(body: dict[str, Any]) -> None:
    with pytest.raises(PgError) as refused:
        update_faults(Faults(), body)

    assert refused.value.code == "INVALID_REQUEST"


def test_an_error_code_of_the_endpoint_is_accepted() -> None:
    updated = update_faults(Faults(), {"cancel": {"errorCode": "REFUND_REJECTED"}})

    assert updated.cancel.error_code == "REFUND_REJECTED"


def test_stored_knobs_read_back_as_they_were() -> None:
    faults = update_faults(
        Faults(),
        {"forgetIdempotencyKeys": True, "webhooks": {"reorder": True, "delayMs": 50},
         "lookupByOrder": {"dropResponseRate": 0.3}},
    )  # fmt: skip

    assert faults_from_json(faults.to_json()) == faults


# ---------------------------------------------------------------- scripts


def test_a_script_completes_done_after_30_seconds_unless_told_otherwise() -> None:
    script = parse_script({"confirm": {"answer": "DROP"}})

    assert script == ConfirmScript("DROP", timedelta(seconds=30), "DONE", "REJECT_CARD_PAYMENT")


def test_an_aborted_script_fails_with_the_code_it_answered() -> None:
    script = parse_script(
        {"confirm": {"answer": "CARD_PROCESSING_ERROR", "outcome": "ABORTED",
                     "completeAfterSeconds": 2.5}}
    )  # fmt: skip

    assert (script.failure_code, script.complete_after) == (
        "CARD_PROCESSING_ERROR",
        timedelta(seconds=2.5),
    )


@pytest.mark.parametrize(
    "body",
    [
        {"confirm": {"answer": "NOT_A_CODE"}},
        {"confirm": {"answer": "REFUND_REJECTED"}},
        {"confirm": {"answer": "DROP", "outcome": "CANCELED"}},
        {"confirm": {"answer": "DROP", "completeAfterSeconds": -1}},
        {"confirm": {"answer": "DROP", "then": 1}},
        {"cancel": {"answer": "DROP"}},
        [],
    ],
)
def test_bad_scripts_are_invalid_requests(body: Any) -> None:
    with pytest.raises(PgError, match="INVALID_REQUEST"):
        parse_script(body)


def test_a_script_reads_back_from_its_json() -> None:
    script = parse_script({"confirm": {"answer": "PROVIDER_ERROR", "outcome": "ABORTED"}})

    assert parse_script(script.to_json()) == script
