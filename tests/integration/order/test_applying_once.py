"""An event about an order is applied once, on one path: read, planned and written with its inbox
claim in one statement if the row did not change meanwhile (else read and planned again); an effect
that takes more runs in the claim's transaction, the row locked until it commits."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import pytest

from services.order import consumer, repository
from services.order.domain import Order, OrderStatus
from services.order.repository import Saved
from services.order.service import NewState, OrderEffect, apply_once_to_order
from shared.db import Connection
from tests.integration.order.conftest import COUPON, OrderService, approval, bearer

CONSUMER = "order.payment-results.test"


async def test_concurrent_copies_of_an_approval_pay_the_order_once(service: OrderService) -> None:
    order = await service.placed(couponCode=COUPON)
    copy = approval(order)
    handle = consumer.handler(service.pool)

    same_payment = [copy, copy, copy, approval(order), approval(order)]
    await asyncio.gather(*(handle(event) for event in same_payment))

    final = await service.order(order["orderId"])
    assert (final["status"], final["payment"]["paymentKey"]) == ("PAID", "pk_1")
    assert await service.coupon_status(COUPON) == "USED"
    assert await refunds_requested(service) == 0


async def test_of_two_payments_racing_for_an_order_the_second_is_refunded(
    service: OrderService,
) -> None:
    order = await service.placed()
    handle = consumer.handler(service.pool)

    await asyncio.gather(handle(approval(order, "pk_a")), handle(approval(order, "pk_b")))

    final = await service.order(order["orderId"])
    assert final["status"] == "PAID"
    assert await refunds_requested(service) == 1
    refund_key = await service.pool.fetchval("SELECT payment_key FROM refunds")
    assert {refund_key, final["payment"]["paymentKey"]} == {"pk_a", "pk_b"}


async def test_an_approval_planned_on_an_order_canceled_meanwhile_is_refunded(
    service: OrderService, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = await service.placed()
    read_order = repository.read_order

    async def read_then_cancel(conn: Connection, order_id: str) -> repository.ReadOrder | None:
        read = await read_order(conn, order_id)  # still PENDING: the plan is to mark it paid
        await service.client.post(
            f"/api/orders/{order_id}/cancel", json={"reason": "changed my mind"}, headers=bearer()
        )
        return read

    monkeypatch.setattr(repository, "read_order", read_then_cancel)
    late = approval(order)

    await consumer.handler(service.pool)(late)

    final = await service.order(order["orderId"])
    assert final["status"] == "CANCELED"
    assert final["refunds"][0]["kind"] == "AUTOMATIC"
    assert await refunds_requested(service) == 1
    assert await inbox_count(service, late.event_id, consumer.CONSUMER) == 1


async def test_a_row_changed_since_it_was_read_is_not_written(service: OrderService) -> None:
    placed = await service.placed()
    async with service.pool.acquire() as conn:
        read = await repository.read_order(conn, placed["orderId"])
        assert read is not None
        await conn.execute(
            "UPDATE orders SET payment_status = 'FAILED' WHERE order_id = $1", placed["orderId"]
        )
        canceled = replace(read.order, status=OrderStatus.CANCELED)
        event_id = uuid.uuid4()

        saved = await repository.claim_event_and_save_order(
            conn, CONSUMER, event_id, read, canceled, spend_coupon=False
        )

    assert saved is Saved.STALE
    assert await inbox_count(service, event_id) == 0
    assert (await service.order(placed["orderId"]))["status"] == "PENDING"


async def test_a_row_changed_while_the_write_waited_for_it_is_not_written(
    service: OrderService,
) -> None:
    placed = await service.placed()
    order_id = placed["orderId"]
    event_id = uuid.uuid4()
    async with service.pool.acquire() as reader, service.pool.acquire() as canceler:
        read = await repository.read_order(reader, order_id)
        assert read is not None
        cancel = canceler.transaction()
        await cancel.start()
        await canceler.execute(
            "UPDATE orders SET status = 'CANCELED' WHERE order_id = $1", order_id
        )
        write = asyncio.create_task(
            repository.claim_event_and_save_order(
                reader, CONSUMER, event_id, read, read.order, spend_coupon=False
            )
        )
        await asyncio.sleep(0.2)  # the write now waits for the row
        assert not write.done()
        await cancel.commit()

        assert await write is Saved.STALE
    assert await inbox_count(service, event_id) == 0


async def test_an_event_claimed_already_is_a_duplicate(service: OrderService) -> None:
    placed = await service.placed()
    event_id = uuid.uuid4()
    async with service.pool.acquire() as conn:
        for expected in (Saved.APPLIED, Saved.DUPLICATE):
            read = await repository.read_order(conn, placed["orderId"])
            assert read is not None
            saved = await repository.claim_event_and_save_order(
                conn, CONSUMER, event_id, read, read.order, spend_coupon=False
            )
            assert saved is expected
    assert await inbox_count(service, event_id) == 1


async def test_an_event_about_an_unknown_order_is_claimed_with_no_order(
    service: OrderService,
) -> None:
    event_id = uuid.uuid4()
    seen: list[Order | None] = []

    async def otherwise(conn: Connection, order: Order | None) -> None:
        seen.append(order)

    assert await apply(service, event_id, "ord_never_placed", otherwise)
    assert seen == [None]
    assert await inbox_count(service, event_id) == 1


async def test_a_failed_effect_rolls_back_its_claim_so_a_retry_applies_it(
    service: OrderService,
) -> None:
    placed = await service.placed()
    event_id = uuid.uuid4()
    attempts = 0

    async def otherwise(conn: Connection, order: Order | None) -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("the database went away")

    with pytest.raises(ConnectionError):
        await apply(service, event_id, placed["orderId"], otherwise)
    assert await inbox_count(service, event_id) == 0

    assert await apply(service, event_id, placed["orderId"], otherwise)
    assert not await apply(service, event_id, placed["orderId"], otherwise)
    assert attempts == 2
    assert await inbox_count(service, event_id) == 1


async def test_an_effect_that_takes_more_holds_the_order_until_it_commits(
    service: OrderService,
) -> None:
    placed = await service.placed()
    order_id = placed["orderId"]
    effect_running = asyncio.Event()
    finish_effect = asyncio.Event()

    async def otherwise(conn: Connection, order: Order | None) -> None:
        effect_running.set()
        await finish_effect.wait()

    applying = asyncio.create_task(apply(service, uuid.uuid4(), order_id, otherwise))
    await effect_running.wait()
    async with service.pool.acquire() as writer:
        write = asyncio.create_task(
            writer.execute("UPDATE orders SET status = 'CANCELED' WHERE order_id = $1", order_id)
        )
        await asyncio.sleep(0.2)
        assert not write.done()  # the row is locked while the effect runs
        finish_effect.set()
        assert await applying
        await write


async def test_saving_an_order_writes_only_what_changed(service: OrderService) -> None:
    placed = await service.placed()
    order_id = placed["orderId"]
    async with service.pool.acquire() as conn, conn.transaction():
        before = await repository.lock_order(conn, order_id)
        assert before is not None
        version = await row_version(conn, order_id)
        await repository.save_order(conn, before, replace(before))
        assert await row_version(conn, order_id) == version  # nothing changed: no UPDATE

        await repository.save_order(conn, before, replace(before, status=OrderStatus.CANCELED))
        after = await repository.lock_order(conn, order_id)

    assert after == replace(before, status=OrderStatus.CANCELED)


def takes_more(order: Order) -> NewState | None:
    """A plan that is never only a new state: the effect always runs under the lock."""
    return None


async def apply(
    svc: OrderService,
    event_id: uuid.UUID,
    order_id: str,
    otherwise: OrderEffect,
) -> bool:
    return await apply_once_to_order(svc.pool, CONSUMER, event_id, order_id, takes_more, otherwise)


async def inbox_count(svc: OrderService, event_id: uuid.UUID, name: str = CONSUMER) -> int:
    count: int = await svc.pool.fetchval(
        "SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id = $2", name, event_id
    )
    return count


async def refunds_requested(svc: OrderService) -> int:
    count: int = await svc.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE routing_key = 'order.refund_requested'"
    )
    return count


async def row_version(conn: Connection, order_id: str) -> int:
    version: int = await conn.fetchval("SELECT version FROM orders WHERE order_id = $1", order_id)
    return version
