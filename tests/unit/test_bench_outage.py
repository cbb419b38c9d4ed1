"""bench.outage: completions per second, and how soon after the database's return they reach
the offered rate."""

from __future__ import annotations

import math

from bench import outage

RETURNED = 1000.0
WINDOW = outage.Window(stopped_at=RETURNED - 60, returned_at=RETURNED, rate=10)


def test_completions_are_counted_per_whole_second_from_the_origin() -> None:
    assert outage.per_second([99.0, 100.2, 100.9, 102.5], origin=100.0) == [2, 0, 1]


def test_full_rate_is_back_at_the_end_of_the_first_second_with_nine_tenths_of_the_rate() -> None:
    slow = [RETURNED + 0.5] * 3
    full = [RETURNED + 2.1] * 9

    assert outage.back_to_full_rate_s(slow + full, WINDOW) == 3.0


def test_completions_before_the_return_do_not_count_as_full_rate() -> None:
    before = [RETURNED - 0.5] * 20

    assert math.isnan(outage.back_to_full_rate_s(before, WINDOW))


def test_the_first_completion_after_the_return_is_timed_from_the_return() -> None:
    assert outage.first_paid_after_return_s([RETURNED - 1, RETURNED + 4.5], WINDOW) == 4.5
