"""An event about an order is applied once, on one path, batched: read, planned and written with
its inbox claim in one statement (one for every order of the batch) if the row did not change
meanwhile (else read and planned again); an effect that takes more runs in the claim's transaction,
the row locked until it commits."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import replace

import pytest

from services.order import consumer, repository
from services.order.domain import Order, OrderStatus
from services.order.repository import Saved
from services.order.service import NewState, OrderEffect, OrderEvent, apply_once_to_orders
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


async def test_approvals_arriving_while_one_is_written_are_written_together_by_one_statement(
    service: OrderService, monkeypatch: pytest.MonkeyPatch
) -> None:
    orders = [await service.placed() for _ in range(5)]
    batches = record_batches(monkeypatch)
    handle = consumer.handler(service.pool)

    await asyncio.gather(*(handle(approval(order)) for order in orders))

    # Two alone at once (two may run), the rest in one batch after the first of them.
    assert sorted(batches) == [1, 1, 3]
    for order in orders:
        assert (await service.order(order["orderId"]))["status"] == "PAID"


async def test_events_about_one_order_in_a_batch_take_turns(
    service: OrderService, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id = (await service.placed())["orderId"]
    batches = record_batches(monkeypatch)
    seen: list[OrderStatus] = []

    def cancel(order: Order) -> NewState | None:
        return NewState(replace(order, status=OrderStatus.CANCELED))

    def look(order: Order) -> NewState | None:
        seen.append(order.status)
        return NewState(order)

    events = [
        OrderEvent(uuid.uuid4(), order_id, cancel, never),
        OrderEvent(uuid.uuid4(), order_id, look, never),
    ]
    outcomes = await apply_once_to_orders(service.pool, CONSUMER, events)

    assert outcomes == [True, True]
    assert batches == [1, 1]
    assert seen == [OrderStatus.CANCELED]  # the second planned on the first one's result


async def test_an_event_whose_effect_fails_fails_alone_in_its_batch(
    service: OrderService,
) -> None:
    failing, fine = await service.placed(), await service.placed()

    async def fails(conn: Connection, order: Order | None) -> None:
        raise RuntimeError("this event's own failure")

    events = [
        OrderEvent(uuid.uuid4(), failing["orderId"], takes_more, fails),
        OrderEvent(uuid.uuid4(), fine["orderId"], unchanged, fails),
    ]
    outcomes = await apply_once_to_orders(service.pool, CONSUMER, events)

    assert isinstance(outcomes[0], RuntimeError)
    assert outcomes[1] is True
    assert await inbox_count(service, events[0].event_id) == 0
    assert await inbox_count(service, events[1].event_id) == 1


async def test_an_approval_planned_on_an_order_canceled_meanwhile_is_refunded(
    service: OrderService, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = await service.placed()
    read_orders = repository.read_orders

    async def read_then_cancel(
        conn: Connection, order_ids: Sequence[str]
    ) -> dict[str, repository.ReadOrder]:
        reads = await read_orders(conn, order_ids)  # still PENDING: the plan is to mark it paid
        for order_id in order_ids:
            await service.client.post(
                f"/api/orders/{order_id}/cancel",
                json={"reason": "changed my mind"},
                headers=bearer(),
            )
        return reads

    monkeypatch.setattr(repository, "read_orders", read_then_cancel)
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
        read = await read_one(conn, placed["orderId"])
        await conn.execute(
            "UPDATE orders SET payment_status = 'FAILED' WHERE order_id = $1", placed["orderId"]
        )
        canceled = replace(read.order, status=OrderStatus.CANCELED)
        event_id = uuid.uuid4()

        saved = await save_one(conn, event_id, read, canceled)

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
        read = await read_one(reader, order_id)
        cancel = canceler.transaction()
        await cancel.start()
        await canceler.execute(
            "UPDATE orders SET status = 'CANCELED' WHERE order_id = $1", order_id
        )
        write = asyncio.create_task(save_one(reader, event_id, read, read.order))
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
            read = await read_one(conn, placed["orderId"])
            saved = await save_one(conn, event_id, read, read.order)
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


async def never(conn: Connection, order: Order | None) -> None:
    raise AssertionError("a plan that is a new state takes no other effect")


def unchanged(order: Order) -> NewState | None:
    """A plan that is only a new state, the same as before: the claim alone is written."""
    return NewState(order)


def takes_more(order: Order) -> NewState | None:
    """A plan that is never only a new state: the effect always runs under the lock."""
    return None


async def apply(
    svc: OrderService,
    event_id: uuid.UUID,
    order_id: str,
    otherwise: OrderEffect,
) -> bool:
    [outcome] = await apply_once_to_orders(
        svc.pool, CONSUMER, [OrderEvent(event_id, order_id, takes_more, otherwise)]
    )
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


async def read_one(conn: Connection, order_id: str) -> repository.ReadOrder:
    return (await repository.read_orders(conn, [order_id]))[order_id]


async def save_one(
    conn: Connection, event_id: uuid.UUID, read: repository.ReadOrder, after: Order
) -> Saved:
    write = repository.OrderWrite(event_id, read, after)
    [saved] = await repository.claim_events_and_save_orders(conn, CONSUMER, [write])
    return saved


def record_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of orders each claim-and-save statement writes, from now on."""
    sizes: list[int] = []
    claim_and_save = repository.claim_events_and_save_orders

    async def recording(
        conn: Connection, consumer: str, writes: Sequence[repository.OrderWrite]
    ) -> list[Saved]:
        sizes.append(len(writes))
        return await claim_and_save(conn, consumer, writes)

    monkeypatch.setattr(repository, "claim_events_and_save_orders", recording)
    return sizes


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
