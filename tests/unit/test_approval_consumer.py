"""What each failure of an approval handler means for the message."""

from __future__ import annotations

import asyncpg
import pytest

from services.approval.consumer import disposition, translated
from services.approval.domain import AttemptState, IllegalTransition, UnexpectedEvent
from shared.events import Event, OrderExpired
from shared.messaging import Disposition, Handler, PermanentFailure, Transient

EVENT = OrderExpired(correlation_id="order-0001", order_id="order-0001")


def failing(exc: Exception) -> Handler:
    async def handler(_: Event) -> None:
        raise exc

    return handler


def test_an_event_on_the_wrong_subscription_is_dead_lettered() -> None:
    assert disposition(UnexpectedEvent("x")) is Disposition.DEAD_LETTER


def test_a_value_postgresql_cannot_store_is_dead_lettered() -> None:
    assert disposition(asyncpg.DataError("out of range")) is Disposition.DEAD_LETTER


def test_a_row_that_moved_under_the_handler_waits_and_is_tried_again() -> None:
    exc = IllegalTransition(AttemptState.APPROVED, AttemptState.CONFIRMING)
    assert disposition(exc) is Disposition.WAIT


def test_a_lost_database_connection_waits_without_counting_a_delivery() -> None:
    assert disposition(ConnectionResetError()) is Disposition.WAIT
    assert disposition(asyncpg.exceptions.ConnectionDoesNotExistError()) is Disposition.WAIT
    assert disposition(asyncpg.exceptions.CannotConnectNowError()) is Disposition.WAIT


def test_a_bug_is_requeued_and_counted() -> None:
    assert disposition(KeyError("bug")) is Disposition.REQUEUE


async def test_a_dead_letter_failure_reaches_the_consumer_as_permanent() -> None:
    with pytest.raises(PermanentFailure, match="UnexpectedEvent"):
        await translated(failing(UnexpectedEvent("OrderExpired on approval.payments")))(EVENT)


async def test_a_waiting_failure_reaches_the_consumer_as_transient() -> None:
    with pytest.raises(Transient):
        await translated(failing(ConnectionResetError()))(EVENT)


async def test_a_bug_reaches_the_consumer_unchanged() -> None:
    with pytest.raises(KeyError):
        await translated(failing(KeyError("bug")))(EVENT)
