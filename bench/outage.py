"""PostgreSQL stopped during a run: what came through, and how soon the rate came back."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """When the first redirect was due, when the database went away and came back (epoch
    seconds), and the rate offered."""

    started_at: float
    stopped_at: float
    returned_at: float
    rate: float


# A payment offered this long ago may still be on its way when the system is at full rate.
IN_FLIGHT_S = 1.0


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
    """Whole seconds from the database's return until the backlog is gone: every payment
    offered up to ``IN_FLIGHT_S`` before is paid (of those paid in the end: a payment lost
    for good does not hold the figure back). NaN if that never happened."""
    done = sorted(paid_at)
    last = done[-1] if done else window.returned_at
    for second in range(int(last - window.returned_at) + 2):
        moment = window.returned_at + second
        due = min(len(done), window.rate * (moment - window.started_at - IN_FLIGHT_S))
        if bisect.bisect_right(done, moment) >= due:
            return float(second)
    return math.nan


def first_paid_after_return_s(paid_at: list[float], window: Window) -> float:
    later = [moment - window.returned_at for moment in paid_at if moment >= window.returned_at]
    return min(later, default=math.nan)
