"""Outgoing PAYMENT_STATUS_CHANGED webhooks: deliver due rows, retry on the contract's schedule.

Deliveries are rows enqueued in the transaction that changed the payment. Any sandbox process
may send a due row: it leases the row first (``FOR UPDATE SKIP LOCKED``, then pushes its due time
ahead), so each attempt is made by one process. The webhook knobs apply here: a share of
deliveries dropped (recorded, never sent) or sent twice, and a batch sent newest first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

import httpx

from services.sandbox import domain, repository
from services.sandbox.faults import WebhookFaults
from services.sandbox.repository import Delivery
from services.sandbox.service import Sandbox, chance, utcnow

log = logging.getLogger(__name__)

# Longer than the receiver's 10 s answer deadline, so a lease never expires mid-attempt.
LEASE = timedelta(seconds=60)
BATCH = 50


class WebhookSender:
    def __init__(self, sandbox: Sandbox, client: httpx.AsyncClient, poll_interval: float) -> None:
        self._sandbox = sandbox
        self._client = client
        self._poll_interval = poll_interval

    async def run(self) -> None:
        """Deliver until cancelled; database or receiver trouble only delays deliveries."""
        while True:
            try:
                sent = await self.deliver_due()
            except Exception:
                log.exception("webhook delivery round failed; retrying")
                sent = 0
            if sent < BATCH:
                await self._sleep_until_woken()

    async def deliver_due(self) -> int:
        faults = self._sandbox.faults.webhooks
        async with self._sandbox.pool.acquire() as conn:
            due = await repository.claim_due_webhooks(conn, utcnow(), LEASE, BATCH)
        if faults.reorder:
            for delivery in reversed(due):  # newest first, one after another
                await self._deliver(delivery, faults)
        else:
            await asyncio.gather(*(self._deliver(delivery, faults) for delivery in due))
        return len(due)

    async def _deliver(self, delivery: Delivery, faults: WebhookFaults) -> None:
        first = delivery.attempts == 0
        if first and chance(faults.drop_rate):
            async with self._sandbox.pool.acquire() as conn:
                await repository.record_webhook_dropped(conn, delivery.id)
            return
        status = await self._post(delivery)
        if first and chance(faults.duplicate_rate):
            status = await self._post(delivery)
        next_attempt = None
        if status != 200:
            delay = domain.webhook_retry_delay(delivery.attempts, self._sandbox.faults)
            next_attempt = utcnow() + delay if delay is not None else None
            log.info(
                "webhook not accepted",
                extra={"status": status, "attempt": delivery.attempts, "retry": bool(delay)},
            )
        async with self._sandbox.pool.acquire() as conn:
            await repository.record_webhook_attempt(conn, delivery.id, status, next_attempt)

    async def _post(self, delivery: Delivery) -> int | None:
        headers = {
            "tosspayments-webhook-transmission-id": delivery.transmission_id,
            "tosspayments-webhook-transmission-time": domain.kst_iso(utcnow()) or "",
            "tosspayments-webhook-transmission-retried-count": str(delivery.attempts),
        }
        try:
            response = await self._client.post(delivery.url, json=delivery.body, headers=headers)
        except httpx.HTTPError as exc:
            log.info("webhook receiver unreachable", extra={"error": type(exc).__name__})
            return None
        return response.status_code

    async def _sleep_until_woken(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._sandbox.webhook_wake.wait(), self._poll_interval)
        self._sandbox.webhook_wake.clear()
