"""The approval use cases: project order intents, receive and verify authentications, and drive
verified attempts to a settled state through the PG.

Driving follows one rule: only the holder of an attempt's lease calls the PG, the lease and the
idempotency key are committed before the call, and the outcome commits with its event. A driver
that dies leaves a row the reconciler finds once the lease runs out; the next driver asks the PG
what happened before it confirms again (with the same key).

Only the PG settles (see ``domain``): an attempt whose payment the PG still shows IN_PROGRESS, or
that it cannot tell us about, stays UNKNOWN and is asked again with backoff for as long as it
takes. No answer is dropped: the PG's approval of an attempt we had settled otherwise is
recorded and announced (the order takes the money, or refunds it).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import asyncpg
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    stop_any,
    wait_exponential,
)
from tenacity.stop import stop_base

from services.approval import repository as repo
from services.approval.domain import (
    CLAIMABLE,
    FORGERY_CODES,
    NOT_ASKED,
    SETTLED,
    Attempt,
    AttemptFacts,
    AttemptState,
    ErrorClass,
    Intent,
    IntentStatus,
    PgPayment,
    PgRecord,
    Presentation,
    Reason,
    SecurityFinding,
    SecurityKind,
    Settlement,
    Verdict,
    Window,
    approved_by_pg,
    cancel_idempotency_key,
    confirm_idempotency_key,
    decline_finding,
    orphan_refund_id,
    rejected,
    rejection_finding,
    retry_delay,
    settle,
    still_confirmable,
    transition,
    verify,
)
from services.approval.failpoints import DISARMED, Failpoints, Point
from services.approval.metrics import (
    APPROVALS_DISAGREEING,
    ATTEMPT_OUTCOMES,
    CONFIRM_WINDOW_REMAINING_SECONDS,
    LATE_APPROVALS,
    SECURITY_EVENTS,
    SETTLEMENT_SECONDS,
)
from services.approval.pg_client import (
    Approved,
    ConfirmRequest,
    ConfirmResult,
    Declined,
    Found,
    LookupResult,
    NotFound,
    PaymentGateway,
    Unknown,
)
from shared import inbox, outbox
from shared.db import Connection
from shared.events import (
    OrderCanceled,
    OrderExpired,
    OrderPlaced,
    PaymentApproved,
    PaymentAuthenticated,
    PaymentRejected,
    utcnow,
)
from shared.logging import masked
from shared.topology import APPROVAL_ORDER_INTENTS, APPROVAL_PAYMENTS

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
S = AttemptState

# Returned instead of calling the PG when a confirm may no longer be sent.
NOT_SENT = Unknown("confirm not sent: the confirm window is closing")


@dataclass(frozen=True)
class Policy:
    """The timing rules of driving, from the settings."""

    window: Window = field(default_factory=Window)
    lease_seconds: float = 30.0
    confirm_attempts: int = 3
    confirm_retry_base: float = 0.5
    call_deadline: float = 10.0
    backoff_base: float = 2.0
    backoff_max: float = 60.0
    awaiting_timeout: float = 120.0


class _Moved(enum.Enum):
    """The attempt changed between reading and writing: read it again."""

    MOVED = "MOVED"


_MOVED = _Moved.MOVED


@dataclass(frozen=True)
class Judgement:
    """An attempt as its verification left it, the intent it was judged against, and the
    security finding its refusal recorded (if any)."""

    attempt: Attempt
    intent: Intent | None
    finding: SecurityFinding | None = None


class Payments:
    """Everything that happens to payment attempts. ``owner`` names this worker in leases."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        gateway: PaymentGateway,
        policy: Policy,
        owner: str,
        handoff: outbox.Handoff,
        clock: Clock = utcnow,
        failpoints: Failpoints = DISARMED,
    ) -> None:
        self._pool = pool
        self._gateway = gateway
        # Where one-statement changes hand their event to this process's relay.
        self._handoff = handoff
        self._policy = policy
        self._owner = owner
        self._clock = clock
        self._failpoint = failpoints

    # --- order intents ----------------------------------------------------------------------

    async def on_orders_placed(self, events: Sequence[OrderPlaced]) -> list[list[str]]:
        """Project the intents (each once, with its inbox claim, all in one statement); returns,
        for each event, the attempts waiting for its order, on a redelivery too: the drives it
        kicked may have died with their worker."""
        async with self._pool.acquire() as conn:
            placed = await repo.claim_and_place_intents(conn, APPROVAL_ORDER_INTENTS.name, events)
        for _ in range(sum(not p.claimed for p in placed)):
            inbox.dropped(APPROVAL_ORDER_INTENTS.name)
        return [p.waiting for p in placed]

    async def on_order_ended(self, event: OrderExpired | OrderCanceled) -> None:
        status = IntentStatus.EXPIRED if isinstance(event, OrderExpired) else IntentStatus.CANCELED

        async def effect(conn: Connection) -> None:
            await repo.end_intent(conn, event.order_id, status)

        await inbox.apply_once(self._pool, APPROVAL_ORDER_INTENTS.name, event, effect)

    # --- receiving an authentication ---------------------------------------------------------

    async def on_authenticated(self, event: PaymentAuthenticated) -> AttemptState | None:
        """Record and verify the attempt (once per event), then drive it until it settles.

        A redelivered event finds its claim in the inbox and only drives: that is how a crash
        between the verdict's commit and the drive recovers without waiting for the reconciler.
        """
        pg = await self._pg_record(event.payment_key)
        judged = await self._receive(event, pg)
        _count(judged.finding if judged else None)
        self._failpoint(Point.AFTER_VERIFY)
        return await self.drive(event.payment_key, judged)

    async def _pg_record(self, payment_key: str) -> PgRecord:
        """What the PG has for a presented paymentKey, before it may hold its order. One lookup:
        a forged key (none, another order's, another amount) is refused without holding the
        order, so the buyer's own redirect is confirmed right after it. No answer changes
        nothing: the attempt is judged as before and the confirm, which checks the same, decides.
        """
        lookup = await self._lookup(lambda: self._gateway.get_authentication(payment_key))
        if isinstance(lookup, Found):
            return PgRecord(lookup.payment, answered=True)
        if isinstance(lookup, NotFound):
            return PgRecord(None, answered=True)
        return NOT_ASKED

    async def _receive(self, event: PaymentAuthenticated, pg: PgRecord) -> Judgement | None:
        """Judge the presented authentication and record it with the event's inbox claim, on one
        path: read the intent (and the attempt holding its order, if any) with its version,
        judge, and insert the attempt in its verdict's state only if the intent is still as
        read; else read and judge again. None: the event was handled before, or its paymentKey
        has an attempt already (the first one stands)."""
        presentation = Presentation(
            event.payment_key, event.order_id, event.amount, event.received_at
        )
        async with self._pool.acquire() as conn:
            while True:
                read = await repo.read_intent_for_judging(conn, event.order_id, event.payment_key)
                intent, holder = (read.intent, read.holder) if read else (None, None)
                now, window = self._clock(), self._policy.window
                verdict = verify(presentation, intent, holder, now, window, pg=pg)
                received, judged = await self._insert_judged(conn, event, read, verdict, pg)
                if received is not repo.Received.STALE:
                    break
        if received is repo.Received.PRESENTED_AGAIN:
            log.info("paymentKey presented again", extra={"order_id": event.order_id})
        return judged

    async def _insert_judged(
        self,
        conn: Connection,
        event: PaymentAuthenticated,
        read: repo.IntentRead | None,
        verdict: Verdict,
        pg: PgRecord,
    ) -> tuple[repo.Received, Judgement | None]:
        """Insert the attempt as judged: one statement, or a transaction for a refusal, whose
        event and security finding (for tampering or a replay) commit with it."""
        transition(S.RECEIVED, verdict.state)
        intent = read.intent if read else None
        refusal = verdict.reason
        async with conn.transaction() if refusal else contextlib.nullcontext():
            received, attempt = await repo.insert_judged(
                conn, APPROVAL_PAYMENTS.name, read, event, verdict
            )
            if attempt is None or refusal is None:
                return received, Judgement(attempt, intent) if attempt else None
            await outbox.enqueue(conn, _rejection(attempt, refusal, verdict.message))
            finding = rejection_finding(refusal, attempt.presentation, intent, pg)
            return received, Judgement(
                attempt, intent, await _record_finding(conn, attempt, finding)
            )

    async def _verify_awaiting(
        self, conn: Connection, payment_key: str, pg: PgRecord
    ) -> SecurityFinding | None:
        attempt = await repo.get_attempt(conn, payment_key, lock=True)
        if attempt is None or attempt.state is not S.AWAITING_ORDER:
            return None
        return (await self._judge(conn, attempt, pg)).finding

    async def _judge(self, conn: Connection, attempt: Attempt, pg: PgRecord) -> Judgement:
        """Judge a RECEIVED or AWAITING_ORDER attempt (locked by the caller). A refusal that
        shows tampering or a replay records a security finding (counted once the caller
        commits)."""
        from_state = attempt.state
        intent, other = await repo.lock_intent_for_judging(
            conn, attempt.order_id, attempt.payment_key
        )
        now = self._clock()
        waited = (now - attempt.created_at).total_seconds() >= self._policy.awaiting_timeout
        verdict = verify(
            attempt.presentation,
            intent,
            other,
            now,
            self._policy.window,
            awaiting_expired=waited,
            pg=pg,
        )
        if verdict.state is from_state:
            return Judgement(attempt, intent)
        expected = intent.amount if intent else None
        await self._save_verdict(conn, attempt, verdict, expected)
        judged = replace(attempt, state=verdict.state, expected_amount=expected)
        if verdict.reason is None:
            return Judgement(judged, intent)
        await outbox.enqueue(conn, _rejection(attempt, verdict.reason, verdict.message))
        finding = rejection_finding(verdict.reason, attempt.presentation, intent, pg)
        return Judgement(judged, intent, await _record_finding(conn, attempt, finding))

    async def _save_verdict(
        self, conn: Connection, attempt: Attempt, verdict: Verdict, expected: int | None
    ) -> bool:
        """Store the verdict if the attempt is still in the state it was read in (else False,
        nothing written). Only a holder of the intent's lock makes an attempt live, so the
        one-live-attempt index cannot refuse it here; if it ever did, the transaction rolls
        back and the event is judged again on redelivery."""
        transition(attempt.state, verdict.state)
        return await repo.set_verdict(
            conn, attempt.payment_key, attempt.state, verdict.state, verdict.reason, expected
        )

    # --- driving ----------------------------------------------------------------------------

    async def drive(self, payment_key: str, judged: Judgement | None = None) -> AttemptState | None:
        """Bring the attempt as far as it can go now; returns its state (None if unknown).
        ``judged``: the attempt as receiving just judged it, so nothing is read again."""
        claimed = await self._claim(payment_key, judged)
        if claimed is S.AWAITING_ORDER:
            pg = await self._pg_record(payment_key)
            async with self._pool.acquire() as conn, conn.transaction():
                finding = await self._verify_awaiting(conn, payment_key, pg)
            _count(finding)
            claimed = await self._claim(payment_key)
        if isinstance(claimed, tuple):
            return await self._drive_claimed(*claimed)
        return claimed

    async def _claim(
        self, payment_key: str, judged: Judgement | None = None
    ) -> tuple[Attempt, AttemptState] | AttemptState | None:
        """Take the lease (the claimed attempt and its state before), or refuse a VERIFIED
        attempt whose order stopped being payable; else the attempt's state (None if unknown).

        One path, without a lock: read the attempt and, before its first confirm, its intent
        (or take what receiving judged), decide, and take the lease in one statement that
        holds only if the attempt is still free to take. A refusal is saved only if the
        attempt is still VERIFIED; else it moved meanwhile and is read and decided on again.
        """
        async with self._pool.acquire() as conn:
            while True:
                claimed = await self._try_claim(conn, payment_key, judged)
                if claimed is not _MOVED:
                    return claimed
                judged = None

    async def _try_claim(
        self, conn: Connection, payment_key: str, judged: Judgement | None
    ) -> tuple[Attempt, AttemptState] | AttemptState | _Moved | None:
        attempt = judged.attempt if judged else await repo.get_attempt(conn, payment_key)
        if attempt is None or attempt.state not in CLAIMABLE | {S.CONFIRMING}:
            return attempt.state if attempt else None
        if attempt.state is S.VERIFIED:
            intent = judged.intent if judged else await repo.get_intent(conn, attempt.order_id)
            now, window = self._clock(), self._policy.window
            reason = still_confirmable(attempt.authenticated_at, intent, now, window)
            if reason is not None:
                return S.DECLINED if await self._refuse(conn, attempt, reason) else _MOVED
        key = confirm_idempotency_key(payment_key)
        lease = self._policy.lease_seconds
        claimed = await repo.claim(conn, payment_key, self._owner, lease, key)
        if claimed is not None:
            return claimed, attempt.state
        current = await repo.get_attempt(conn, payment_key)
        return current.state if current else None

    async def _refuse(self, conn: Connection, attempt: Attempt, reason: Reason) -> bool:
        """Refuse a VERIFIED attempt before any confirm, with its event; False (nothing
        written) if it is not VERIFIED any more."""
        verdict = rejected(reason)
        async with conn.transaction():
            refused = await self._save_verdict(conn, attempt, verdict, None)
            if refused:
                await outbox.enqueue(conn, _rejection(attempt, reason, verdict.message))
        return refused

    async def _drive_claimed(self, attempt: Attempt, previous: AttemptState) -> AttemptState | None:
        self._failpoint(Point.AFTER_CONFIRMING)
        try:
            lease = self._policy.lease_seconds
            key = attempt.payment_key
            async with keeping_lease(self._pool, repo.renew_lease, key, self._owner, lease):
                settlement = await self._settle(attempt, previous)
            self._failpoint(Point.AFTER_PG_ANSWER)
            return await self._record(attempt, settlement)
        except asyncio.CancelledError:
            # Shutting down: hand the attempt back at once instead of after the lease.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release(attempt.payment_key))
            raise

    async def _settle(self, attempt: Attempt, previous: AttemptState) -> Settlement:
        """The attempt's outcome: confirm first if it never was, else ask the PG first."""
        facts = attempt.facts()
        if previous is S.VERIFIED:
            return await self._confirm_then_query(attempt, facts)
        settlement = await self._query(facts)
        if settlement.state is S.UNKNOWN and await self._may_confirm_again(attempt):
            return await self._confirm_then_query(attempt, facts)
        return settlement

    async def _confirm_then_query(self, attempt: Attempt, facts: AttemptFacts) -> Settlement:
        result = await self._confirm(attempt)
        if isinstance(result, Approved) and _for_this_attempt(result.payment, facts):
            return Settlement(S.APPROVED, payment=result.payment)
        if isinstance(result, Declined):
            return await self._declined(facts, result)
        if isinstance(result, Approved):
            log.error("confirm answered a payment that is not ours", extra=_log_facts(facts))
        looked = await self._query(facts)
        if isinstance(result, Unknown) and result.misconfigured and looked.state is S.UNKNOWN:
            # Refused for our own configuration: held (retried under a new key) until fixed.
            return Settlement(
                S.UNKNOWN, pg_code=result.code, message=result.reason, misconfigured=True
            )
        return looked

    async def _declined(self, facts: AttemptFacts, declined: Declined) -> Settlement:
        """A definitive decline; one the PG gives to forged keys or amounts is checked against
        the PG's record of the paymentKey, to tell operators what was forged."""
        finding = None
        if declined.code in FORGERY_CODES:
            lookup = await self._lookup(lambda: self._gateway.get_payment(facts.payment_key))
            payment = lookup.payment if isinstance(lookup, Found) else None
            answered = not isinstance(lookup, Unknown)
            finding = decline_finding(declined.code, facts, payment, answered)
        return Settlement(
            S.DECLINED, Reason.PG_DECLINED, declined.code, declined.message, finding=finding
        )

    async def _may_confirm_again(self, attempt: Attempt) -> bool:
        """A re-drive confirms again (same key) only inside the window, for an order that is
        still payable: the first confirm may never have reached the PG."""
        async with self._pool.acquire() as conn:
            intent = await repo.get_intent(conn, attempt.order_id)
        now = self._clock()
        return still_confirmable(attempt.authenticated_at, intent, now, self._policy.window) is None

    async def _confirm(self, attempt: Attempt) -> ConfirmResult:
        """Confirm with bounded retries, always with the attempt's one idempotency key."""
        assert attempt.idempotency_key is not None
        assert attempt.expected_amount is not None
        request = ConfirmRequest(
            payment_key=attempt.payment_key,
            order_id=attempt.order_id,
            amount=attempt.expected_amount,
            idempotency_key=attempt.idempotency_key,
        )

        def may_call() -> bool:
            return self._policy.window.may_confirm(attempt.authenticated_at, self._clock())

        async def once() -> ConfirmResult:
            if not may_call():
                return NOT_SENT
            closes = self._policy.window.closes_at(attempt.authenticated_at)
            CONFIRM_WINDOW_REMAINING_SECONDS.observe((closes - self._clock()).total_seconds())
            try:
                return await self._gateway.confirm(request)
            except Exception as exc:  # whatever went wrong mid-call, the money may have moved
                return Unknown(f"confirm failed: {type(exc).__name__}")

        retrying = AsyncRetrying(
            stop=stop_any(stop_after_attempt(self._policy.confirm_attempts), _Unless(may_call)),
            wait=wait_exponential(multiplier=self._policy.confirm_retry_base, max=10),
            retry=retry_if_result(_worth_retrying),
            retry_error_callback=_last_result,
        )
        result: ConfirmResult = await retrying(once)
        return result

    async def _query(self, facts: AttemptFacts) -> Settlement:
        """Ask the PG what became of this payment: by order, then by key if the order's payment
        is another one or the PG has none for the order."""
        lookup = await self._lookup(lambda: self._gateway.get_payment_by_order(facts.order_id))
        if not (isinstance(lookup, Found) and lookup.payment.payment_key == facts.payment_key):
            lookup = await self._lookup(lambda: self._gateway.get_payment(facts.payment_key))
        payment = lookup.payment if isinstance(lookup, Found) else None
        answered = not isinstance(lookup, Unknown)
        settlement = settle(payment, answered, facts)
        if isinstance(lookup, Unknown):
            return replace(settlement, pg_code=lookup.code, message=lookup.reason)
        return settlement

    async def _lookup(self, call: Callable[[], Awaitable[LookupResult]]) -> LookupResult:
        try:
            return await call()
        except Exception as exc:
            return Unknown(f"query failed: {type(exc).__name__}")

    async def _record(self, attempt: Attempt, settlement: Settlement) -> AttemptState | None:
        """Commit the outcome with its event (an UNKNOWN one only while we hold the lease);
        returns the attempt's state after it. An answer for an attempt already settled is
        compared with what we recorded, never dropped (see :meth:`_reconsider`)."""
        if settlement.state is S.APPROVED:
            recorded = await self._approve_as_holder(attempt, settlement)
            if recorded is not None:
                self._committed(recorded)
                self._observe_settlement(attempt, S.APPROVED)
                return S.APPROVED
        return await self._record_locked(attempt.payment_key, settlement)

    async def _record_locked(self, payment_key: str, settlement: Settlement) -> AttemptState | None:
        async with self._pool.acquire() as conn, conn.transaction():
            current = await repo.get_attempt(conn, payment_key, lock=True)
            if current is None:
                return None
            if current.state in SETTLED:
                recorded = await self._reconsider(conn, current, settlement)
            else:
                recorded = await self._save(conn, current, settlement)
        self._committed(recorded)
        if current.state not in SETTLED and recorded.state in SETTLED:
            self._observe_settlement(current, recorded.state)
        return recorded.state

    def _committed(self, recorded: Recorded) -> None:
        """What follows a recording's commit: its event to the relay, its counts."""
        if recorded.event is not None:
            self._handoff.put(recorded.event)
        recorded.count()

    def _observe_settlement(self, attempt: Attempt, state: AttemptState) -> None:
        waited = self._clock() - attempt.authenticated_at
        SETTLEMENT_SECONDS.labels(state.value).observe(max(waited.total_seconds(), 0.0))

    async def apply_pg_record(self, payment: PgPayment) -> AttemptState | None:
        """What the PG's record of a payment (fetched after a webhook, or by reconciliation)
        settles for its attempt: an approval, whatever we had recorded; a decline, only of an
        attempt waiting on the PG's word (our own flow settles the others). Returns the
        attempt's state after it (None: we have no attempt of this paymentKey)."""
        async with self._pool.acquire() as conn:
            attempt = await repo.get_attempt(conn, payment.payment_key)
        if attempt is None:
            return None
        settlement = settle(payment, True, attempt.facts())
        waiting = attempt.state in (S.CONFIRMING, S.UNKNOWN)
        if settlement.state is S.UNKNOWN or (settlement.state is S.DECLINED and not waiting):
            return attempt.state
        return await self._record_locked(attempt.payment_key, settlement)

    async def record_unrecorded_approval(self, payment: PgPayment) -> AttemptState | None:
        """An approval the PG made that reached us by no attempt of ours (a confirm made by hand
        in the merchant console, say): recorded as an attempt and announced, so that the order
        takes the money or refunds it. None when the order is not one we ever had: then there
        is no clear rule, and a person must look."""
        async with self._pool.acquire() as conn, conn.transaction():
            if await repo.get_intent(conn, payment.order_id) is None:
                return None
            attempt = await repo.insert_attempt_from_pg(conn, payment)
            if attempt.state is S.APPROVED:
                return S.APPROVED
            log.warning("the PG approved a payment we never saw", extra=_log(attempt))
            recorded = await self._save_approved(
                conn, attempt, Settlement(S.APPROVED, payment=payment)
            )
        self._committed(replace(recorded, late=True))
        return recorded.state

    async def _save(self, conn: Connection, attempt: Attempt, s: Settlement) -> Recorded:
        if s.state is S.UNKNOWN:
            saved = await self._save_unknown(conn, attempt, s)
            return Recorded(S.UNKNOWN if saved else attempt.state, changed=False)
        if s.state is S.APPROVED:
            return await self._save_approved(conn, attempt, s)
        finding = await self._save_declined(conn, attempt, s)
        return Recorded(S.DECLINED, s.reason, finding)

    async def _reconsider(self, conn: Connection, attempt: Attempt, s: Settlement) -> Recorded:
        """The PG's approval outranks any record of ours but an approval: a confirm that
        completed after all, or one made outside our flow, is recorded and announced (the order
        takes the money, or refunds it). Anything else changes nothing."""
        if s.state is not S.APPROVED or attempt.state is S.APPROVED:
            if attempt.state is S.APPROVED and s.state is S.DECLINED:
                log.error("the PG reports a recorded approval as declined", extra=_log(attempt))
            return Recorded(attempt.state, changed=False)
        log.warning(
            "the PG approved a payment we had settled otherwise",
            extra={**_log(attempt), "recorded": attempt.state.value},
        )
        recorded = await self._save_approved(conn, attempt, s)
        return replace(recorded, late=True)

    async def _save_unknown(self, conn: Connection, attempt: Attempt, s: Settlement) -> bool:
        delay = retry_delay(attempt.tries, self._policy.backoff_base, self._policy.backoff_max)
        next_key = None
        if s.misconfigured:
            next_key = confirm_idempotency_key(attempt.payment_key, attempt.generation + 1)
            log.error(
                "the PG refused the confirm for our own configuration; holding the payment",
                extra={**_log(attempt), "code": s.pg_code},
            )
        saved = await repo.save_unknown(
            conn,
            attempt.payment_key,
            self._owner,
            s.message,
            delay,
            pg_code=s.pg_code,
            next_key=next_key,
        )
        log.warning(
            "payment outcome unknown",
            extra={**_log(attempt), "why": s.message, "recorded": saved},
        )
        return saved

    async def _approve_as_holder(self, attempt: Attempt, s: Settlement) -> Recorded | None:
        """The holder's approval, in one statement without a transaction (see
        :meth:`_record_approval`); None (nothing changed) when the lease was lost meanwhile:
        the caller then takes the path that reads the attempt."""
        transition(S.CONFIRMING, S.APPROVED)
        async with self._pool.acquire() as conn:
            return await self._record_approval(conn, attempt, s, owner=self._owner)

    async def _save_approved(self, conn: Connection, attempt: Attempt, s: Settlement) -> Recorded:
        """Record the PG's approval of an attempt the caller locked, from whatever state it is
        in; one for an order we never had is refunded here (no order exists to take or refund
        it)."""
        assert s.payment is not None
        approved_by_pg(attempt.state)
        recorded = await self._record_approval(conn, attempt, s)
        if recorded is not None:
            return recorded
        await repo.save_approved(conn, attempt.payment_key, s.payment)
        await self._refund_orphan(conn, attempt, s.payment)
        return Recorded(S.APPROVED, disagreeing=True)

    async def _record_approval(
        self, conn: Connection, attempt: Attempt, s: Settlement, owner: str | None = None
    ) -> Recorded | None:
        """Record the PG's approval of an attempt still in the state it was read in (under
        ``owner``'s lease, if given), in one statement. One for the order's stored amount makes
        the intent PAID; one that disagrees is announced with the PG's amount, for the order to
        refund. None: nothing changed (the attempt moved, or its order is not one we have)."""
        assert s.payment is not None
        event = outbox.Outgoing.of(self._approved_event(attempt, s.payment))
        recorded = await repo.record_approval(conn, attempt, s.payment, event, owner=owner)
        if recorded is None:
            return None
        if not recorded.agrees:
            log.warning(
                "the PG approved an amount the order did not store; the order refunds it",
                extra={**_log(attempt), "approved": s.payment.total_amount},
            )
        elif not recorded.paid:
            log.error("order approved twice at the PG", extra=_log(attempt))
        committed = event.committed(recorded.outbox_id)
        return Recorded(S.APPROVED, disagreeing=not recorded.agrees, event=committed)

    async def _refund_orphan(self, conn: Connection, attempt: Attempt, payment: PgPayment) -> None:
        """Money the PG approved for an order this merchant never placed goes back at once; the
        reconciler drives the refund like any other."""
        log.error(
            "the PG approved a payment for an order we never had; refunding it", extra=_log(attempt)
        )
        refund_id = orphan_refund_id(attempt.payment_key)
        await repo.insert_refund(
            conn,
            refund_id=refund_id,
            order_id=attempt.order_id,
            payment_key=attempt.payment_key,
            amount=None,
            reason="Approved for an order this merchant never placed",
            idempotency_key=cancel_idempotency_key(refund_id),
            event_id=attempt.event_id,
        )

    def _approved_event(self, attempt: Attempt, payment: PgPayment) -> PaymentApproved:
        return PaymentApproved(
            correlation_id=attempt.order_id,
            causation_id=attempt.event_id,
            order_id=attempt.order_id,
            payment_key=attempt.payment_key,
            amount=payment.total_amount,
            method=payment.method,
            approved_at=payment.approved_at or self._clock(),
            authenticated_at=attempt.authenticated_at,
        )

    async def _save_declined(
        self, conn: Connection, attempt: Attempt, s: Settlement
    ) -> SecurityFinding | None:
        assert s.reason is not None
        transition(attempt.state, S.DECLINED)
        await repo.save_declined(conn, attempt.payment_key, s.reason, s.pg_code, s.message)
        event = _rejection(attempt, s.reason, s.message or s.reason.value, s.pg_code)
        await outbox.enqueue(conn, event)
        return await _record_finding(conn, attempt, s.finding)

    async def _release(self, payment_key: str) -> None:
        async with self._pool.acquire() as conn:
            await repo.release(conn, payment_key, self._owner)

    # --- observation -----------------------------------------------------------------------

    async def oldest_unsettled_age(self) -> float:
        """Seconds the oldest authentication has waited for a verdict (0 when none waits)."""
        async with self._pool.acquire() as conn:
            return await repo.oldest_unsettled_age(conn)


@dataclass(frozen=True)
class Recorded:
    """What a recording committed: the attempt's state after it, and what to count once the
    transaction is in (never for one that rolled back)."""

    state: AttemptState | None
    reason: Reason | None = None
    finding: SecurityFinding | None = None
    late: bool = False
    disagreeing: bool = False
    changed: bool = True
    event: outbox.Committed | None = None  # for the relay, once committed

    def count(self) -> None:
        _count(self.finding)
        if self.late:
            LATE_APPROVALS.inc()
        if self.disagreeing:
            APPROVALS_DISAGREEING.inc()
        if self.changed and self.state in SETTLED:
            _count_outcome(self.state, self.reason)


class _Unless(stop_base):
    """Stop retrying as soon as ``allowed()`` turns false."""

    def __init__(self, allowed: Callable[[], bool]) -> None:
        self._allowed = allowed

    def __call__(self, retry_state: RetryCallState) -> bool:
        return not self._allowed()


RenewLease = Callable[[Connection, str, str, float], Awaitable[bool]]


@contextlib.asynccontextmanager
async def keeping_lease(
    pool: asyncpg.Pool, renew: RenewLease, key: str, owner: str, lease_seconds: float
) -> AsyncIterator[None]:
    """Renew the lease on ``key`` with ``renew`` every third of its length while the body runs
    (a slow PG call must not let another worker take over); a driver that dies stops renewing,
    and its lease runs out."""

    async def renewing() -> None:
        while True:
            await asyncio.sleep(lease_seconds / 3)
            try:
                async with pool.acquire() as conn:
                    if not await renew(conn, key, owner, lease_seconds):
                        return
            except Exception:
                log.warning("lease renewal failed; retrying", exc_info=True)

    task = asyncio.create_task(renewing())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _worth_retrying(result: ConfirmResult) -> bool:
    """Only an unknown outcome is retried at once (same key); "probably done" is looked up, and
    a refusal for our own configuration waits for the reconciler's backoff."""
    return (
        isinstance(result, Unknown)
        and result.error_class is ErrorClass.OUTCOME_UNKNOWN
        and result is not NOT_SENT
    )


def _for_this_attempt(payment: PgPayment, facts: AttemptFacts) -> bool:
    """The confirm's answer is about this paymentKey and order (its amount may still differ)."""
    return payment.payment_key == facts.payment_key and payment.order_id == facts.order_id


def _last_result(state: RetryCallState) -> ConfirmResult:
    assert state.outcome is not None
    result: ConfirmResult = state.outcome.result()
    return result


def _rejection(
    attempt: Attempt, reason: Reason, message: str, pg_code: str | None = None
) -> PaymentRejected:
    return PaymentRejected(
        correlation_id=attempt.order_id,
        causation_id=attempt.event_id,
        order_id=attempt.order_id,
        payment_key=attempt.payment_key,
        reason=reason.value,
        message=message,
        pg_code=pg_code,
    )


async def _record_finding(
    conn: Connection, attempt: Attempt, finding: SecurityFinding | None
) -> SecurityFinding | None:
    """Store ``finding`` in the caller's transaction; returns it if it was new."""
    if finding is None or not await repo.record_security_event(conn, attempt.payment_key, finding):
        return None
    # Some findings quote payment keys (a replay's, a made-up one): the log shows them masked,
    # the security_events table (operators only) keeps them whole.
    log.warning(
        "security event",
        extra={
            "order_id": attempt.order_id,
            "payment_key": attempt.payment_key,
            "kind": finding.kind.value,
            "expected": _shown(finding, finding.expected),
            "presented": _shown(finding, finding.presented),
        },
    )
    return finding


# Findings whose expected or presented values are payment keys.
KEYED_FINDINGS = frozenset({SecurityKind.UNKNOWN_PAYMENT_KEY, SecurityKind.ALREADY_PAID})


def _shown(finding: SecurityFinding, value: str) -> str:
    return masked(value) if finding.kind in KEYED_FINDINGS else value


def _count_outcome(state: AttemptState, reason: Reason | None) -> None:
    ATTEMPT_OUTCOMES.labels(state=state.value, reason=reason.value if reason else "").inc()


def _count(finding: SecurityFinding | None) -> None:
    """Count a committed finding (never one whose transaction rolled back)."""
    if finding is not None:
        SECURITY_EVENTS.labels(kind=finding.kind.value).inc()


def _log_facts(facts: AttemptFacts) -> dict[str, object]:
    return {"order_id": facts.order_id, "payment_key": facts.payment_key}


def _log(attempt: Attempt) -> dict[str, object]:
    return {"order_id": attempt.order_id, "payment_key": attempt.payment_key}
