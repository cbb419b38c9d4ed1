"""Consumer of ``checkout.placed-orders``: each OrderPlaced joins checkout's projection of placed
orders, once (inbox), and releases the success redirects that were waiting for it.

What happens to a message is :func:`shared.messaging.disposition`'s table: handled or a
duplicate, ack; the database unavailable, waited out; anything else, retried.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg

from services.checkout import service
from shared.batching import Batcher
from shared.events import Event, OrderPlaced
from shared.messaging import Handler
from shared.topology import CHECKOUT_PLACED_ORDERS

log = logging.getLogger(__name__)


def handler(pool: asyncpg.Pool) -> Handler:
    """Orders placed while one is projected are projected together (two batches at once)."""

    async def record(events: Sequence[OrderPlaced]) -> list[int]:
        return await service.record_placed_orders(pool, CHECKOUT_PLACED_ORDERS.name, events)

    placed: Batcher[OrderPlaced, int] = Batcher(CHECKOUT_PLACED_ORDERS.name, record, concurrency=2)

    async def handle(event: Event) -> None:
        if not isinstance(event, OrderPlaced):
            log.warning(
                "ignoring an event this consumer does not handle", extra={"type": event.type}
            )
            return
        released = await placed.submit(event)
        if released:
            log.info("held success redirects announced", extra={"count": released})

    return handle
