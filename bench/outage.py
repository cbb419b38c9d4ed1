"""PostgreSQL stopped during a run: what came through, and how soon the rate came back."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """When the database went away and came back (epoch seconds), and the rate offered."""

    stopped_at: float
    returned_at: float
    rate: float


# A second counts as "at full rate" once it completes this share of the rate offered.
FULL_RATE_SHARE = 0.9


def per_second(paid_at: list[float], origin: float) -> list[int]:
    """Payments completed in each whole second from ``origin`` on (earlier ones left out)."""
    counts: list[int] = []
    for moment in paid_at:
        if moment < origin:
            continue
        second = int(moment - origin)
        counts.extend([0] * (second + 1 - len(counts)))
        counts[second] += 1
    return counts


def back_to_full_rate_s(paid_at: list[float], window: Window) -> float:
    """Seconds from the database's return to the end of the first second that completed at
    least ``FULL_RATE_SHARE`` of the offered rate; NaN if none did."""
    wanted = FULL_RATE_SHARE * window.rate
    for second, count in enumerate(per_second(paid_at, window.returned_at)):
        if count >= wanted:
            return float(second + 1)
    return math.nan


def first_paid_after_return_s(paid_at: list[float], window: Window) -> float:
    later = [moment - window.returned_at for moment in paid_at if moment >= window.returned_at]
    return min(later, default=math.nan)
