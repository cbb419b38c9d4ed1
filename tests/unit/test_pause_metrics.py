"""The event loop's lag and the garbage collector's pauses are observed as they happen."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time

from prometheus_client import REGISTRY

from shared import metrics


def observed(name: str, **labels: str) -> tuple[float, float]:
    """(count, sum) of a histogram so far."""
    count = REGISTRY.get_sample_value(f"{name}_count", labels) or 0.0
    total = REGISTRY.get_sample_value(f"{name}_sum", labels) or 0.0
    return count, total


def compute_for(seconds: float) -> None:
    """What a CPU-bound callback does to every other task: hold the loop."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


async def test_a_loop_held_up_by_blocking_code_shows_as_lag() -> None:
    _, before = observed("event_loop_lag_seconds")
    watching = asyncio.create_task(metrics.watch_loop_lag(every=0.01))
    await asyncio.sleep(0.02)
    compute_for(0.1)
    await asyncio.sleep(0.03)
    watching.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watching
    _, after = observed("event_loop_lag_seconds")
    assert after - before >= 0.08


def test_each_collection_is_timed_under_its_generation() -> None:
    metrics.time_gc_pauses()
    metrics.time_gc_pauses()  # installed once, however often asked
    before, _ = observed("python_gc_pause_seconds", generation="2")
    gc.collect()
    after, _ = observed("python_gc_pause_seconds", generation="2")
    assert after - before == 1
