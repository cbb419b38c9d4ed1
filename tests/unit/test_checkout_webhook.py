"""What a webhook must look like: anything else is refused with a 4xx, never an exception."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.checkout.webhook import Notice, WebhookRefused, parse_webhook

TRANSMISSION = "whtrans_0000000000000000000001"


def body(**data: object) -> bytes:
    return orjson.dumps({"eventType": "PAYMENT_STATUS_CHANGED", "data": data})


def test_a_status_change_names_its_payment_and_order() -> None:
    notice = parse_webhook(TRANSMISSION, "3", body(paymentKey="tpk_1", orderId="order-0001"))
    assert notice == Notice(TRANSMISSION, "PAYMENT_STATUS_CHANGED", "tpk_1", "order-0001", 3)


def test_a_cancel_status_change_may_name_only_its_payment() -> None:
    raw = orjson.dumps({"eventType": "CANCEL_STATUS_CHANGED", "data": {"paymentKey": "tpk_1"}})
    assert parse_webhook(TRANSMISSION, None, raw).payment_key == "tpk_1"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "MALFORMED_WEBHOOK"),
        (b"[1, 2]", "MALFORMED_WEBHOOK"),
        (body(), "INVALID_ORDER_ID"),
        (body(paymentKey="x" * 201), "INVALID_PAYMENT_KEY"),
        (body(paymentKey="tpk\x00"), "INVALID_PAYMENT_KEY"),
        (body(orderId="bad id!"), "INVALID_ORDER_ID"),
        (orjson.dumps({"eventType": "PAYMENT_STATUS_CHANGED", "data": "x"}), "UNKNOWN_WEBHOOK"),
        (b"{" + b'"a":' * 0 + b'"x": "' + b"y" * 70_000 + b'"}', "PAYLOAD_TOO_LARGE"),
    ],
)
def test_a_malformed_webhook_is_refused_with_its_reason(raw: bytes, code: str) -> None:
    with pytest.raises(WebhookRefused) as refused:
        parse_webhook(TRANSMISSION, "0", raw)
    assert refused.value.code == code
    assert 400 <= refused.value.status < 500


@pytest.mark.parametrize("transmission", [None, "", "x" * 101, "whtrans\n1", "whtrans_\ud800"])
def test_a_missing_or_malformed_transmission_id_is_refused(transmission: str | None) -> None:
    with pytest.raises(WebhookRefused) as refused:
        parse_webhook(transmission, "0", body(paymentKey="tpk_1"))
    assert refused.value.code == "INVALID_TRANSMISSION_ID"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.one_of(st.none(), st.text(max_size=20)))
def test_any_bytes_are_a_notice_or_a_4xx_refusal(raw: bytes, retried: str | None) -> None:
    assert 400 <= _status(raw, retried) < 500 or _status(raw, retried) == 200


def _status(raw: bytes, retried: str | None) -> int:
    try:
        parse_webhook(TRANSMISSION, retried, raw)
    except WebhookRefused as refused:
        return refused.status
    return 200
