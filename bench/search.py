"""Capacity: the highest offered rate a design holds, found by doubling, then bisection."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Step:
    """One offered rate and what it gave."""

    rate: float
    held: bool
    figures: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "held": self.held} | self.figures


@dataclass(frozen=True)
class Capacity:
    """The highest rate held (0 when none was) and every step on the way to it."""

    rate: float
    steps: list[Step]

    def as_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "steps": [step.as_dict() for step in self.steps]}


def holds(figures: dict[str, Any], p99_limit_ms: float) -> bool:
    """Every payment paid, none refused, no violation, p99 under the limit, and the load
    generator on its schedule (else the rate was not really offered)."""
    return bool(
        figures["not_paid"] == 0
        and figures["redirect_errors"] == 0
        and figures["violations"] == 0
        and figures["latency_ms"]["p99"] < p99_limit_ms
        and figures["client_lag_max_s"] < 1.0
    )


async def search(
    offer: Callable[[float], Awaitable[dict[str, Any]]],
    rates: Rates,
    steps: int,
    p99_limit_ms: float,
) -> Capacity:
    """Offer ``rates.start``, double it while it holds (up to ``rates.ceiling``), then bisect
    between the highest rate held and the lowest that was not, ``steps`` offers at most; no
    rate under ``rates.floor`` is offered (a design that holds none has a capacity of 0)."""
    low, high, taken = 0.0, math.inf, []
    rate = min(rates.start, rates.ceiling)
    for _ in range(steps):
        figures = await offer(rate)
        step = Step(rate, holds(figures, p99_limit_ms), figures)
        taken.append(step)
        low, high = (rate, high) if step.held else (low, rate)
        rate = round(min(low * 2, rates.ceiling) if math.isinf(high) else (low + high) / 2, 1)
        if rate in (low, high) or rate < rates.floor:
            break  # the ceiling held, the interval is a tenth wide, or it is under the floor
    return Capacity(low, taken)


@dataclass(frozen=True)
class Rates:
    """Where the search starts, and the rates it never goes beyond."""

    start: float
    floor: float
    ceiling: float
