"""`make bench` settings: flags, each defaulting to its environment variable."""

from __future__ import annotations

import pytest

from bench.config import parse

ENVIRONMENT = {
    "BENCH_PAYMENTS": "300",
    "BENCH_RATE": "75.5",
    "BENCH_PG_LATENCY_MS": "1000",
    "APPROVAL_WORKERS": "1",
}


def test_the_environment_sets_payments_rate_pg_latency_and_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)

    config = parse([])

    assert (config.payments, config.rate, config.pg_latency_ms, config.approval_workers) == (
        300,
        75.5,
        1000,
        1,
    )


def test_a_flag_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_RATE", "75.5")

    assert parse(["--rate", "10"]).rate == 10.0


def test_without_either_the_defaults_run_both_designs(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*ENVIRONMENT, "BENCH_WARMUP"]:
        monkeypatch.delenv(name, raising=False)

    config = parse([])

    assert (config.payments, config.rate, config.warmup, config.baseline) == (
        2000,
        500.0,
        100,
        True,
    )
