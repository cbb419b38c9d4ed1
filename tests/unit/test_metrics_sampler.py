"""The metrics sampler: a probe that fails or hangs makes its gauge stale, never the others."""

from __future__ import annotations

import asyncio

from shared.metrics import Sampler


async def test_a_failing_or_hanging_probe_does_not_stop_the_others() -> None:
    ran: list[str] = []
    never = asyncio.Event()

    async def failing() -> None:
        raise ConnectionError("database gone")

    async def hanging() -> None:
        await never.wait()

    async def healthy() -> None:
        ran.append("healthy")

    sampler = Sampler(within=0.05)
    for name, probe in (("failing", failing), ("hanging", hanging), ("healthy", healthy)):
        sampler.add(name, probe)
    await sampler.sample()
    assert ran == ["healthy"]
