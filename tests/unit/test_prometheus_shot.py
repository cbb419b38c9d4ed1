"""The README's Prometheus pictures (deploy/prometheus_shot.py): the graph page's URL, its queries,
and how the shot reads Prometheus' API to know the targets are up and the alerts fire."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

from deploy import observe, prometheus_shot
from deploy.prometheus_shot import GRAPH_QUERIES
from tests.unit.test_grafana_dashboard import defined_series, metric_names
from tests.unit.test_prometheus_rules import promtool


def test_the_graph_page_opens_one_graph_panel_per_query_over_the_range() -> None:
    url = urlsplit(prometheus_shot.graph_path(("up", "sum(x)"), range_input="3m"))
    assert url.path == "/graph"
    assert parse_qs(url.query) == {
        "g0.expr": ["up"],
        "g0.tab": ["0"],
        "g0.range_input": ["3m"],
        "g1.expr": ["sum(x)"],
        "g1.tab": ["0"],
        "g1.range_input": ["3m"],
    }


def test_the_graph_queries_name_only_metrics_the_code_defines() -> None:
    used = set().union(*(metric_names(q) for q in prometheus_shot.GRAPH_QUERIES))
    assert used - defined_series() == set()


def test_the_shot_waits_for_alerts_the_rules_define() -> None:
    rules = yaml.safe_load(observe.RULES.read_text())
    defined = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert prometheus_shot.EXPECTED_FIRING - defined == set()


def test_only_firing_alerts_count_as_firing() -> None:
    alerts = [
        {"labels": {"alertname": "DeadLetter"}, "state": "firing"},
        {"labels": {"alertname": "PaymentPastConfirmWindow"}, "state": "pending"},
    ]
    assert prometheus_shot.firing(alerts) == {"DeadLetter"}


def test_targets_are_not_all_up_while_one_is_down() -> None:
    targets = [{"health": "up"}, {"health": "down"}]
    assert not prometheus_shot.all_up(targets, expected=2)


def test_targets_are_not_all_up_before_prometheus_has_read_every_one() -> None:
    assert not prometheus_shot.all_up([{"health": "up"}], expected=2)


def test_targets_are_all_up_when_every_expected_one_answers() -> None:
    assert prometheus_shot.all_up([{"health": "up"}, {"health": "up"}], expected=2)


def test_the_shots_configuration_scrapes_and_evaluates_at_its_short_interval(
    tmp_path: Path,
) -> None:
    config = yaml.safe_load(observe.write_config(tmp_path, scrape_interval="2s").read_text())
    assert config["global"] == {"scrape_interval": "2s", "evaluation_interval": "2s"}


def test_promtool_parses_every_graph_query(tmp_path: Path) -> None:
    """promtool checks PromQL only in rule files: each query becomes a recording rule."""
    rules = [{"record": f"shot:query{n}", "expr": q} for n, q in enumerate(GRAPH_QUERIES)]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "shot", "rules": rules}]}))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
