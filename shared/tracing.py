"""OpenTelemetry traces, configured only by the standard ``OTEL_*`` variables.

:func:`configure` (each role's ``__main__``) turns tracing on when ``OTEL_EXPORTER_OTLP_ENDPOINT``
(or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set and ``OTEL_SDK_DISABLED`` is not ``true``:
spans go out by OTLP over HTTP in batches (``OTEL_BSP_*``), sampled by ``OTEL_TRACES_SAMPLER``,
named ``payments-<role>`` unless ``OTEL_SERVICE_NAME`` says otherwise. Otherwise nothing is
instrumented: the API's no-op tracer answers the few calls below, and nothing is exported.

One trace follows a payment across the queue. Every span is a child of the one before:

- FastAPI (server spans), httpx (the PG calls, ``traceparent`` sent along) and asyncpg (queries)
  come from their instrumentations;
- an event carries the context it was *written* in: the outbox stores ``traceparent`` and
  ``tracestate`` with the row (:func:`current`), the relay publishes it under a producer span
  (:func:`publishing`) whose context goes in the AMQP headers, and the consumer handles it under
  a consumer span, that producer's child (:func:`consuming`).

Database queries made outside any traced operation (pollers, sweepers, the clock, health
checks) are not sampled: they would be thousands of one-span traces about nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    Decision,
    Sampler,
    SamplingResult,
    _get_from_env_or_default,
)
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

from shared.logging import masked

# The W3C trace context of the operation that wrote an event: (traceparent, tracestate).
TraceContext = tuple[str | None, str | None]
NO_CONTEXT: TraceContext = (None, None)
_TRACER = "payments"
# Probes and scrapes are not operations anyone traces.
_EXCLUDED_URLS = "/livez,/readyz,/healthz,/metrics"
_state = {"on": False}
_DB_SYSTEM = frozenset({"db.system", "db.system.name"})
_URL_ATTRIBUTES = ("http.target", "http.url", "url.full", "url.query", "url.path")
_PAYMENT_KEY_IN_URL = re.compile(r"(paymentKey=|/v1/payments/(?!confirm\b|orders/))([^&/?#]+)")


def enabled() -> bool:
    return _state["on"]


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def service_name(role: str, environ: Mapping[str, str] = os.environ) -> str:
    return environ.get("OTEL_SERVICE_NAME") or f"payments-{role}"


def configure(role: str) -> bool:
    """Start exporting this process's spans if the environment asks for it; True if it does.
    Call once, before any app, pool or client is built."""
    if _state["on"] or not wanted():
        return _state["on"]
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: service_name(role)}),
        sampler=NoOrphanQueries(_get_from_env_or_default()),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    if instrumented("asyncpg"):
        AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    _state["on"] = True
    return True


class NoOrphanQueries(Sampler):
    """``inner`` (the sampler ``OTEL_TRACES_SAMPLER`` names), except that a database query
    with no parent span starts no trace: background loops query all the time, about nothing."""

    def __init__(self, inner: Sampler) -> None:
        self._inner = inner

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        orphan = not trace.get_current_span(parent_context).get_span_context().is_valid
        if orphan and attributes and _DB_SYSTEM.intersection(attributes):
            return SamplingResult(Decision.DROP)
        return self._inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"NoOrphanQueries{{{self._inner.get_description()}}}"


def instrumented(name: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the library ``name`` may be instrumented (when tracing is on): not if
    ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` (comma-separated) names it."""
    disabled = environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "")
    return name not in {item.strip() for item in disabled.split(",")}


def instrument_app(app: FastAPI) -> None:
    """Server spans for ``app``'s requests (not for probes), when tracing is on."""
    if not _state["on"] or not instrumented("fastapi"):
        return
    excluded = os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", _EXCLUDED_URLS)
    # One span per request: the ASGI receive/send spans would triple the count for no insight.
    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls=excluded,
        server_request_hook=_scrub_span,
        exclude_spans=["receive", "send"],
    )


def instrument_client(client: Any) -> None:
    """Client spans (and ``traceparent`` sent along) for an ``httpx`` client's requests, on
    whatever transport it has, when tracing is on."""
    if not _state["on"] or not instrumented("httpx"):
        return
    HTTPXClientInstrumentor.instrument_client(client, request_hook=_scrub_request)


def scrub_url(url: str) -> str:
    """``url`` with the payment keys it holds masked (``shared.logging.masked``)."""
    return _PAYMENT_KEY_IN_URL.sub(lambda m: m[1] + masked(m[2]), url)


def _scrub_span(span: trace.Span, *_: object) -> None:
    """Payment keys travel in URLs (the redirect's query, the PG API's paths): a span shows
    them masked, as a log line does."""
    attributes: Mapping[str, object] = getattr(span, "attributes", None) or {}
    for key in _URL_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str):
            span.set_attribute(key, scrub_url(value))


async def _scrub_request(span: trace.Span, *_: object) -> None:
    _scrub_span(span)


def current() -> TraceContext:
    """The active span's W3C context, to store with an event written now."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent"), carrier.get("tracestate")


def _carrier(stored: TraceContext) -> dict[str, str]:
    traceparent, tracestate = stored
    carrier = {"traceparent": traceparent} if traceparent else {}
    if traceparent and tracestate:
        carrier["tracestate"] = tracestate
    return carrier


@contextmanager
def publishing(
    routing_key: str, message_id: str, stored: TraceContext
) -> Iterator[dict[str, str] | None]:
    """Around a relay's publish of an event written in ``stored``: yields the AMQP headers that
    carry the trace on (None if there is none). Traced, the publish is a producer span, child
    of ``stored``; untraced, ``stored`` goes on as it is, so a consumer still joins it."""
    carrier = _carrier(stored)
    if not carrier or not _state["on"]:
        yield carrier or None
        return
    tracer = trace.get_tracer(_TRACER)
    with tracer.start_as_current_span(
        f"publish {routing_key}",
        context=propagate.extract(carrier),
        kind=SpanKind.PRODUCER,
        attributes=_messaging(routing_key, message_id, "publish"),
    ):
        headers: dict[str, str] = {}
        propagate.inject(headers)
        yield headers


@contextmanager
def consuming(
    headers: Mapping[str, Any] | None, queue: str, routing_key: str, message_id: str
) -> Iterator[None]:
    """Around a consumer's handling of one message: a consumer span, child of the producer's
    span in the message's headers (a trace of its own if there is none), active inside."""
    if not _state["on"]:
        yield
        return
    parent = propagate.extract(_text_headers(headers))
    attributes = _messaging(routing_key, message_id, "process", queue=queue)
    tracer = trace.get_tracer(_TRACER)
    with tracer.start_as_current_span(
        f"process {queue}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    ):
        yield


def active_span() -> trace.SpanContext:
    """The active span's context (invalid when there is none), for :func:`batch`."""
    return trace.get_current_span().get_span_context()


@contextmanager
def batch(name: str, members: Sequence[trace.SpanContext]) -> Iterator[None]:
    """Around work done at once for several operations (``shared.batching``): a span linked to
    each member's span, active inside, so that the work's queries join it. A batch of one is
    its member's child, in its trace, as the work would be without batching."""
    if not _state["on"]:
        yield
        return
    traced = [member for member in members if member.is_valid]
    parent = Context()
    if len(members) == 1 and traced:
        parent = trace.set_span_in_context(trace.NonRecordingSpan(traced[0]))
    tracer = trace.get_tracer(_TRACER)
    with tracer.start_as_current_span(
        f"batch {name}",
        context=parent,
        links=[Link(member) for member in traced],
        attributes={"app.batch.size": len(members)},
    ):
        yield


def _text_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for key in ("traceparent", "tracestate"):
        value = (headers or {}).get(key)
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str):
            found[key] = value
    return found


def _messaging(
    routing_key: str, message_id: str, operation: str, queue: str | None = None
) -> dict[str, str]:
    attributes = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": operation,
        "messaging.destination.name": routing_key,
        "messaging.rabbitmq.destination.routing_key": routing_key,
        "messaging.message.id": message_id,
    }
    if queue is not None:
        attributes["messaging.rabbitmq.queue"] = queue
    return attributes
