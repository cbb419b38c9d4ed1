"""What the sandbox does, one atomic write per state change: the use cases behind the routes.

A confirm decides on the payment as read and writes its changes in one statement only if the row
is still that version (else it reads again and decides again); cancels, expiry and the window
change a payment while its row is locked (``SELECT … FOR UPDATE``). Either way concurrent
confirms, cancels and the expiry sweeper, in this process or another one on the same database,
see each other's effects in turn. A webhook and an idempotent answer commit with the change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import asyncpg
import orjson

from services.sandbox import domain, repository
from services.sandbox.domain import Faults, Payment, PgError, Status, WindowRequest
from services.sandbox.repository import IdempotencySlot, SlotAnswer, Snapshot, StoredResponse
from shared.db import Connection

log = logging.getLogger(__name__)

# An in-flight idempotency slot older than this belongs to a dead process (latency is capped
# well below it).
STALE_IN_FLIGHT = timedelta(minutes=5)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Sandbox:
    """The running sandbox: its pool and the settings its use cases need."""

    pool: asyncpg.Pool
    mid: str
    webhook_url: str | None
    faults_ttl: float = 0.2
    webhook_wake: asyncio.Event = field(default_factory=asyncio.Event)
    _faults: Faults = field(default_factory=Faults)
    _faults_read_at: float = float("-inf")
    _faults_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def faults(self) -> Faults:
        """The shared fault knobs, cached for ``faults_ttl`` seconds (one read at a time)."""
        if time.monotonic() - self._faults_read_at > self.faults_ttl:
            async with self._faults_lock:
                if time.monotonic() - self._faults_read_at > self.faults_ttl:
                    async with self.pool.acquire() as conn:
                        self._faults = await repository.read_faults(conn)
                    self._faults_read_at = time.monotonic()
        return self._faults

    async def set_faults(self, faults: Faults) -> None:
        async with self.pool.acquire() as conn:
            await repository.write_faults(conn, faults)
        self._faults, self._faults_read_at = faults, time.monotonic()

    def webhook(self, payment: Payment, now: datetime) -> repository.Webhook | None:
        """The PAYMENT_STATUS_CHANGED webhook for the payment's new status, if any is sent."""
        if not self.webhook_url or payment.status not in domain.WEBHOOK_STATUSES:
            return None
        body = domain.webhook_body(payment, now, self.mid)
        return repository.Webhook(self.webhook_url, body, now)

    async def announce(self, conn: Connection, payment: Payment, now: datetime) -> bool:
        """Enqueue the PAYMENT_STATUS_CHANGED webhook for the payment's new status, if any."""
        webhook = self.webhook(payment, now)
        if webhook is not None:
            await repository.enqueue_webhook(conn, payment.payment_key, webhook)
        return webhook is not None

    def wake_webhooks(self) -> None:
        """Have the sender look for due deliveries now (after a commit that enqueued some)."""
        if self.webhook_url:
            self.webhook_wake.set()


@dataclass(frozen=True)
class Reply:
    """An API answer: status and JSON body (encoded); ``drop`` closes the connection instead."""

    status: int
    body: bytes
    drop: bool = False
    replayable: bool = True

    @classmethod
    def json(cls, status: int, body: dict[str, Any], drop: bool = False) -> Reply:
        return cls(status, orjson.dumps(body), drop)

    @classmethod
    def error(cls, error: PgError, english: bool) -> Reply:
        return cls(error.status, orjson.dumps(error.body(english)), replayable=error.replayable)

    @classmethod
    def replay(cls, stored: StoredResponse) -> Reply:
        """The stored answer of an idempotent request; 409 while that request is in flight."""
        if stored.status is None or stored.body is None:
            raise PgError("IDEMPOTENT_REQUEST_PROCESSING")
        return cls(stored.status, stored.body)

    def answer(self, slot: IdempotencySlot | None) -> SlotAnswer | None:
        """What to keep in the slot: this answer for replay, or nothing (the slot is freed)."""
        if slot is None:
            return None
        if self.replayable:
            return SlotAnswer(slot, self.status, self.body)
        return SlotAnswer(slot, None, None)


async def _finish(conn: Connection, slot: IdempotencySlot | None, reply: Reply) -> Reply:
    """Record the answer for replay in the same transaction as the change (or free the slot)."""
    if slot is not None:
        if reply.replayable:
            await repository.complete_idempotency(conn, slot, reply.status, reply.body)
        else:
            await repository.release_idempotency(conn, slot)
    return reply


@contextlib.asynccontextmanager
async def _released_on_error(sandbox: Sandbox, slot: IdempotencySlot | None) -> AsyncIterator[None]:
    """Free the claimed slot when the request fails, so that a retry runs afresh."""
    try:
        yield
    except BaseException:
        if slot is not None:
            await _release(sandbox, slot)
        raise


async def _release(sandbox: Sandbox, slot: IdempotencySlot, tries: int = 5) -> None:
    """Free the slot of a request that failed. The failure may be the database's own (a backend
    terminated mid-request): retry on fresh connections, or every retry with this key would meet
    IDEMPOTENT_REQUEST_PROCESSING until the slot goes stale."""
    for attempt in range(tries):
        try:
            async with sandbox.pool.acquire() as conn:
                await repository.release_idempotency(conn, slot)
            return
        except Exception:
            if attempt == tries - 1:
                raise
            log.warning("releasing an idempotency slot failed; retrying", exc_info=True)
            await asyncio.sleep(0.05 * 2**attempt)


# ---------------------------------------------------------------- API


async def confirm(
    sandbox: Sandbox,
    request: domain.ConfirmRequest,
    slot: IdempotencySlot | None,
    english: bool,
) -> Reply:
    """Confirm once per idempotency slot (a replay answers what the first one did)."""
    faults = await sandbox.faults()
    async with sandbox.pool.acquire() as conn:
        stored, read = await repository.claim_and_read(
            conn, slot, request.payment_key, STALE_IN_FLIGHT
        )
    if stored is not None:
        return Reply.replay(stored)
    async with _released_on_error(sandbox, slot):
        if faults.confirm_latency_ms:
            # Without a connection: a slow PG must not exhaust the pool.
            await asyncio.sleep(faults.confirm_latency_ms / 1000)
        async with sandbox.pool.acquire() as conn:
            reply, announced = await _confirm_read(
                sandbox, conn, request, read, slot, faults, english
            )
    if announced:
        sandbox.wake_webhooks()
    return reply


async def _confirm_read(
    sandbox: Sandbox,
    conn: Connection,
    request: domain.ConfirmRequest,
    read: Snapshot | None,
    slot: IdempotencySlot | None,
    faults: Faults,
    english: bool,
) -> tuple[Reply, bool]:
    """Decide on the payment as read and save; decide again on a fresh read while another
    change got in first. Returns the answer and whether a webhook was enqueued."""
    while read is not None:
        payment, now = read.payment, utcnow()
        before = payment.status
        payment.confirm_calls += 1
        if slot is not None:
            payment.last_confirm_idempotency_key = slot.key
        reply = _decide_confirm(payment, request, faults, now, english, sandbox.mid)
        webhook = sandbox.webhook(payment, now) if payment.status is not before else None
        if await repository.save_confirm(conn, read, webhook, reply.answer(slot)):
            return reply, webhook is not None
        read = await repository.read_payment(conn, request.payment_key)
    return await _finish(conn, slot, Reply.error(PgError("NOT_FOUND_PAYMENT"), english)), False


def _decide_confirm(
    payment: Payment,
    request: domain.ConfirmRequest,
    faults: Faults,
    now: datetime,
    english: bool,
    mid: str,
) -> Reply:
    if domain.expire_if_due(payment, now):
        return Reply.error(PgError("NOT_FOUND_PAYMENT_SESSION"), english)
    if payment.status is Status.IN_PROGRESS and random.random() < faults.error_rate:
        injected = PgError(faults.error_code, "sandbox fault")
        if injected.replayable:
            domain.abort(payment, injected)
        return Reply.error(injected, english)
    try:
        domain.confirm(payment, request, now)
    except PgError as error:
        return Reply.error(error, english)
    drop = random.random() < faults.drop_response_rate
    return Reply.json(200, domain.payment_object(payment, mid), drop=drop)


async def cancel(
    sandbox: Sandbox,
    payment_key: str,
    request: domain.CancelRequest,
    slot: IdempotencySlot | None,
    english: bool,
) -> Reply:
    """Cancel once per idempotency slot (a replay answers what the first one did)."""
    if slot is not None:
        async with sandbox.pool.acquire() as conn:
            stored = await repository.claim_idempotency(conn, slot, STALE_IN_FLIGHT)
        if stored is not None:
            return Reply.replay(stored)
    async with _released_on_error(sandbox, slot):
        return await _cancel(sandbox, payment_key, request, slot, english)


async def _cancel(
    sandbox: Sandbox,
    payment_key: str,
    request: domain.CancelRequest,
    slot: IdempotencySlot | None,
    english: bool,
) -> Reply:
    async with sandbox.pool.acquire() as conn, conn.transaction():
        payment = await repository.lock_payment(conn, payment_key)
        if payment is None:
            return await _finish(conn, slot, Reply.error(PgError("NOT_FOUND_PAYMENT"), english))
        now = utcnow()
        try:
            domain.cancel(payment, request, now)
        except PgError as error:
            return await _finish(conn, slot, Reply.error(error, english))
        await repository.save_payment(conn, payment)
        await sandbox.announce(conn, payment, now)
        reply = await _finish(
            conn, slot, Reply.json(200, domain.payment_object(payment, sandbox.mid))
        )
    sandbox.wake_webhooks()
    return reply


async def payment_by_key(sandbox: Sandbox, payment_key: str) -> Payment:
    async with sandbox.pool.acquire() as conn:
        payment = await repository.get_payment(conn, payment_key)
    if payment is None:
        raise PgError("NOT_FOUND_PAYMENT")
    return await _expire_on_read(sandbox, payment)


async def payment_by_order(sandbox: Sandbox, order_id: str) -> Payment:
    async with sandbox.pool.acquire() as conn:
        payment = await repository.payment_for_order(conn, order_id)
    if payment is None:
        raise PgError("NOT_FOUND_PAYMENT")
    return await _expire_on_read(sandbox, payment)


async def _expire_on_read(sandbox: Sandbox, payment: Payment) -> Payment:
    if payment.status in domain.OPEN_STATUSES and utcnow() >= payment.expires_at:
        await expire_due(sandbox, only=payment.payment_key)
        async with sandbox.pool.acquire() as conn:
            fresh = await repository.get_payment(conn, payment.payment_key)
        return fresh or payment
    return payment


async def ledger(sandbox: Sandbox, order_id: str | None) -> list[dict[str, Any]]:
    async with sandbox.pool.acquire() as conn:
        payments = await repository.ledger(conn, order_id)
    return [domain.ledger_entry(payment) for payment in payments]


# ---------------------------------------------------------------- expiry


async def expire_due(sandbox: Sandbox, only: str | None = None, limit: int = 500) -> int:
    """Mark open payments past their deadline EXPIRED (with webhooks); returns how many."""
    async with sandbox.pool.acquire() as conn, conn.transaction():
        now = utcnow()
        if only is not None:
            locked = await repository.lock_payment(conn, only)
            due = [locked] if locked is not None else []
        else:
            due = await repository.lock_due_for_expiry(conn, now, limit)
        expired = 0
        for payment in due:
            if domain.expire_if_due(payment, now):
                await repository.save_payment(conn, payment)
                await sandbox.announce(conn, payment, now)
                expired += 1
    if expired:
        sandbox.wake_webhooks()
    return expired


# ---------------------------------------------------------------- payment window


async def open_window(sandbox: Sandbox, request: WindowRequest) -> Payment:
    payment = domain.open_window(request, utcnow(), await sandbox.faults())
    async with sandbox.pool.acquire() as conn:
        await repository.insert_payment(conn, payment)
    return payment


class UnknownWindow(Exception):
    """The posted paymentKey names no open window of this order (unknown, or already used)."""


async def approve_window(
    sandbox: Sandbox, request: WindowRequest, payment_key: str | None, card_number: str
) -> str:
    """The buyer pressed Pay: authenticate (or reject the card); returns the redirect URL."""
    faults = await sandbox.faults()
    async with sandbox.pool.acquire() as conn, conn.transaction():
        now = utcnow()
        payment = await _window_payment(conn, request, payment_key, now, faults)
        before = payment.status
        url = _pass_window(payment, request, card_number, now, faults)
        await repository.save_payment(conn, payment)
        announced = payment.status is not before and await sandbox.announce(conn, payment, now)
    if announced:
        sandbox.wake_webhooks()
    return url


def _pass_window(
    payment: Payment, request: WindowRequest, card_number: str, now: datetime, faults: Faults
) -> str:
    if domain.expire_if_due(payment, now) or payment.status is Status.EXPIRED:
        return _fail_url(request, "PAY_PROCESS_ABORTED", "결제 시간이 만료되었습니다.")
    if payment.status is not Status.READY:  # a window already used: nothing to redirect to
        raise UnknownWindow(payment.payment_key)
    rejection = domain.card_rejection(card_number)
    if rejection is not None:
        domain.reject_in_window(payment, *rejection)
        return _fail_url(request, *rejection)
    domain.authenticate(payment, request, card_number, now, faults)
    return _success_url(request, payment)


async def _window_payment(
    conn: Connection,
    request: WindowRequest,
    payment_key: str | None,
    now: datetime,
    faults: Faults,
) -> Payment:
    if not payment_key:
        opened = domain.open_window(request, now, faults)
        await repository.insert_payment(conn, opened)
        return opened
    payment = await repository.lock_payment(conn, payment_key)
    if payment is None or payment.order_id != request.order_id:
        raise UnknownWindow(payment_key)
    return payment


def cancel_window_url(request: WindowRequest) -> str:
    """The buyer closed the window: the fail URL, without an orderId (like the real PG)."""
    query = {"code": "PAY_PROCESS_CANCELED", "message": "사용자에 의해 결제가 취소되었습니다."}
    return _with_query(request.fail_url, query)


def _success_url(request: WindowRequest, payment: Payment) -> str:
    query = {
        "paymentType": "NORMAL",
        "orderId": payment.order_id,
        "paymentKey": payment.payment_key,
        "amount": str(payment.total_amount),
    }
    return _with_query(request.success_url, query)


def _fail_url(request: WindowRequest, code: str, message: str) -> str:
    query = {"code": code, "message": message, "orderId": request.order_id}
    return _with_query(request.fail_url, query)


def _with_query(url: str, query: dict[str, str]) -> str:
    base, _, fragment = url.partition("#")
    joiner = "&" if "?" in base else "?"
    if base.endswith(("?", "&")):
        joiner = ""
    return f"{base}{joiner}{urlencode(query)}" + (f"#{fragment}" if fragment else "")
