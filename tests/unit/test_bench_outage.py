"""bench.outage: completions per second, and how soon after the database's return they reach
the offered rate."""

from __future__ import annotations

from bench import outage

RETURNED = 1000.0
# 10/s from 70 s before the return; the database was down for the last 60 of them.
WINDOW = outage.Window(
    started_at=RETURNED - 70, stopped_at=RETURNED - 60, returned_at=RETURNED, rate=10
)


def offered_until(moment: float) -> list[float]:
    """Payments paid as soon as they were offered, up to ``moment``."""
    return [
        WINDOW.started_at + i / WINDOW.rate for i in range(int((moment - WINDOW.started_at) * 10))
    ]


def test_completions_are_counted_per_whole_second_from_the_origin() -> None:
    assert outage.per_second([99.0, 100.2, 100.9, 102.5], origin=100.0) == [2, 0, 1]


def test_full_rate_is_back_once_every_payment_offered_a_second_before_is_paid() -> None:
    before = offered_until(WINDOW.stopped_at)
    backlog_paid_3_s_after = [RETURNED + 3.0] * (600 + 30)

    assert outage.back_to_full_rate_s(before + backlog_paid_3_s_after, WINDOW) == 3.0


def test_a_trickle_after_the_return_is_not_full_rate() -> None:
    before = offered_until(WINDOW.stopped_at)
    trickle = [RETURNED + 0.5] * 20
    rest = [RETURNED + 9.5] * (600 + 100)

    assert outage.back_to_full_rate_s(before + trickle + rest, WINDOW) == 10.0


def test_payments_lost_for_good_do_not_hold_full_rate_back() -> None:
    everything_but_the_outage = offered_until(WINDOW.stopped_at) + [RETURNED + 0.5] * 10

    assert outage.back_to_full_rate_s(everything_but_the_outage, WINDOW) == 1.0


def test_nothing_paid_after_the_return_is_back_at_once_when_nothing_is_due() -> None:
    assert outage.back_to_full_rate_s([], WINDOW) == 0.0


def test_the_first_completion_after_the_return_is_timed_from_the_return() -> None:
    assert outage.first_paid_after_return_s([RETURNED - 1, RETURNED + 4.5], WINDOW) == 4.5
