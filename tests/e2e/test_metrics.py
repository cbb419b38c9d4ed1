"""Every process of a real stack serves Prometheus metrics on its own port, listed in the run
directory's targets file, and a payment moves the counters of every role it passes through."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from deploy.stack import Stack, metrics_targets_file
from tests.e2e.buyer import Buyer
from tests.integration.shared.helpers import eventually

pytestmark = pytest.mark.e2e

Labels = dict[str, str]
# What one approved payment must move, by role: (sample name, labels it must carry).
MOVED_BY_A_PAYMENT: dict[str, list[tuple[str, Labels]]] = {
    "order": [
        ("order_orders_placed_total", {}),
        ("order_payment_events_total", {"event": "PaymentApproved"}),
        ("http_requests_total", {"handler": "/api/orders", "method": "POST", "status": "2xx"}),
        ("http_request_duration_seconds_count", {"handler": "/api/orders"}),
        ("outbox_published_total", {}),
        ("consumer_messages_total", {"queue": "order.payment-results", "outcome": "acked"}),
    ],
    "checkout": [
        ("checkout_redirects_total", {"kind": "success"}),
        ("http_requests_total", {"handler": "/payments/success", "status": "3xx"}),
        ("outbox_published_total", {}),
        ("consumer_messages_total", {"queue": "checkout.placed-orders", "outcome": "acked"}),
    ],
    "approval": [
        ("approval_attempt_outcomes_total", {"state": "APPROVED"}),
        ("approval_pg_call_seconds_count", {"endpoint": "confirm", "outcome": "ok"}),
        ("approval_settlement_seconds_count", {"state": "APPROVED"}),
        ("approval_confirm_window_remaining_seconds_count", {}),
        ("outbox_published_total", {}),
    ],
    "sandbox": [
        ("sandbox_confirms_total", {"status": "200"}),
        ("http_requests_total", {"handler": "/v1/payments/confirm", "status": "2xx"}),
    ],
}


def targets(stack: Stack) -> list[tuple[str, str, str]]:
    """(role, instance, URL of /metrics) for each process in the targets file."""
    groups = json.loads(metrics_targets_file(stack.config).read_text())
    return [
        (group["labels"]["role"], group["labels"]["instance"], f"http://{target}/metrics")
        for group in groups
        for target in group["targets"]
    ]


async def scrape(url: str) -> list[Sample]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(url)
    response.raise_for_status()
    families = text_string_to_metric_families(response.text)
    return [sample for family in families for sample in family.samples]


def total(samples: list[Sample], name: str, labels: Labels) -> float:
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


async def role_samples(stack: Stack, role: str) -> list[Sample]:
    """The samples of every process of ``role`` (approval's workers together)."""
    found: list[Sample] = []
    for each_role, _, url in targets(stack):
        if each_role == role:
            found += await scrape(url)
    return found


async def counts(stack: Stack) -> dict[tuple[str, str, str], float]:
    counted = {}
    for role, expected in MOVED_BY_A_PAYMENT.items():
        samples = await role_samples(stack, role)
        for name, labels in expected:
            counted[role, name, json.dumps(labels)] = total(samples, name, labels)
    return counted


def unmoved(
    before: dict[tuple[str, str, str], float], after: dict[tuple[str, str, str], float]
) -> Iterator[tuple[str, str, str]]:
    return (key for key, value in after.items() if value <= before[key])


def paid(order: dict[str, object]) -> bool:
    return order["status"] == "PAID"


def test_the_targets_file_lists_every_process_with_its_role(stack: Stack) -> None:
    listed = {(role, instance) for role, instance, _ in targets(stack)}
    assert listed == {
        ("order", "order"),
        ("checkout", "checkout"),
        ("ops", "ops"),
        ("sandbox", "sandbox"),
        ("approval", "approval-0"),
        ("approval", "approval-1"),
    }


async def test_every_process_serves_metrics_that_prometheus_can_parse(stack: Stack) -> None:
    for role, instance, url in targets(stack):
        names = {sample.name for sample in await scrape(url)}
        assert "process_cpu_seconds_total" in names, (role, instance)


async def test_roles_with_an_outbox_or_a_queue_report_their_backlog_and_dead_letters(
    stack: Stack,
) -> None:
    async def sampled() -> bool:
        order, checkout, approval = [
            {s.name for s in await role_samples(stack, role)}
            for role in ("order", "checkout", "approval")
        ]
        gauges = {"outbox_backlog", "outbox_oldest_unpublished_seconds", "queue_messages"}
        gauges |= {"dead_letter_queue_messages"}
        return all(gauges <= names for names in (order, checkout, approval))

    await eventually(sampled, within=30)


async def test_a_payment_moves_the_counters_of_every_role_it_passes(
    stack: Stack, buyer: Buyer
) -> None:
    before = await counts(stack)
    order = await buyer.place_order()
    await buyer.pay(order)
    await buyer.wait_for(order["orderId"], paid)
    after: dict[tuple[str, str, str], float] = {}

    async def all_moved() -> bool:
        after.update(await counts(stack))
        return not list(unmoved(before, after))

    try:
        await eventually(all_moved, within=30)
    except AssertionError:
        pytest.fail(f"counters that did not move: {sorted(unmoved(before, after))}")


async def test_no_sample_is_labelled_with_an_order_id_or_a_payment_key(
    stack: Stack, buyer: Buyer
) -> None:
    order = await buyer.place_order()
    await buyer.pay(order)
    final = await buyer.wait_for(order["orderId"], paid)
    identifiers = {order["orderId"], final["payment"]["paymentKey"]}
    for _, instance, url in targets(stack):
        values = {value for s in await scrape(url) for value in s.labels.values()}
        assert not {v for v in values for i in identifiers if i in v}, instance
