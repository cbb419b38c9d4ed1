"""Logs show payment keys, tokens and session ids masked, and registered secrets not at all."""

from __future__ import annotations

import logging

import orjson

from shared.logging import JsonFormatter, masked, register_secret


def formatted(message: str, **extra: object) -> dict[str, object]:
    record = logging.makeLogRecord({"msg": message, "levelname": "INFO", **extra})
    line: dict[str, object] = orjson.loads(JsonFormatter("test").format(record))
    return line


def test_a_payment_key_is_logged_masked() -> None:
    line = formatted("payment stuck", payment_key="tpk_20260101_abcdefghijklmnop")

    assert line["payment_key"] == "tpk_…mnop"
    assert "abcdefghijkl" not in orjson.dumps(line).decode()


def test_a_short_value_is_masked_whole() -> None:
    assert masked("abc") == "…"


def test_a_registered_secret_is_not_logged_even_in_the_message() -> None:
    register_secret("test_sk_log_masking_0123456789")

    line = formatted("calling with test_sk_log_masking_0123456789")

    assert "test_sk_log_masking_0123456789" not in orjson.dumps(line).decode()
