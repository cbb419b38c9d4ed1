"""The console's use cases: what a page shows and what a button does. Each action calls the
function its operator command calls (:func:`services.approval.refunds.retry_refund`,
:func:`shared.deadletters.replay`) and is audited with its outcome; nothing here knows HTTP."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

import aiormq
import asyncpg
from aio_pika.abc import AbstractConnection

from services.approval import repository as approval
from services.approval.domain import RefundState, SecurityEvent, SecurityKind
from services.approval.refunds import retry_refund
from services.ops import repository as repo
from services.ops.repository import Action, InFlight, ReconciliationRun
from shared import deadletters
from shared.deadletters import DeadLetter
from shared.logging import masked
from shared.messaging import Topology

log = logging.getLogger(__name__)

# What `make refunds` lists by default (services/approval/operator_cli.py: OPEN_REFUNDS).
OPEN_REFUNDS = [
    RefundState.FAILED,
    RefundState.UNKNOWN,
    RefundState.REQUESTED,
    RefundState.CANCELING,
]
# Findings whose expected or presented value is a paymentKey (shown masked).
KEYS_IN_FINDING = frozenset({SecurityKind.ALREADY_PAID, SecurityKind.UNKNOWN_PAYMENT_KEY})
MAX_ID_LENGTH = 200
# The broker refused, or is not there: reconnecting, or the connection closed (aio_pika says
# that with a RuntimeError when a channel is asked of it).
BROKER_ERRORS = (aiormq.exceptions.AMQPError, ConnectionError, TimeoutError, RuntimeError)


class InvalidInput(ValueError):
    """A form or path value the console refuses before doing anything."""


class Outcome(enum.Enum):
    DONE = "done"
    NOT_FOUND = "not found"
    CONFLICT = "conflict"
    UNAVAILABLE = "unavailable"

    @property
    def audited_as(self) -> str:
        return {"done": "done", "unavailable": "failed"}.get(self.value, "refused")


@dataclass(frozen=True)
class Operator:
    name: str
    client_ip: str | None


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    message: str


@dataclass(frozen=True)
class DeadLetterQueue:
    name: str
    subscription: str
    letters: list[DeadLetter] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class Overview:
    in_flight: list[InFlight]
    stuck: list[approval.Stuck]
    refunds: list[approval.RefundRow]
    dead_letters: list[DeadLetterQueue]
    reconciliations: list[ReconciliationRun]
    security_events: list[SecurityEvent]
    actions: list[Action]

    @property
    def dead_letter_count(self) -> int:
        return sum(len(queue.letters) for queue in self.dead_letters)


def checked_id(value: str, what: str) -> str:
    """An identifier from a form or a path: present, printable, not absurdly long."""
    value = value.strip()
    if not value:
        raise InvalidInput(f"{what} is missing")
    if len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise InvalidInput(f"{what} is not a valid identifier (printable, up to 200 characters)")
    return value


def shown_finding(event: SecurityEvent) -> tuple[str, str]:
    """A security event's expected and presented values, paymentKeys masked."""
    if event.kind in KEYS_IN_FINDING:
        return masked(event.expected), masked(event.presented)
    return event.expected, event.presented


def shown_reason(letter: DeadLetter) -> str:
    """Why a message was dead-lettered, its event's paymentKey masked (an exception's text may
    quote it)."""
    if not letter.payment_key:
        return letter.reason
    return letter.reason.replace(letter.payment_key, masked(letter.payment_key))


@dataclass(frozen=True)
class Console:
    pool: asyncpg.Pool
    broker: AbstractConnection
    topology: Topology
    confirm_window_seconds: float
    limit: int

    async def overview(self) -> Overview:
        async with self.pool.acquire() as conn:
            in_flight = await repo.in_flight(conn, self.limit)
            # The same queries as `make stuck`, `make refunds` and `make security-events`.
            stuck = await approval.stuck_attempts(conn, self.confirm_window_seconds, self.limit)
            refunds = await approval.refunds_in(conn, OPEN_REFUNDS, self.limit)
            runs = await repo.reconciliation_runs(conn, 20)
            events = await approval.security_events(conn, None, self.limit)
            actions = await repo.recent_actions(conn, 20)
        letters = await self.dead_letters()
        return Overview(in_flight, stuck, refunds, letters, runs, events, actions)

    async def dead_letters(self) -> list[DeadLetterQueue]:
        """Every dead-letter queue's first messages (``make dead-letters``), left in place."""
        found = []
        for subscription in self.topology.subscriptions:
            name = self.topology.dead_letter_queue(subscription)
            try:
                letters = await deadletters.list_dead_letters(
                    self.broker, self.topology, subscription, self.limit
                )
                found.append(DeadLetterQueue(name, subscription.name, letters))
            except BROKER_ERRORS as exc:  # the rest of the page still shows
                found.append(DeadLetterQueue(name, subscription.name, error=type(exc).__name__))
        return found

    async def retry_refund(self, operator: Operator, refund_id: str) -> Result:
        """``python -m services.approval refunds retry ID``, audited in the same transaction."""
        refund_id = checked_id(refund_id, "refund id")
        async with self.pool.acquire() as conn, conn.transaction():
            refund = await approval.get_refund(conn, refund_id)
            if refund is None:
                result = Result(Outcome.NOT_FOUND, f"There is no refund {refund_id}.")
            elif await retry_refund(conn, refund_id):
                result = Result(Outcome.DONE, f"Refund {refund_id} will be asked again.")
            else:
                state = refund.state.value
                result = Result(
                    Outcome.CONFLICT, f"Refund {refund_id} is {state}, not FAILED: not retried."
                )
            await repo.record(conn, _audit(operator, "refund.retry", refund_id, result))
        return result

    async def replay(self, operator: Operator, queue: str, message_id: str) -> Result:
        """``python -m shared.deadletters replay --queue Q --message-id ID``, then audited."""
        message_id = checked_id(message_id, "message id")
        try:
            subscription = deadletters.find(self.topology, checked_id(queue, "queue"))
        except KeyError as exc:
            raise InvalidInput(f"there is no queue named {queue.strip()}") from exc
        target = f"{self.topology.dead_letter_queue(subscription)}/{message_id}"
        result = await self._replay(subscription.name, message_id)
        async with self.pool.acquire() as conn:
            await repo.record(conn, _audit(operator, "dead-letter.replay", target, result))
        return result

    async def _replay(self, subscription_name: str, message_id: str) -> Result:
        subscription = self.topology.subscription(subscription_name)
        try:
            done = await deadletters.replay(self.broker, self.topology, subscription, {message_id})
        except BROKER_ERRORS as exc:
            log.warning("replay failed", exc_info=True)
            return Result(
                Outcome.UNAVAILABLE, f"The broker refused the replay ({type(exc).__name__})."
            )
        if message_id in done.replayed:
            return Result(Outcome.DONE, f"Message {message_id} was sent back to its queue.")
        if message_id in done.skipped:
            return Result(
                Outcome.CONFLICT, f"Message {message_id} has no original routing key: left there."
            )
        return Result(
            Outcome.NOT_FOUND, f"No message {message_id} in that dead-letter queue (replayed?)."
        )


def _audit(operator: Operator, action: str, target: str, result: Result) -> Action:
    return Action(
        operator.name, action, target, result.outcome.audited_as, result.message, operator.client_ip
    )
