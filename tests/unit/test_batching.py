"""shared.batching: concurrent submissions share a batch; each caller gets its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from shared.batching import Batcher


class Doubler:
    """A batch function that doubles numbers, records its batches and refuses 13."""

    def __init__(self, hold: asyncio.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self._hold = hold

    async def __call__(self, items: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        if self._hold is not None:
            await self._hold.wait()
        if 13 in items:
            raise ValueError("13 cannot be stored")
        return [item * 2 for item in items]


async def test_an_item_submitted_while_no_batch_runs_is_a_batch_of_one_in_its_callers_task() -> (
    None
):
    tasks: list[asyncio.Task[object] | None] = []

    async def doubles(items: Sequence[int]) -> list[int | Exception]:
        tasks.append(asyncio.current_task())
        return [item * 2 for item in items]

    batcher = Batcher("test", doubles)

    assert await batcher.submit(4) == 8
    assert tasks == [asyncio.current_task()]


async def test_items_submitted_while_a_batch_runs_form_the_next_batch() -> None:
    release = asyncio.Event()
    doubler = Doubler(release)
    batcher = Batcher("test", doubler)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)  # the first batch starts and waits
    await asyncio.sleep(0)
    later = [asyncio.create_task(batcher.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)

    release.set()

    assert await asyncio.gather(first, *later) == [2, 4, 6, 8]
    assert doubler.batches == [[1], [2, 3, 4]]


async def test_a_batch_holds_at_most_its_maximum_size() -> None:
    release = asyncio.Event()
    doubler = Doubler(release)
    batcher = Batcher("test", doubler, max_size=2)
    submitted = [asyncio.create_task(batcher.submit(n)) for n in range(6)]
    await asyncio.sleep(0)

    release.set()

    assert await asyncio.gather(*submitted) == [0, 2, 4, 6, 8, 10]
    assert doubler.batches == [[0], [1, 2], [3, 4], [5]]


async def test_a_failed_batch_runs_its_items_alone_and_the_failure_reaches_only_its_own() -> None:
    release = asyncio.Event()
    doubler = Doubler(release)
    batcher = Batcher("test", doubler)
    submitted = [asyncio.create_task(batcher.submit(n)) for n in (0, 1, 13, 2)]
    await asyncio.sleep(0)

    release.set()
    outcomes = await asyncio.gather(*submitted, return_exceptions=True)

    assert outcomes[1] == 2
    assert outcomes[3] == 4
    assert isinstance(outcomes[2], ValueError)
    assert doubler.batches == [[0], [1, 13, 2], [1], [13], [2]]


async def test_an_outcome_that_is_an_exception_is_raised_to_its_caller_alone() -> None:
    async def refuses_odd(items: Sequence[int]) -> list[int | Exception]:
        return [LookupError(n) if n % 2 else n for n in items]

    batcher = Batcher("test", refuses_odd)

    outcomes = await asyncio.gather(*(batcher.submit(n) for n in (1, 2)), return_exceptions=True)

    assert isinstance(outcomes[0], LookupError)
    assert outcomes[1] == 2


async def test_a_caller_cancelled_while_waiting_does_not_hold_up_the_others() -> None:
    release = asyncio.Event()
    batcher = Batcher("test", Doubler(release))
    gone = asyncio.create_task(batcher.submit(1))
    stays = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0)
    gone.cancel()

    release.set()

    assert await stays == 4
    with pytest.raises(asyncio.CancelledError):
        await gone


async def test_up_to_its_concurrency_items_run_at_once_each_alone_and_the_rest_wait() -> None:
    release = asyncio.Event()
    doubler = Doubler(release)
    batcher = Batcher("test", doubler, concurrency=2)
    submitted = [asyncio.create_task(batcher.submit(n)) for n in range(5)]
    await asyncio.sleep(0)

    assert doubler.batches == [[0], [1]]  # both running, the rest waiting
    release.set()

    assert await asyncio.gather(*submitted) == [0, 2, 4, 6, 8]
    assert doubler.batches == [[0], [1], [2, 3, 4]]


async def test_a_batch_failing_for_an_outage_gives_every_item_the_error_without_running_alone() -> (
    None
):
    release = asyncio.Event()
    calls: list[list[int]] = []

    async def database_down(items: Sequence[int]) -> list[int | Exception]:
        calls.append(list(items))
        await release.wait()
        raise ConnectionRefusedError("the database is down")

    batcher = Batcher("test", database_down)
    submitted = [asyncio.create_task(batcher.submit(n)) for n in range(3)]
    await asyncio.sleep(0)
    release.set()

    outcomes = await asyncio.gather(*submitted, return_exceptions=True)

    assert all(isinstance(outcome, ConnectionRefusedError) for outcome in outcomes)
    assert calls == [[0], [1, 2]]
