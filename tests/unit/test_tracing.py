"""Tracing's configuration by OTEL_* variables, what it keeps out of spans, and the trace context
an event carries from its writer to the relay."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision
from opentelemetry.trace import SpanKind

from shared import outbox, tracing
from tests.integration.shared.helpers import order_placed

TRACER = TracerProvider().get_tracer("test")
ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        (ENDPOINT, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({**ENDPOINT, "OTEL_SDK_DISABLED": "true"}, False),
        ({**ENDPOINT, "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_traces_are_exported_only_when_an_otlp_endpoint_is_set_and_the_sdk_not_disabled(
    environ: dict[str, str], expected: bool
) -> None:
    assert tracing.wanted(environ) is expected


def test_a_library_named_in_otel_python_disabled_instrumentations_is_not_instrumented() -> None:
    environ = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "asyncpg, httpx"}

    assert not tracing.instrumented("asyncpg", environ)
    assert not tracing.instrumented("httpx", environ)
    assert tracing.instrumented("fastapi", environ)


def test_a_role_is_named_after_itself_unless_otel_service_name_says_otherwise() -> None:
    assert tracing.service_name("order", {}) == "payments-order"
    assert tracing.service_name("order", {"OTEL_SERVICE_NAME": "shop-orders"}) == "shop-orders"


def test_a_payment_key_in_a_redirect_query_is_masked_in_a_span() -> None:
    url = "http://shop/payments/success?paymentKey=tpk_abcdefghijklmnop&orderId=o-1&amount=5"

    assert tracing.scrub_url(url) == (
        "http://shop/payments/success?paymentKey=tpk_…mnop&orderId=o-1&amount=5"
    )


def test_a_payment_key_in_a_pg_path_is_masked_but_not_the_confirm_or_order_lookup() -> None:
    assert tracing.scrub_url("/v1/payments/tpk_abcdefghijklmnop/cancel") == (
        "/v1/payments/tpk_…mnop/cancel"
    )
    assert tracing.scrub_url("/v1/payments/confirm") == "/v1/payments/confirm"
    assert tracing.scrub_url("/v1/payments/orders/o-1") == "/v1/payments/orders/o-1"


def sampled(kind: SpanKind, attributes: dict[str, str], inside_a_span: bool) -> bool:
    sampler = tracing.NoOrphanQueries(ALWAYS_ON)
    if not inside_a_span:
        decision = sampler.should_sample(None, 1, "q", kind, attributes).decision
        return decision is Decision.RECORD_AND_SAMPLE
    with TRACER.start_as_current_span("parent"):
        decision = sampler.should_sample(None, 1, "q", kind, attributes).decision
        return decision is Decision.RECORD_AND_SAMPLE


def test_a_query_outside_any_span_starts_no_trace() -> None:
    assert not sampled(SpanKind.CLIENT, {"db.system": "postgresql"}, inside_a_span=False)


def test_a_query_inside_a_span_and_a_request_outside_one_are_sampled() -> None:
    assert sampled(SpanKind.CLIENT, {"db.system": "postgresql"}, inside_a_span=True)
    assert sampled(SpanKind.SERVER, {"http.method": "GET"}, inside_a_span=False)


def test_an_event_written_outside_a_span_carries_no_trace_context() -> None:
    assert outbox.Outgoing.of(order_placed()).trace == tracing.NO_CONTEXT


def test_an_event_written_inside_a_span_carries_that_span_as_its_parent() -> None:
    with TRACER.start_as_current_span("redirect") as span:
        traceparent, _ = outbox.Outgoing.of(order_placed()).trace
    context = span.get_span_context()

    assert traceparent is not None
    assert traceparent.split("-")[1:3] == [f"{context.trace_id:032x}", f"{context.span_id:016x}"]


def test_an_untraced_relay_passes_the_stored_context_on_in_the_headers() -> None:
    stored = ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "k=v")

    with tracing.publishing("order.placed", "id", stored) as headers:
        assert headers == {"traceparent": stored[0], "tracestate": "k=v"}
    with tracing.publishing("order.placed", "id", tracing.NO_CONTEXT) as headers:
        assert headers is None


def test_an_untraced_consumer_makes_no_span() -> None:
    with tracing.consuming(
        {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, "q", "k", "id"
    ):
        assert not trace.get_current_span().get_span_context().is_valid
