"""The benchmark's per-approval counters."""

from __future__ import annotations

import math

from bench.measure import per_approval


def test_a_counter_grows_per_approval_by_its_difference_over_the_approvals() -> None:
    assert per_approval(1_000, 31_000, 1_000) == 30.0


def test_a_counter_that_could_not_be_read_gives_nan_not_zero() -> None:
    assert math.isnan(per_approval(None, 31_000, 1_000))
    assert math.isnan(per_approval(1_000, None, 1_000))


def test_no_approvals_give_nan_instead_of_dividing_by_zero() -> None:
    assert math.isnan(per_approval(1_000, 2_000, 0))
