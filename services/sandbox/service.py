"""What the sandbox does, one atomic write per state change: the use cases behind the routes.

A confirm decides on the payment as read and writes its changes in one statement only if the row
is still that version (else it reads again and decides again); cancels, expiry, pending
completions and the window change a payment while its row is locked (``SELECT … FOR UPDATE``).
Either way concurrent changes, in this process or another one on the same database, see each
other's effects in turn. A webhook, the transactions and an idempotent answer commit with the
change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import asyncpg
import orjson

from services.sandbox import domain, repository
from services.sandbox.domain import (
    Answer,
    Call,
    GenerateRequest,
    IdempotencySlot,
    Payment,
    Status,
    TransactionQuery,
    WindowRequest,
)
from services.sandbox.errors import PgError
from services.sandbox.faults import ConfirmScript, EndpointFaults, Faults
from services.sandbox.faults import update_faults as merge_faults
from services.sandbox.repository import (
    Knobs,
    SlotAnswer,
    SlotFate,
    SlotPolicy,
    Snapshot,
    StoredResponse,
)
from shared.db import Connection

log = logging.getLogger(__name__)

# An in-flight idempotency slot older than this belongs to a dead process (latency is capped
# well below it). A slot waiting for a pending completion is never stale.
STALE_IN_FLIGHT = timedelta(minutes=5)
# A slot a failed request could not free is freed later, but only this long after the failure:
# its row is older than the failure by at most the capped latency (2 minutes), so it cannot go
# stale, and be claimed by another request, before then.
FREEING_GIVES_UP = STALE_IN_FLIGHT / 2
# Console cancels are the merchant's staff, not the merchant's API calls: no faults apply.
NO_FAULTS = EndpointFaults()


def utcnow() -> datetime:
    return datetime.now(UTC)


def chance(rate: float) -> bool:
    """True with probability ``rate`` (the sandbox's only source of luck)."""
    return rate > 0 and random.random() < rate


@dataclass
class Sandbox:
    """The running sandbox: its pool and the settings its use cases need.

    The shared knobs are kept in memory and refreshed from the database in the background
    (:meth:`refresh_knobs`), never on a request's path: a request that holds a connection must
    not wait for another one to read them."""

    pool: asyncpg.Pool
    mid: str
    webhook_wake: asyncio.Event = field(default_factory=asyncio.Event)
    knobs: Knobs = field(default_factory=lambda: Knobs(Faults(), None))
    # Slots of failed requests not freed yet (the database was away), with when they failed.
    stranded_slots: dict[IdempotencySlot, float] = field(default_factory=dict)
    _generation: int = 0  # counts local changes, so that a refresh older than one is dropped

    @property
    def faults(self) -> Faults:
        return self.knobs.faults

    async def refresh_knobs(self) -> Knobs:
        generation = self._generation
        async with self.pool.acquire() as conn:
            knobs = await repository.read_knobs(conn)
        if generation == self._generation:
            self.knobs = knobs
        return knobs

    def _changed(self, knobs: Knobs) -> None:
        self.knobs = knobs
        self._generation += 1

    async def set_faults(self, faults: Faults) -> None:
        async with self.pool.acquire() as conn:
            await repository.write_faults(conn, faults)
        self._changed(replace(self.knobs, faults=faults))

    async def set_webhook_url(self, url: str | None) -> None:
        async with self.pool.acquire() as conn:
            await repository.write_webhook_url(conn, url)
        self._changed(replace(self.knobs, webhook_url=url))

    def webhook(self, payment: Payment, now: datetime) -> repository.Webhook | None:
        """The PAYMENT_STATUS_CHANGED webhook for the payment's new status, if any is sent."""
        knobs = self.knobs
        if not knobs.webhook_url or payment.status not in domain.WEBHOOK_STATUSES:
            return None
        body = domain.webhook_body(payment, now, self.mid)
        due_at = now + timedelta(milliseconds=knobs.faults.webhooks.delay_ms)
        return repository.Webhook(knobs.webhook_url, payment.payment_key, body, due_at)

    async def announce(self, conn: Connection, payment: Payment, now: datetime) -> bool:
        """Enqueue the PAYMENT_STATUS_CHANGED webhook for the payment's new status, if any."""
        webhook = self.webhook(payment, now)
        if webhook is not None:
            await repository.enqueue_webhook(conn, webhook)
        return webhook is not None

    def wake_webhooks(self) -> None:
        """Have the sender look for due deliveries now (after a commit that enqueued some)."""
        if self.knobs.webhook_url:
            self.webhook_wake.set()


@dataclass(frozen=True)
class Reply:
    """An API answer: status and JSON body (encoded); ``drop`` closes the connection instead;
    ``fate`` says what the request's idempotency slot keeps."""

    status: int
    body: bytes
    drop: bool = False
    fate: SlotFate = SlotFate.KEEP

    @classmethod
    def json(cls, status: int, body: Any, drop: bool = False) -> Reply:
        return cls(status, orjson.dumps(body), drop)

    @classmethod
    def error(cls, error: PgError, english: bool) -> Reply:
        fate = SlotFate.KEEP if error.replayable else SlotFate.FREE
        return cls(error.status, orjson.dumps(error.body(english)), fate=fate)

    @classmethod
    def of(cls, answer: Answer, payment: Payment, mid: str, english: bool) -> Reply:
        """The reply for a decision on ``payment``."""
        if answer.error is not None:
            reply = cls.error(answer.error, english)
        else:
            reply = cls.json(200, domain.payment_object(payment, mid))
        fate = SlotFate.HOLD if answer.hold else reply.fate
        return replace(reply, drop=answer.drop, fate=fate)

    @classmethod
    def replay(cls, stored: StoredResponse) -> Reply:
        """The stored answer of an idempotent request; 409 while that request is in flight."""
        if stored.status is None or stored.body is None:
            raise PgError("IDEMPOTENT_REQUEST_PROCESSING")
        return cls(stored.status, stored.body)

    def for_slot(self, slot: IdempotencySlot | None) -> SlotAnswer | None:
        if slot is None:
            return None
        if self.fate is SlotFate.KEEP:
            return SlotAnswer(slot, SlotFate.KEEP, self.status, self.body)
        return SlotAnswer(slot, self.fate)


def _policy(faults: Faults) -> SlotPolicy:
    return SlotPolicy(STALE_IN_FLIGHT, faults.forget_idempotency_keys, faults.replay_errors)


async def _finish(conn: Connection, slot: IdempotencySlot | None, reply: Reply) -> Reply:
    """Record the answer for replay in the same transaction as the change (or free the slot)."""
    answer = reply.for_slot(slot)
    if answer is not None:
        await repository.settle_slot(conn, answer)
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


async def _release(sandbox: Sandbox, slot: IdempotencySlot) -> None:
    """Free the slot of a request that failed. The failure may be the database's own (a backend
    terminated, the server stopped): then the sweeper frees it once the database is back, or
    every retry with this key would meet IDEMPOTENT_REQUEST_PROCESSING until the slot goes
    stale."""
    try:
        async with sandbox.pool.acquire() as conn:
            await repository.release_idempotency(conn, slot)
    except Exception:
        log.warning("freeing an idempotency slot failed; the sweeper retries", exc_info=True)
        sandbox.stranded_slots.setdefault(slot, time.monotonic())


async def free_stranded_slots(sandbox: Sandbox) -> None:
    """Free the slots failed requests could not free at the time, up to
    :data:`FREEING_GIVES_UP` after the failure; later ones are left to go stale."""
    for slot, since in list(sandbox.stranded_slots.items()):
        if time.monotonic() - since < FREEING_GIVES_UP.total_seconds():
            async with sandbox.pool.acquire() as conn:
                await repository.release_idempotency(conn, slot)
        del sandbox.stranded_slots[slot]


async def _claim(
    sandbox: Sandbox, slot: IdempotencySlot | None, faults: Faults
) -> StoredResponse | None:
    if slot is None:
        return None
    async with sandbox.pool.acquire() as conn:
        return await repository.claim_idempotency(conn, slot, _policy(faults))


# ---------------------------------------------------------------- confirm


async def confirm(
    sandbox: Sandbox,
    request: domain.ConfirmRequest,
    slot: IdempotencySlot | None,
    english: bool,
) -> Reply:
    """Confirm once per idempotency slot (a replay answers what the first one did)."""
    faults = sandbox.faults
    async with sandbox.pool.acquire() as conn:
        stored, read = await repository.claim_and_read(
            conn, slot, request.payment_key, _policy(faults)
        )
    if stored is not None:
        return Reply.replay(stored)
    async with _released_on_error(sandbox, slot):
        if faults.confirm.latency_ms:
            # Without a connection: a slow PG must not exhaust the pool.
            await asyncio.sleep(faults.confirm.latency_s)
        async with sandbox.pool.acquire() as conn:
            reply, announced = await _confirm_read(
                sandbox, conn, request, read, Call(slot, english, utcnow()), faults.confirm
            )
    if announced:
        sandbox.wake_webhooks()
    return reply


async def _confirm_read(
    sandbox: Sandbox,
    conn: Connection,
    request: domain.ConfirmRequest,
    read: Snapshot | None,
    call: Call,
    faults: EndpointFaults,
) -> tuple[Reply, bool]:
    """Decide on the payment as read and save; decide again on a fresh read while another
    change got in first. Returns the answer and whether a webhook was enqueued."""
    while read is not None:
        call = replace(call, now=utcnow())
        reply, webhook, followed = _decide_confirm(sandbox, request, read, call, faults)
        answer = reply.for_slot(call.slot)
        if await repository.save_confirm(conn, read, webhook, answer, followed):
            return reply, webhook is not None
        read = await repository.read_payment(conn, request.payment_key)
    missing = Reply.error(PgError("NOT_FOUND_PAYMENT"), call.english)
    return await _finish(conn, call.slot, missing), False


def _decide_confirm(
    sandbox: Sandbox,
    request: domain.ConfirmRequest,
    read: Snapshot,
    call: Call,
    faults: EndpointFaults,
) -> tuple[Reply, repository.Webhook | None, bool]:
    """The reply, the webhook to send and whether the order's script was followed."""
    payment, script = read.payment, read.script
    before = payment.status
    payment.confirm_calls += 1
    if call.slot is not None:
        payment.last_confirm_idempotency_key = call.slot.key
    answer = domain.decide_confirm(payment, request, call, faults, script, chance)
    reply = Reply.of(answer, payment, sandbox.mid, call.english)
    changed = payment.status is not before
    webhook = sandbox.webhook(payment, call.now) if changed else None
    return reply, webhook, _followed(script, payment)


def _followed(script: ConfirmScript | None, payment: Payment) -> bool:
    """A script is followed when the confirm left the payment waiting for its completion
    (a confirm the script did not take, e.g. with a wrong amount, leaves it for the next)."""
    return script is not None and payment.pending is not None


# ---------------------------------------------------------------- cancel


async def cancel(
    sandbox: Sandbox,
    payment_key: str,
    request: domain.CancelRequest,
    slot: IdempotencySlot | None,
    english: bool,
    console: bool = False,
) -> Reply:
    """Cancel once per idempotency slot (a replay answers what the first one did).

    A ``console`` cancel is made in the merchant console: no key, no faults."""
    faults = sandbox.faults
    knobs = NO_FAULTS if console else faults.cancel
    stored = await _claim(sandbox, slot, faults)
    if stored is not None:
        return Reply.replay(stored)
    async with _released_on_error(sandbox, slot):
        if knobs.latency_ms:
            await asyncio.sleep(knobs.latency_s)
        return await _cancel(sandbox, payment_key, request, Call(slot, english, utcnow()), knobs)


async def _cancel(
    sandbox: Sandbox,
    payment_key: str,
    request: domain.CancelRequest,
    call: Call,
    faults: EndpointFaults,
) -> Reply:
    async with sandbox.pool.acquire() as conn, conn.transaction():
        payment = await repository.lock_payment(conn, payment_key)
        if payment is None:
            missing = Reply.error(PgError("NOT_FOUND_PAYMENT"), call.english)
            return await _finish(conn, call.slot, missing)
        call = replace(call, now=utcnow())
        answer = domain.decide_cancel(payment, request, call, faults, chance)
        reply = Reply.of(answer, payment, sandbox.mid, call.english)
        announced = False
        if answer.error is None:
            await repository.save_payment(conn, payment)
            announced = not answer.hold and await sandbox.announce(conn, payment, call.now)
        await _finish(conn, call.slot, reply)
    if announced:
        sandbox.wake_webhooks()
    return reply


# ---------------------------------------------------------------- lookups


async def payment_by_key(sandbox: Sandbox, payment_key: str, english: bool) -> Reply:
    faults = sandbox.faults

    async def find(conn: Connection) -> Payment | None:
        return await repository.get_payment(conn, payment_key)

    return await _lookup(sandbox, faults.lookup_by_key, find, english)


async def payment_by_order(sandbox: Sandbox, order_id: str, english: bool) -> Reply:
    faults = sandbox.faults

    async def find(conn: Connection) -> Payment | None:
        return await repository.payment_for_order(conn, order_id)

    return await _lookup(sandbox, faults.lookup_by_order, find, english)


async def _lookup(
    sandbox: Sandbox,
    faults: EndpointFaults,
    find: Callable[[Connection], Awaitable[Payment | None]],
    english: bool,
) -> Reply:
    """A look-up; an injected error reads nothing, a dropped answer is read and not sent."""
    if faults.latency_ms:
        await asyncio.sleep(faults.latency_s)
    if chance(faults.error_rate):
        return Reply.error(PgError(faults.error_code, "sandbox fault"), english)
    async with sandbox.pool.acquire() as conn:
        payment = await find(conn)
    if payment is None:
        reply = Reply.error(PgError("NOT_FOUND_PAYMENT"), english)
    else:
        payment = await _expire_on_read(sandbox, payment)
        reply = Reply.json(200, domain.payment_object(payment, sandbox.mid))
    return replace(reply, drop=chance(faults.drop_response_rate))


async def _expire_on_read(sandbox: Sandbox, payment: Payment) -> Payment:
    if domain.due_for_expiry(payment, utcnow()):
        await expire_due(sandbox, only=payment.payment_key)
        async with sandbox.pool.acquire() as conn:
            fresh = await repository.get_payment(conn, payment.payment_key)
        return fresh or payment
    return payment


async def ledger(sandbox: Sandbox, order_id: str | None) -> list[dict[str, Any]]:
    async with sandbox.pool.acquire() as conn:
        payments = await repository.ledger(conn, order_id)
    return [domain.ledger_entry(payment) for payment in payments]


# ---------------------------------------------------------------- transactions


async def transactions(sandbox: Sandbox, query: TransactionQuery) -> list[dict[str, Any]]:
    async with sandbox.pool.acquire() as conn:
        after = 0
        if query.starting_after is not None:
            found = await repository.transaction_id(conn, query.starting_after)
            if found is None:
                raise PgError("INVALID_REQUEST", "startingAfter is not a known transactionKey")
            after = found
        page = await repository.transactions(conn, query, after)
    return [domain.transaction_object(transaction, sandbox.mid) for transaction in page]


async def generate(sandbox: Sandbox, request: GenerateRequest) -> dict[str, Any]:
    """Bulk DONE payments (and cancels) with their transactions, without webhooks."""
    batch = secrets.token_hex(3)
    async with sandbox.pool.acquire() as conn, conn.transaction():
        made = await repository.generate(conn, request, batch)
    return {
        "date": request.day.isoformat(),
        "payments": made["payments"],
        "canceled": made["canceled"],
        "partiallyCanceled": made["partially_canceled"],
        "transactions": made["payments"] + made["canceled"] + made["partially_canceled"],
        "totalAmount": int(made["total_amount"]),
        "canceledAmount": int(made["canceled_amount"]),
        "orderIdPrefix": f"{request.order_id_prefix}{batch}-",
    }


# ---------------------------------------------------------------- pending completions


async def complete_due(sandbox: Sandbox, limit: int = 100) -> int:
    """Apply the pending completions that are due (with webhooks and idempotent answers)."""
    async with sandbox.pool.acquire() as conn, conn.transaction():
        now = utcnow()
        due = await repository.lock_due_completions(conn, now, limit)
        for payment in due:
            await _complete(sandbox, conn, payment, now)
    if due:
        sandbox.wake_webhooks()
    return len(due)


async def _complete(sandbox: Sandbox, conn: Connection, payment: Payment, now: datetime) -> None:
    pending, before = payment.pending, payment.status
    assert pending is not None
    error = domain.complete_pending(payment, now)
    await repository.save_payment(conn, payment)
    if error is None or payment.status is not before:
        await sandbox.announce(conn, payment, now)
    if pending.slot is None:
        return
    if error is not None:
        reply = Reply.error(error, pending.english)
    else:
        reply = Reply.json(200, domain.payment_object(payment, sandbox.mid))
    if reply.fate is SlotFate.KEEP:
        await repository.answer_slot(conn, pending.slot, reply.status, reply.body)
    else:
        await repository.forget_slot(conn, pending.slot)


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


# ---------------------------------------------------------------- knobs and scripts


async def update_faults(sandbox: Sandbox, changes: Any) -> Faults:
    """Merge a ``PUT /sandbox/faults`` body into the stored knobs (all checked first)."""
    current = (await sandbox.refresh_knobs()).faults
    updated = merge_faults(current, changes)
    await sandbox.set_faults(updated)
    return updated


async def put_script(sandbox: Sandbox, order_id: str, script: ConfirmScript) -> None:
    async with sandbox.pool.acquire() as conn:
        await repository.put_script(conn, order_id, script)


async def scripts(sandbox: Sandbox) -> list[dict[str, Any]]:
    async with sandbox.pool.acquire() as conn:
        rows = await repository.list_scripts(conn)
    return [
        {
            "orderId": stored.order_id,
            **stored.script.to_json(),
            "createdAt": domain.kst_iso(stored.created_at),
            "usedBy": stored.used_by,
            "usedAt": domain.kst_iso(stored.used_at),
        }
        for stored in rows
    ]


async def delete_script(sandbox: Sandbox, order_id: str) -> bool:
    async with sandbox.pool.acquire() as conn:
        return await repository.delete_script(conn, order_id)


# ---------------------------------------------------------------- payment window


async def open_window(sandbox: Sandbox, request: WindowRequest) -> Payment:
    payment = domain.open_window(request, utcnow(), sandbox.faults)
    async with sandbox.pool.acquire() as conn:
        await repository.insert_payment(conn, payment)
    return payment


class UnknownWindow(Exception):
    """The posted paymentKey names no open window of this order (unknown, or already used)."""


async def approve_window(
    sandbox: Sandbox, request: WindowRequest, payment_key: str | None, card_number: str
) -> str:
    """The buyer pressed Pay: authenticate (or reject the card); returns the redirect URL."""
    faults = sandbox.faults
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
