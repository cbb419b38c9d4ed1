"""What each failure of an approval handler means for the message."""

from __future__ import annotations

import asyncpg
import pytest

from services.approval.consumer import Disposition, disposition, translated
from services.approval.domain import AttemptState, IllegalTransition, UnexpectedEvent
from shared.events import Event, OrderExpired
from shared.messaging import Handler, PermanentFailure

EVENT = OrderExpired(correlation_id="order-0001", order_id="order-0001")


def failing(exc: Exception) -> Handler:
    async def handler(_: Event) -> None:
        raise exc

    return handler


def test_an_event_on_the_wrong_subscription_is_dead_lettered() -> None:
    assert disposition(UnexpectedEvent("x")) is Disposition.DEAD_LETTER


def test_a_value_postgresql_cannot_store_is_dead_lettered() -> None:
    assert disposition(asyncpg.DataError("out of range")) is Disposition.DEAD_LETTER


def test_a_row_that_moved_under_the_handler_is_retried() -> None:
    exc = IllegalTransition(AttemptState.APPROVED, AttemptState.CONFIRMING)
    assert disposition(exc) is Disposition.RETRY


def test_anything_else_is_retried() -> None:
    assert disposition(ConnectionResetError()) is Disposition.RETRY


async def test_a_dead_letter_failure_reaches_the_consumer_as_permanent() -> None:
    with pytest.raises(PermanentFailure, match="UnexpectedEvent"):
        await translated(failing(UnexpectedEvent("OrderExpired on approval.payments")))(EVENT)


async def test_a_retryable_failure_reaches_the_consumer_unchanged() -> None:
    with pytest.raises(ConnectionResetError):
        await translated(failing(ConnectionResetError()))(EVENT)
