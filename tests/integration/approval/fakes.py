"""An in-memory PaymentGateway with a ledger: the PG as the approval worker sees it.

It behaves like the contract on the points approval depends on: a confirm approves an
authenticated payment once, for the authenticated amount and its own orderId; a replay of an
idempotency key answers the first answer; cancels append to ``cancels[]``. Faults are queued per
call (``faults`` for confirms, ``cancel_faults`` for cancels, ``lookup_faults`` for lookups):

- ``"timeout"`` raises before doing anything;
- ``"timeout_after"`` does the work (the money moves) and then raises, as a dropped response;
- ``"late"`` (confirm) accepts the confirm but leaves the payment IN_PROGRESS and raises; the
  test completes it later with :meth:`FakePG.complete` (meanwhile the same key answers 409);
- ``"misconfigured"`` answers INVALID_API_KEY (our configuration: nothing done);
- ``"rate_limited"`` answers FORBIDDEN_CONSECUTIVE_REQUEST (nothing done).

``forget_keys`` makes every request run afresh, as if the PG's 15-day memory were gone.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone

from services.approval.domain import ErrorClass, PgCancel, PgPayment, PgTransaction
from services.approval.pg_client import (
    Approved,
    Canceled,
    CancelRequest,
    CancelResult,
    ConfirmRequest,
    ConfirmResult,
    Declined,
    Found,
    LookupResult,
    NotFound,
    Page,
    PageResult,
    Unknown,
)

KST = timezone(timedelta(hours=9))


@dataclass
class LedgerEntry:
    payment_key: str
    order_id: str
    amount: int  # as authenticated, i.e. as the browser sent it
    status: str = "IN_PROGRESS"
    balance: int = 0
    approved_at: datetime | None = None
    cancels: list[PgCancel] = field(default_factory=list)
    confirm_calls: int = 0
    state_changes: int = 0
    currency: str = "KRW"

    def view(self) -> PgPayment:
        return PgPayment(
            payment_key=self.payment_key,
            order_id=self.order_id,
            status=self.status,
            total_amount=self.amount,
            balance_amount=self.balance,
            method="카드",
            approved_at=self.approved_at,
            cancels=tuple(self.cancels),
            currency=self.currency,
        )


class FakePG:
    """Satisfies services.approval.pg_client.PaymentGateway."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.ledger: dict[str, LedgerEntry] = {}
        self.confirms: list[ConfirmRequest] = []
        self.cancel_requests: list[CancelRequest] = []
        self.lookups: list[str] = []
        self.faults: list[str | None] = []
        self.cancel_faults: list[str | None] = []
        self.lookup_faults: list[str | None] = []
        self.authentications: list[str] = []
        self.authentication_faults: list[str | None] = []
        self.decline_with: str | None = None  # a card decline code for every fresh confirm
        self.refuse_cancel_with: str | None = None  # a definitive refusal for every fresh cancel
        self.approve_amount: int | None = None  # a PG that approves another amount than asked
        self.forget_keys = False
        self._confirm_replies: dict[str, ConfirmResult] = {}
        self._cancel_replies: dict[str, CancelResult] = {}
        self._pending: set[str] = set()
        self.journal: list[PgTransaction] = []  # every approval and cancel, oldest first
        self._serial = itertools.count(1)

    # --- what the payment window does ---

    def authenticate(self, payment_key: str, order_id: str, amount: int) -> None:
        self.ledger[payment_key] = LedgerEntry(payment_key, order_id, amount, balance=amount)

    def approved(self, order_id: str) -> list[LedgerEntry]:
        return [e for e in self.ledger.values() if e.order_id == order_id and e.approved_at]

    def complete(self, payment_key: str) -> None:
        """A late confirm completes (or one is made by hand): the payment becomes DONE now."""
        self._pending.discard(payment_key)
        self._approve(self.ledger[payment_key])

    def _approve(self, entry: LedgerEntry) -> None:
        entry.status, entry.approved_at = "DONE", datetime.now(UTC)
        entry.state_changes += 1
        self._journal(entry, entry.amount)

    def _journal(self, entry: LedgerEntry, amount: int) -> str:
        key = f"txn-{next(self._serial):08d}"
        self.journal.append(
            PgTransaction(
                key, entry.payment_key, entry.order_id, entry.status, amount, datetime.now(UTC)
            )
        )
        return key

    def console_cancel(self, payment_key: str, amount: int | None = None) -> None:
        """A cancel made in the merchant console (not through our API, not tagged by us)."""
        self._apply_cancel(self.ledger[payment_key], amount, "canceled in the console")

    # --- the API ---

    async def confirm(self, request: ConfirmRequest) -> ConfirmResult:
        self.confirms.append(request)
        fault = self.faults.pop(0) if self.faults else None
        await asyncio.sleep(self.latency)
        if fault == "timeout":
            raise TimeoutError("read timeout")
        if refused := _refusal(fault):
            return refused
        if request.payment_key in self._pending:
            return Unknown("409", "IDEMPOTENT_REQUEST_PROCESSING", ErrorClass.OUTCOME_UNKNOWN)
        if fault == "late":
            self._pending.add(request.payment_key)
            self.ledger[request.payment_key].confirm_calls += 1
            raise TimeoutError("read timeout (the PG is still working on it)")
        result = None if self.forget_keys else self._confirm_replies.get(request.idempotency_key)
        if result is None:
            result = self._confirm_fresh(request)
            self._confirm_replies[request.idempotency_key] = result
        if fault == "timeout_after":
            raise TimeoutError("read timeout (the PG approved)")
        return result

    def _confirm_fresh(self, request: ConfirmRequest) -> ConfirmResult:
        entry = self.ledger.get(request.payment_key)
        if entry is None:
            return Declined("NOT_FOUND_PAYMENT_SESSION", "no such authentication")
        entry.confirm_calls += 1
        if entry.order_id != request.order_id:
            return Declined("FORBIDDEN_REQUEST", "orderId differs")
        if entry.status != "IN_PROGRESS":
            return Unknown(
                "PG answered 400 ALREADY_PROCESSED_PAYMENT",
                "ALREADY_PROCESSED_PAYMENT",
                ErrorClass.PROBABLY_DONE,
            )
        if request.amount != entry.amount:
            return Declined("INVALID_REQUEST", "amount differs from the authenticated one")
        if self.decline_with is not None:
            entry.status = "ABORTED"
            return Declined(self.decline_with, "declined by the card company")
        if self.approve_amount is not None:
            entry.amount = entry.balance = self.approve_amount
        self._approve(entry)
        return Approved(entry.view())

    async def get_payment_by_order(self, order_id: str) -> LookupResult:
        self.lookups.append(order_id)
        if refused := _lookup_refusal(self.lookup_faults.pop(0) if self.lookup_faults else None):
            return refused
        entries = [e for e in self.ledger.values() if e.order_id == order_id]
        return Found(entries[-1].view()) if entries else NotFound("NOT_FOUND_PAYMENT")

    async def get_payment(self, payment_key: str) -> LookupResult:
        self.lookups.append(payment_key)
        if refused := _lookup_refusal(self.lookup_faults.pop(0) if self.lookup_faults else None):
            return refused
        entry = self.ledger.get(payment_key)
        return Found(entry.view()) if entry else NotFound("NOT_FOUND_PAYMENT")

    async def get_authentication(self, payment_key: str) -> LookupResult:
        """The pre-hold check: answered apart (``authentications``, ``authentication_faults``)
        so that tests of settlement lookups see only those."""
        self.authentications.append(payment_key)
        fault = self.authentication_faults.pop(0) if self.authentication_faults else None
        if refused := _lookup_refusal(fault):
            return refused
        entry = self.ledger.get(payment_key)
        return Found(entry.view()) if entry else NotFound("NOT_FOUND_PAYMENT")

    async def cancel(self, request: CancelRequest) -> CancelResult:
        self.cancel_requests.append(request)
        fault = self.cancel_faults.pop(0) if self.cancel_faults else None
        await asyncio.sleep(self.latency)
        if fault == "timeout":
            raise TimeoutError("read timeout")
        if refused := _refusal(fault):
            return refused
        result = None if self.forget_keys else self._cancel_replies.get(request.idempotency_key)
        if result is None:
            result = self._cancel_fresh(request)
            self._cancel_replies[request.idempotency_key] = result
        if fault == "timeout_after":
            raise TimeoutError("read timeout (the PG canceled)")
        return result

    def _cancel_fresh(self, request: CancelRequest) -> CancelResult:
        entry = self.ledger.get(request.payment_key)
        if entry is None:
            return Declined("NOT_FOUND_PAYMENT", "no such payment")
        if entry.status == "CANCELED":
            return Unknown("400", "ALREADY_CANCELED_PAYMENT", ErrorClass.PROBABLY_DONE)
        if entry.status not in ("DONE", "PARTIAL_CANCELED"):
            return Declined("NOT_CANCELABLE_PAYMENT", f"payment is {entry.status}")
        if self.refuse_cancel_with is not None:
            return Declined(self.refuse_cancel_with, "refused")
        amount = request.amount if request.amount is not None else entry.balance
        if amount > entry.balance:
            return Declined("NOT_CANCELABLE_AMOUNT", "more than the balance")
        self._apply_cancel(entry, amount, request.reason)
        return Canceled(entry.view())

    def _apply_cancel(self, entry: LedgerEntry, amount: int | None, reason: str) -> None:
        amount = entry.balance if amount is None else amount
        entry.balance -= amount
        entry.status = "CANCELED" if entry.balance == 0 else "PARTIAL_CANCELED"
        key = self._journal(entry, amount)
        entry.cancels.append(PgCancel(amount, reason, datetime.now(UTC), key))

    async def transactions(
        self, start: str, end: str, starting_after: str | None, limit: int
    ) -> PageResult:
        first, last = date.fromisoformat(start), date.fromisoformat(end)
        day = [t for t in self.journal if first <= t.transaction_at.astimezone(KST).date() <= last]
        if starting_after is not None:
            keys = [t.transaction_key for t in day]
            if starting_after not in keys:
                return Unknown("400", "INVALID_REQUEST", ErrorClass.OUTCOME_UNKNOWN)
            day = day[keys.index(starting_after) + 1 :]
        return Page(tuple(day[:limit]))


def _refusal(fault: str | None) -> Unknown | None:
    if fault == "misconfigured":
        return Unknown("400", "INVALID_API_KEY", ErrorClass.MERCHANT_CONFIGURATION)
    if fault == "rate_limited":
        return Unknown("403", "FORBIDDEN_CONSECUTIVE_REQUEST", ErrorClass.OUTCOME_UNKNOWN)
    return None


def _lookup_refusal(fault: str | None) -> Unknown | None:
    if fault == "timeout":
        return Unknown("no answer")
    return _refusal(fault)
