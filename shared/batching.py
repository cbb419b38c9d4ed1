"""Handling concurrent deliveries together: calls that arrive while a batch runs form the next.

A consumer handles each delivery in a task of its own (up to its prefetch at once). Where the
work is a few statements per event, :class:`Batcher` lets those tasks share the statements:
each submits its item and awaits its own outcome, and one batch function handles everything
submitted meanwhile with multi-row statements. Nothing waits for a batch to fill: an item
submitted while no batch runs is handled at once, by its own caller, as a batch of one (the
quiet case); batches form only under load, where they pay.

The consumer's policy stays per message: the batch function returns an outcome per item (a
value or the exception that item raised). Should the batch function itself raise because of one
item (a value that cannot be stored, a bug), each item of that batch is run again alone, so the
exception reaches only the messages it belongs to, and each message is acked, retried or
dead-lettered on its own, as without batching. An outage (``shared.messaging``'s transient
failures: the database unreachable, …) is every item's: each gets it at once and waits.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from opentelemetry.trace import SpanContext

from shared import tracing
from shared.messaging import Disposition, disposition
from shared.metrics import BATCH_SIZE

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

# Handles the items in one go; returns, in their order, each one's result or its exception.
BatchFunction = Callable[[Sequence[Item]], Awaitable[Sequence[Result | Exception]]]


@dataclass
class _Waiting(Generic[Item, Result]):
    item: Item
    # The span it was submitted under: the batch's span links to it.
    span: SpanContext = field(default_factory=tracing.active_span)
    outcome: asyncio.Future[Result] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Batcher(Generic[Item, Result]):
    """Runs ``handle`` on what was submitted: at most ``concurrency`` batches at once, of at
    most ``max_size`` items each; ``name`` labels the batch-size metric."""

    def __init__(
        self,
        name: str,
        handle: BatchFunction[Item, Result],
        max_size: int = 64,
        concurrency: int = 1,
    ) -> None:
        self._name = name
        self._handle = handle
        self._max_size = max_size
        self._concurrency = concurrency
        self._running = 0  # batches running: once at the limit, what is submitted waits
        self._waiting: list[_Waiting[Item, Result]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        """``item``'s result, or the exception it raised, once a batch has handled it."""
        if self._running >= self._concurrency:
            waiting: _Waiting[Item, Result] = _Waiting(item)
            self._waiting.append(waiting)
            return await waiting.outcome
        # The quiet case: a batch of one, run by its caller, in its trace and log context.
        self._running += 1
        try:
            BATCH_SIZE.labels(self._name).observe(1)
            with tracing.batch(self._name, [tracing.active_span()]):
                [outcome] = await self._handle([item])
        finally:
            self._running -= 1
            self._run_waiting()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _run_waiting(self) -> None:
        """What arrived meanwhile runs in tasks, in batches, each in a context of its own: no
        one delivery's (its span links to each one's, see shared.tracing.batch; its log lines
        name no one order)."""
        while self._waiting and self._running < self._concurrency:
            batch = self._waiting[: self._max_size]
            del self._waiting[: self._max_size]
            self._running += 1
            task = asyncio.create_task(
                self._run(batch), name=f"batch:{self._name}", context=contextvars.Context()
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[_Waiting[Item, Result]]) -> None:
        try:
            BATCH_SIZE.labels(self._name).observe(len(batch))
            await self._settle(batch)
        except asyncio.CancelledError:  # shutting down: nobody would run the waiting either
            for waiting in self._waiting:
                waiting.outcome.cancel()
            self._waiting.clear()
            raise
        finally:
            self._running -= 1
            self._run_waiting()

    async def _settle(self, batch: list[_Waiting[Item, Result]]) -> None:
        try:
            with tracing.batch(self._name, [waiting.span for waiting in batch]):
                outcomes = await self._handle([waiting.item for waiting in batch])
        except Exception as exc:
            if len(batch) == 1 or disposition(exc) is Disposition.WAIT:
                # An outage is every item's: each message waits it out, none runs alone now.
                for waiting in batch:
                    _resolve(waiting, exc)
                return
            log.info("a batch failed; its items run again alone", extra={"batch": self._name})
            for waiting in batch:
                await self._settle([waiting])
            return
        except BaseException as exc:  # cancelled (shutting down): so are the callers
            for waiting in batch:
                _resolve(waiting, exc)
            raise
        for waiting, outcome in zip(batch, outcomes, strict=True):
            _resolve(waiting, outcome)


def _resolve(waiting: _Waiting[Item, Result], outcome: Result | BaseException) -> None:
    if waiting.outcome.done():  # its caller was cancelled and is gone
        return
    if isinstance(outcome, asyncio.CancelledError):
        waiting.outcome.cancel()
    elif isinstance(outcome, BaseException):
        waiting.outcome.set_exception(outcome)
    else:
        waiting.outcome.set_result(outcome)
