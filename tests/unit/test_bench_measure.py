"""The benchmark's per-approval counters."""

from __future__ import annotations

import math

from bench.measure import (
    by_role_per_payment,
    calls_by_user,
    heaviest_statements,
    peak_overlap,
    peak_rate,
    per_approval,
)


def test_a_counter_grows_per_approval_by_its_difference_over_the_approvals() -> None:
    assert per_approval(1_000, 31_000, 1_000) == 30.0


def test_a_counter_that_could_not_be_read_gives_nan_not_zero() -> None:
    assert math.isnan(per_approval(None, 31_000, 1_000))
    assert math.isnan(per_approval(1_000, None, 1_000))


def test_no_approvals_give_nan_instead_of_dividing_by_zero() -> None:
    assert math.isnan(per_approval(1_000, 2_000, 0))


def test_the_peak_rate_counts_the_busiest_window() -> None:
    assert peak_rate([0.0, 0.1, 0.2, 1.5, 1.6, 1.7, 1.8, 3.0]) == 4.0


def test_the_peak_rate_of_nothing_is_zero() -> None:
    assert peak_rate([]) == 0.0


def test_the_peak_overlap_counts_spans_open_at_once() -> None:
    assert peak_overlap([(0.0, 1.0), (0.5, 1.5), (0.9, 2.0), (1.0, 3.0)]) == 3


def test_a_span_ending_as_another_starts_does_not_overlap_it() -> None:
    assert peak_overlap([(0.0, 1.0), (1.0, 2.0)]) == 1


def test_statements_per_payment_are_split_by_service_role_leaving_the_admin_out() -> None:
    before = {"bench_x_order": 10, "bench_x_approval": 5, "postgres": 100}
    after = {"bench_x_order": 30, "bench_x_approval": 25, "bench_x_checkout": 10, "postgres": 900}

    split = by_role_per_payment(before, after, "bench_x", payments=10)

    assert split == {"approval": 2.0, "checkout": 1.0, "order": 2.0}


def test_statements_by_role_are_empty_where_they_could_not_be_read() -> None:
    assert by_role_per_payment(None, {"bench_x_order": 3}, "bench_x", 10) == {}


def test_heaviest_statements_are_the_roles_growth_per_payment_most_time_first() -> None:
    before = {("bench_x_order", "SELECT 1"): (10, 5.0), ("postgres", "SELECT 2"): (1, 1.0)}
    after = {
        ("bench_x_order", "SELECT 1"): (30, 9.0),
        ("bench_x_approval", "UPDATE   t\n SET a = $1"): (10, 20.0),
        ("bench_x_checkout", "SELECT 3"): (4, 0.0),
        ("postgres", "SELECT 2"): (500, 900.0),
    }

    rows = heaviest_statements(before, after, "bench_x", payments=10)

    assert [(r["role"], r["statement"]) for r in rows] == [
        ("approval", "UPDATE t SET a = $1"),
        ("order", "SELECT 1"),
        ("checkout", "SELECT 3"),
    ]
    assert (rows[0]["calls_per_payment"], rows[0]["ms_per_payment"]) == (1.0, 2.0)
    assert (rows[1]["calls_per_payment"], rows[1]["ms_per_payment"]) == (2.0, 0.4)


def test_calls_by_user_add_up_each_roles_statements() -> None:
    times = {("a", "SELECT 1"): (3, 1.0), ("a", "SELECT 2"): (4, 2.0), ("b", "SELECT 1"): (5, 0.5)}

    assert calls_by_user(times) == {"a": 7, "b": 5}
    assert calls_by_user(None) is None
