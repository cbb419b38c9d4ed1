"""bench.search: a design's capacity, the highest offered rate it holds."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bench import search

LIMIT_MS = 100.0
RATES = search.Rates(start=50, floor=5, ceiling=2000)


def figures(p99: float = 10.0, **overrides: Any) -> dict[str, Any]:
    held = {"not_paid": 0, "redirect_errors": 0, "violations": 0, "client_lag_max_s": 0.0}
    return held | {"latency_ms": {"p99": p99}} | overrides


class Design:
    """Holds every rate up to ``capacity``; records the rates it was offered."""

    def __init__(self, capacity: float) -> None:
        self.capacity = capacity
        self.offered: list[float] = []

    async def offer(self, rate: float) -> dict[str, Any]:
        self.offered.append(rate)
        return figures(p99=10.0 if rate <= self.capacity else 500.0)


async def test_the_rate_doubles_while_held_then_bisects_to_the_highest_rate_held() -> None:
    design = Design(capacity=130)

    found = await search.search(design.offer, RATES, 6, LIMIT_MS)

    assert design.offered == [50, 100, 200, 150, 125, 137.5]
    assert found.rate == 125


async def test_a_ceiling_that_holds_ends_the_search_early() -> None:
    design = Design(capacity=10_000)

    found = await search.search(design.offer, replace(RATES, ceiling=150), 6, LIMIT_MS)

    assert design.offered == [50, 100, 150]
    assert found.rate == 150


async def test_no_rate_held_down_to_the_floor_is_a_capacity_of_zero() -> None:
    design = Design(capacity=1)

    found = await search.search(design.offer, RATES, 10, LIMIT_MS)

    assert design.offered == [50, 25, 12.5, 6.2]
    assert found.rate == 0
    assert not any(step.held for step in found.steps)


def test_a_p99_at_the_limit_does_not_hold() -> None:
    assert not search.holds(figures(p99=LIMIT_MS), LIMIT_MS)


def test_an_unpaid_payment_does_not_hold_whatever_the_latency() -> None:
    assert not search.holds(figures(not_paid=1), LIMIT_MS)


def test_a_refused_redirect_does_not_hold() -> None:
    assert not search.holds(figures(redirect_errors=1), LIMIT_MS)


def test_a_load_generator_a_second_behind_its_schedule_does_not_hold() -> None:
    assert not search.holds(figures(client_lag_max_s=1.0), LIMIT_MS)
