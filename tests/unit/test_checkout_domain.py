"""Checkout's redirect rules: what the PG's success and fail redirects must look like."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl

import pytest

from services.checkout.domain import (
    MAX_AMOUNT,
    FailRedirect,
    InvalidRedirect,
    Receipt,
    SuccessRedirect,
    clean_user_agent,
    client_ip,
    parse_fail,
    parse_result,
    parse_success,
)

GOOD_SUCCESS = "paymentType=NORMAL&orderId=order_123-AB&paymentKey=tpk_abc123&amount=15000"


def success(query: str) -> SuccessRedirect:
    return parse_success(parse_qsl(query, keep_blank_values=True))


def success_with(**changes: str) -> str:
    params = dict(parse_qsl(GOOD_SUCCESS))
    params.update(changes)
    return "&".join(f"{k}={v}" for k, v in params.items() if v != "<absent>")


def invalid_fields_of_success(query: str) -> set[str]:
    with pytest.raises(InvalidRedirect) as caught:
        success(query)
    return caught.value.fields


def fail(query: str) -> FailRedirect:
    return parse_fail(parse_qsl(query, keep_blank_values=True))


def test_a_well_formed_success_redirect_is_parsed_in_any_parameter_order() -> None:
    assert success(GOOD_SUCCESS) == SuccessRedirect("tpk_abc123", "order_123-AB", 15000, "NORMAL")


@pytest.mark.parametrize("payment_type", ["NORMAL", "BRANDPAY", "KEYIN"])
def test_every_documented_payment_type_is_accepted(payment_type: str) -> None:
    assert success(success_with(paymentType=payment_type)).payment_type == payment_type


@pytest.mark.parametrize("name", ["paymentKey", "orderId", "amount", "paymentType"])
def test_a_missing_success_parameter_is_named(name: str) -> None:
    assert invalid_fields_of_success(success_with(**{name: "<absent>"})) == {name}


@pytest.mark.parametrize("name", ["paymentKey", "orderId", "amount", "paymentType"])
def test_an_empty_success_parameter_counts_as_missing(name: str) -> None:
    assert invalid_fields_of_success(success_with(**{name: ""})) == {name}


FULLWIDTH_123 = "\uff11\uff12\uff13"


@pytest.mark.parametrize(
    "amount", ["0", "-100", "+100", "1.5", "1e3", "abc", FULLWIDTH_123, " 100", str(MAX_AMOUNT + 1)]
)
def test_an_amount_that_is_not_a_positive_whole_number_within_bounds_is_refused(
    amount: str,
) -> None:
    assert invalid_fields_of_success(success_with(amount=amount.replace("+", "%2B"))) == {"amount"}


def test_a_huge_amount_is_refused_without_parsing_it() -> None:
    assert invalid_fields_of_success(success_with(amount="9" * 5000)) == {"amount"}


@pytest.mark.parametrize("order_id", ["abc12", "x" * 65, "order 123", "order/123", "주문번호123"])
def test_an_order_id_outside_the_contract_is_refused(order_id: str) -> None:
    assert invalid_fields_of_success(success_with(orderId=order_id)) == {"orderId"}


def test_an_order_id_of_6_and_64_characters_is_accepted() -> None:
    assert success(success_with(orderId="a" * 6)).order_id == "a" * 6
    assert success(success_with(orderId="Z" * 64)).order_id == "Z" * 64


def test_a_payment_key_over_200_characters_is_refused() -> None:
    assert success(success_with(paymentKey="k" * 200)).payment_key == "k" * 200
    assert invalid_fields_of_success(success_with(paymentKey="k" * 201)) == {"paymentKey"}


def test_a_payment_key_with_control_characters_is_refused() -> None:
    assert invalid_fields_of_success(success_with(paymentKey="abc%00def")) == {"paymentKey"}


def test_an_unknown_payment_type_is_refused() -> None:
    assert invalid_fields_of_success(success_with(paymentType="normal")) == {"paymentType"}


def test_a_parameter_given_twice_is_refused() -> None:
    assert invalid_fields_of_success(GOOD_SUCCESS + "&amount=100") == {"amount"}


def test_every_bad_parameter_is_reported_at_once() -> None:
    query = "paymentKey=&orderId=bad&amount=-1&paymentType=CASH"
    assert invalid_fields_of_success(query) == {"paymentKey", "orderId", "amount", "paymentType"}


def test_unknown_extra_parameters_are_ignored() -> None:
    assert success(GOOD_SUCCESS + "&utm_source=mail").amount == 15000


def test_the_authenticated_event_carries_the_redirect_as_presented() -> None:
    received = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = success(GOOD_SUCCESS).authenticated(Receipt(received, "203.0.113.7", "Firefox"))
    assert (event.order_id, event.correlation_id) == ("order_123-AB", "order_123-AB")
    assert (event.payment_key, event.amount, event.payment_type) == ("tpk_abc123", 15000, "NORMAL")
    assert (event.received_at, event.client_ip, event.user_agent) == (
        received,
        "203.0.113.7",
        "Firefox",
    )


def test_a_fail_redirect_with_an_order_announces_the_failure() -> None:
    redirect = fail("code=REJECT_CARD_COMPANY&message=Card+declined&orderId=order-0001")
    event = redirect.authentication_failed()
    assert event is not None
    assert (event.order_id, event.code, event.message) == (
        "order-0001",
        "REJECT_CARD_COMPANY",
        "The card company declined the payment; nothing was charged.",
    )


def test_a_canceled_window_without_an_order_announces_nothing() -> None:
    redirect = fail("code=PAY_PROCESS_CANCELED&message=%EC%B7%A8%EC%86%8C")
    assert redirect == FailRedirect("PAY_PROCESS_CANCELED", "취소", None)
    assert redirect.authentication_failed() is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("message=x", "code"),
        ("code=lower_case&message=x", "code"),
        ("code=" + "A" * 101 + "&message=x", "code"),
        ("code=PAY_PROCESS_ABORTED&message=" + "m" * 501, "message"),
        ("code=PAY_PROCESS_ABORTED&message=a%0Ab", "message"),
        ("code=PAY_PROCESS_ABORTED&message=x&orderId=no", "orderId"),
    ],
)
def test_a_malformed_fail_redirect_names_the_bad_parameter(query: str, field: str) -> None:
    with pytest.raises(InvalidRedirect) as caught:
        fail(query)
    assert caught.value.fields == {field}


def test_a_fail_redirect_without_a_message_is_accepted_with_an_empty_one() -> None:
    assert fail("code=PAY_PROCESS_ABORTED&orderId=order-0001").message == ""


def test_the_result_page_needs_an_order_or_a_failure() -> None:
    assert parse_result([("orderId", "order-0001")]).order_id == "order-0001"
    query = parse_result([("code", "PAY_PROCESS_CANCELED"), ("message", "closed")])
    assert query.failure == FailRedirect("PAY_PROCESS_CANCELED", "closed", None)
    with pytest.raises(InvalidRedirect):
        parse_result([])
    with pytest.raises(InvalidRedirect):
        parse_result([("orderId", "<script>")])


def test_the_client_ip_prefers_the_gateways_real_ip_then_forwarded_for_then_the_peer() -> None:
    assert client_ip("198.51.100.1", "203.0.113.9, 10.0.0.1", "127.0.0.1") == "198.51.100.1"
    assert client_ip(None, "203.0.113.9, 10.0.0.1", "127.0.0.1") == "203.0.113.9"
    assert client_ip("not-an-ip", None, "127.0.0.1") == "127.0.0.1"
    assert client_ip(None, None, None) is None


def test_the_user_agent_is_kept_printable_and_short() -> None:
    assert clean_user_agent("Mozilla\x00/5.0") == "Mozilla/5.0"
    assert clean_user_agent("x" * 2000) == "x" * 512
    assert clean_user_agent("") is None
