"""The JSON log lines: masked secrets and payment keys, the fields that join a line to its
request, span and order, and LOG_LEVEL."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider

from shared.logging import configure, formatter, masked, order_context, register_secret


def formatted(message: str, **extra: object) -> dict[str, object]:
    record = logging.makeLogRecord({"msg": message, "levelname": "INFO", "name": "t", **extra})
    line: dict[str, object] = orjson.loads(formatter("test").format(record))
    return line


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger and structlog back as they were after a test that configures them."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


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


def test_a_registered_secret_is_not_logged_in_a_traceback() -> None:
    register_secret("test_sk_in_a_traceback_987654321")
    try:
        raise RuntimeError("refused test_sk_in_a_traceback_987654321")
    except RuntimeError as exc:
        line = formatted("failed", exc_info=(type(exc), exc, exc.__traceback__))

    assert "RuntimeError" in str(line["exception"])
    assert "test_sk_in_a_traceback_987654321" not in orjson.dumps(line).decode()


def test_extra_fields_of_a_stdlib_call_become_fields_of_the_line() -> None:
    line = formatted("handled", queue="order.payment-results", waits=2)

    assert (line["msg"], line["queue"], line["waits"]) == ("handled", "order.payment-results", 2)
    assert (line["service"], line["logger"], line["level"]) == ("test", "t", "info")


def test_a_line_logged_in_an_order_context_names_the_order() -> None:
    with order_context("order-123"):
        line = formatted("approved")

    assert line["orderId"] == "order-123"
    assert "orderId" not in formatted("after")


def test_a_line_logged_in_a_span_carries_its_trace_and_span_ids() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("handling") as span:
        line = formatted("inside")
    context = span.get_span_context()

    assert line["trace_id"] == f"{context.trace_id:032x}"
    assert line["span_id"] == f"{context.span_id:016x}"
    assert "trace_id" not in formatted("outside")


@pytest.mark.usefixtures("root_logging")
def test_log_level_leaves_out_the_lines_below_it(capsys: pytest.CaptureFixture[str]) -> None:
    configure("test", "WARNING")

    logging.getLogger("services.test").info("quiet")
    logging.getLogger("services.test").warning("loud")

    lines = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["msg"] for line in lines] == ["loud"]


@pytest.mark.usefixtures("root_logging")
def test_a_structlog_logger_writes_the_same_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure("test", "INFO")

    structlog.get_logger("services.test").info("native", payment_key="tpk_abcdefghijklmnop")

    [line] = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert (line["msg"], line["service"], line["payment_key"]) == ("native", "test", "tpk_…mnop")
