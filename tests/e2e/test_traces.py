"""Traces and logs of one payment, on the real stack exporting to an in-process OTLP receiver:
one trace from the success redirect through checkout, the queue, approval, the PG call and the
order, and the log lines of that payment joined to it by trace id."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest

from deploy.stack import Stack
from shared.logging import masked
from tests.e2e.buyer import Buyer
from tests.e2e.conftest import running_stack
from tests.e2e.otlp import Receiver, Span, receiving
from tests.integration.shared.helpers import eventually

pytestmark = pytest.mark.e2e

ROLES = {"payments-checkout", "payments-approval", "payments-order"}
CLIENT = 3  # SpanKind.CLIENT in OTLP's numbering


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with receiving() as running:
        yield running


@pytest.fixture(scope="module")
async def traced(
    postgres_admin_dsn: str, amqp_url: str, receiver: Receiver
) -> AsyncIterator[Stack]:
    """One stack for the module, its roles exporting their spans to ``receiver``."""
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    async with running_stack(postgres_admin_dsn, amqp_url, "traced", extra_env=otel) as stack:
        yield stack


@pytest.fixture
async def customer(traced: Stack) -> AsyncIterator[Buyer]:
    async with Buyer.for_stack(traced.config) as buyer:
        yield buyer


def paid(order: dict[str, object]) -> bool:
    return order["status"] == "PAID"


def root_span(receiver: Receiver, order_id: str, service: str, route: str) -> Span | None:
    """``service``'s server span of a request to ``route`` about the order."""
    for span in receiver.spans():
        about_order = span.attributes.get("app.order_id") == order_id
        if about_order and span.service == service and span.attributes.get("http.route") == route:
            return span
    return None


def trace_of(receiver: Receiver, trace_id: str) -> list[Span]:
    return [s for s in receiver.spans() if s.trace_id == trace_id]


def handled(spans: list[Span], routing_key: str) -> set[str]:
    """The services whose consumer spans among ``spans`` handled a ``routing_key`` event."""
    return {
        s.service
        for s in spans
        if s.name.startswith("process ")
        and s.attributes.get("messaging.destination.name") == routing_key
    }


def whole(spans: list[Span], last: tuple[str, str]) -> bool:
    """Every span's parent has arrived (spans are exported as they end, parents after their
    children), and ``last`` (service, routing key) handled its event in the trace."""
    ids = {s.span_id for s in spans}
    parents_in = all(s.parent_id in ids for s in spans if s.parent_id)
    service, routing_key = last
    return parents_in and service in handled(spans, routing_key)


async def traced_from(
    receiver: Receiver, order_id: str, root: tuple[str, str], last: tuple[str, str]
) -> tuple[str, list[Span]]:
    """The trace of the request ``root`` (service, route) about the order, once its spans (up
    to ``last``: a service's handling of an event) all arrived: (its id, its spans)."""

    async def arrived() -> bool:
        span = root_span(receiver, order_id, *root)
        return span is not None and whole(trace_of(receiver, span.trace_id), last)

    await eventually(arrived, within=15)
    span = root_span(receiver, order_id, *root)
    assert span is not None
    return span.trace_id, trace_of(receiver, span.trace_id)


async def paid_trace(receiver: Receiver, buyer: Buyer) -> tuple[str, list[Span], str]:
    """Pay an order; (its success redirect's trace id, the spans of that trace, the orderId)."""
    order = await buyer.place_order()
    order_id: str = order["orderId"]

    async def placed_everywhere() -> bool:
        about_order = [s for s in receiver.spans() if s.attributes.get("app.order_id") == order_id]
        return handled(about_order, "order.placed") >= {"payments-checkout", "payments-approval"}

    # A redirect that beats its OrderPlaced to checkout is held and announced by the OrderPlaced
    # handler, in the placing's trace: the buyer here is faster than any person.
    await eventually(placed_everywhere, within=15)
    await buyer.pay(order)
    await buyer.wait_for(order_id, paid)
    redirect = ("payments-checkout", "/payments/success")
    last = ("payments-order", "payment.approved")
    trace_id, spans = await traced_from(receiver, order_id, redirect, last)
    return trace_id, spans, order_id


def calls_to(spans: list[Span], path: str) -> list[str]:
    """The services that called ``path`` (an HTTP client span) in ``spans``."""
    return [s.service for s in spans if s.kind == CLIENT and path in str(s.attributes)]


async def test_one_trace_follows_a_payment_from_its_redirect_to_the_order_update(
    receiver: Receiver, customer: Buyer
) -> None:
    _, spans, order_id = await paid_trace(receiver, customer)

    assert {s.service for s in spans} >= ROLES
    assert calls_to(spans, "/v1/payments/confirm") == ["payments-approval"]
    order_updates = [s for s in spans if s.service == "payments-order" and "process" in s.name]
    assert {s.attributes.get("app.order_id") for s in order_updates} == {order_id}


async def test_a_consumer_span_is_the_child_of_the_relay_publish_that_carried_its_message(
    receiver: Receiver, customer: Buyer
) -> None:
    _, spans, _ = await paid_trace(receiver, customer)
    by_id = {s.span_id: s for s in spans}

    consumers = [s for s in spans if s.name.startswith("process ")]

    assert {by_id[s.parent_id].name.split()[0] for s in consumers} == {"publish"}
    assert {s.service for s in consumers} >= {"payments-approval", "payments-order"}


async def test_the_orders_queries_for_a_payment_event_run_in_a_batch_span_in_its_trace(
    receiver: Receiver, customer: Buyer
) -> None:
    _, spans, _ = await paid_trace(receiver, customer)
    by_id = {s.span_id: s for s in spans}

    batches = [s for s in spans if s.name == "batch order.payment-results"]
    queries = [s for s in spans if s.parent_id in {b.span_id for b in batches}]

    assert batches  # one per event: at this rate each is a batch of one, in its event's trace
    parents = {by_id[b.parent_id].name for b in batches}
    assert all(p.startswith("process ") and p.endswith("order.payment-results") for p in parents)
    assert queries
    assert all("db.system" in q.attributes or "db.system.name" in q.attributes for q in queries)


async def test_the_trace_has_one_root_the_success_redirect_at_checkout(
    receiver: Receiver, customer: Buyer
) -> None:
    _, spans, _ = await paid_trace(receiver, customer)

    roots = [s for s in spans if not s.parent_id]

    assert [(r.service, r.attributes.get("http.route")) for r in roots] == [
        ("payments-checkout", "/payments/success")
    ]


async def test_no_span_holds_a_payment_key_but_masked(receiver: Receiver, customer: Buyer) -> None:
    trace_id, _, order_id = await paid_trace(receiver, customer)
    payment_key = (await customer.order(order_id))["payment"]["paymentKey"]

    exported = str([s.attributes for s in receiver.spans()])

    assert payment_key not in exported
    assert masked(payment_key) in str([s.attributes for s in trace_of(receiver, trace_id)])


async def test_a_refund_is_traced_from_its_cancel_request_through_approval_and_the_pg_to_the_order(
    receiver: Receiver, customer: Buyer
) -> None:
    _, _, order_id = await paid_trace(receiver, customer)
    cancel = await customer.gateway.post(f"/api/orders/{order_id}/cancel", json={"reason": "r"})
    assert cancel.status_code == 202, cancel.text

    root = ("payments-order", "/api/orders/{order_id}/cancel")
    _, spans = await traced_from(receiver, order_id, root, ("payments-order", "payment.refunded"))

    assert {s.service for s in spans} >= {"payments-order", "payments-approval"}
    assert calls_to(spans, "/cancel") == ["payments-approval"]


async def test_a_pg_webhook_is_traced_from_checkout_through_the_queue_to_approval(
    receiver: Receiver, customer: Buyer
) -> None:
    _, _, order_id = await paid_trace(receiver, customer)

    root = ("payments-checkout", "/webhooks/toss")
    _, spans = await traced_from(receiver, order_id, root, ("payments-approval", "pg.reported"))

    handled = [s for s in spans if s.name.startswith("process ")]
    assert {s.service for s in handled} == {"payments-approval"}


def log_lines(stack: Stack) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for path in sorted((stack.config.run_dir / "logs").glob("*.log")):
        for text in path.read_text().splitlines():
            if text.startswith("{"):
                lines.append(orjson.loads(text))
    return lines


def traces_of(lines: list[dict[str, Any]], message: str) -> set[str]:
    return {line["trace_id"] for line in lines if line["msg"] == message}


async def test_the_log_lines_of_a_payment_share_its_trace_id(
    receiver: Receiver, customer: Buyer, traced: Stack
) -> None:
    trace_id, _, order_id = await paid_trace(receiver, customer)
    about_order = [line for line in log_lines(traced) if line.get("orderId") == order_id]
    # Placing the order and the PG's webhooks are traces of their own, about the same order.
    others = traces_of(about_order, "order placed") | traces_of(about_order, "webhook received")

    payment = [line for line in about_order if line.get("trace_id") not in others]

    assert {line.get("trace_id") for line in payment} == {trace_id}
    assert {line["service"] for line in payment} >= {"checkout", "approval", "order"}
    assert all(line.get("span_id") for line in payment)
