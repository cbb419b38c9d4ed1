"""The Grafana dashboard (deploy/grafana/dashboards/payments.json) loads, shows the payment SLOs,
and every panel's PromQL names only metrics the code defines: a renamed metric fails here, not
as an empty panel in production."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI
from prometheus_client import REGISTRY

import services.approval.metrics
import services.checkout.metrics
import services.order.metrics
import services.sandbox.metrics
from shared import metrics

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "payments.json"
ROLE_METRICS = (
    services.approval.metrics,
    services.checkout.metrics,
    services.order.metrics,
    services.sandbox.metrics,
)
# What Prometheus itself adds to every scrape.
SCRAPE_SERIES = {"up", "scrape_duration_seconds"}
PROMQL_WORDS = {"by", "without", "and", "or", "unless", "on", "ignoring", "bool", "offset"}
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count", ""),
    "info": ("_info",),
}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def expressions() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects: strings, label matchers, grouping
    clauses, ranges and function names removed, what is left that is a name."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    names = re.findall(r"(?<![\w.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()", expr)
    return {name for name in names if name not in PROMQL_WORDS}


def defined_series() -> set[str]:
    """Every series name the roles' metric modules and the shared HTTP instrumentation
    register in the default registry."""
    assert ROLE_METRICS  # imported for their registrations
    metrics.instrument_http(FastAPI())
    names = set(SCRAPE_SERIES)
    for family in REGISTRY.collect():
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return names


def test_the_dashboard_loads_with_panels_that_each_query_prometheus() -> None:
    loaded = dashboard()
    assert loaded["uid"] == "payments"
    assert all(panel["targets"] and panel["datasource"]["uid"] for panel in loaded["panels"])


def test_every_panel_names_only_metrics_the_code_defines() -> None:
    used = set().union(*(metric_names(expr) for expr in expressions()))
    assert used - defined_series() == set()


def test_the_expression_parser_finds_names_and_skips_labels_and_functions() -> None:
    expr = 'histogram_quantile(0.99, sum by (le, x) (rate(a_bucket{b="c"}[5m]))) / on(d) e'
    assert metric_names(expr) == {"a_bucket", "e"}


def test_the_dashboard_shows_the_payment_slos() -> None:
    used = set().union(*(metric_names(expr) for expr in expressions()))
    slo_series = {
        "approval_settlement_seconds_bucket",
        "approval_attempt_outcomes_total",
        "approval_attempts_unknown",
        "approval_oldest_unknown_attempt_seconds",
        "outbox_oldest_unpublished_seconds",
        "dead_letter_queue_messages",
        "approval_refunds",
    }
    assert slo_series <= used


def test_grafana_is_provisioned_with_the_prometheus_datasource_and_the_dashboards() -> None:
    provisioning = GRAFANA / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = sources["datasources"]
    assert (source["type"], source["uid"]) == ("prometheus", "prometheus")
    providers = yaml.safe_load((provisioning / "dashboards" / "payments.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
