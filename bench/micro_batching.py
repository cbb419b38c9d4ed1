"""What batching saves per event, in isolation: ``python -m bench.micro_batching``.

Runs the order service's real batched path (:func:`services.order.service.apply_once_to_orders`:
one statement reads the batch's orders, one claims its events and writes them) in a throw-away
database, one batch at a time, for each batch size: wall time and CPU (this process: the
client's share) per event. Batch size 1 is what a quiet consumer does; larger batches are what
forms when deliveries arrive while one is being written.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg

from deploy.scratch import fresh_database
from services.order import service
from services.order.bootstrap import MIGRATIONS
from services.order.domain import LineRequest, Order
from services.order.service import NewState, OrderEvent
from shared import db
from shared.db import Connection

ADMIN = os.environ.get("BENCH_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SCHEMA = "orders"
CONSUMER = "micro-batching"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def placed_orders(pool: asyncpg.Pool, count: int) -> list[str]:
    now = datetime.now(UTC)
    await service.seed_demo_data(pool, service.demo_customers("micro-1", "micro-2", now))
    customer_id: int = await pool.fetchval("SELECT min(customer_id) FROM customers")
    sku: str = await pool.fetchval("SELECT min(sku) FROM products")
    orders = []
    for _ in range(count):
        order = await service.place_order(
            pool,
            customer_id,
            [LineRequest(sku, 1)],
            coupon_code=None,
            points=0,
            ttl_seconds=3600,
            now=now,
        )
        orders.append(order.order_id)
    return orders


def _news(order: Order) -> NewState | None:
    """An event that changes the order's row, as a payment's news does."""
    return NewState(replace(order, payment=replace(order.payment, as_of=datetime.now(UTC))))


async def _takes_nothing_more(conn: Connection, order: Order | None) -> None:
    raise AssertionError("every event here is a new state of its order")


async def per_event(
    pool: asyncpg.Pool, orders: list[str], size: int, events: int
) -> tuple[float, float]:
    """Wall ms and CPU ms per event, ``events`` applied in batches of ``size``."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    for first in range(0, events, size):
        batch = [
            OrderEvent(uuid.uuid4(), orders[(first + k) % len(orders)], _news, _takes_nothing_more)
            for k in range(size)
        ]
        outcomes = await service.apply_once_to_orders(pool, CONSUMER, batch)
        assert all(outcome is True for outcome in outcomes), outcomes
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    return 1000 * wall / events, 1000 * cpu / events


async def main(args: argparse.Namespace) -> None:
    sizes = [int(size) for size in args.sizes.split(",")]
    async with fresh_database(args.admin, prefix="micro_batching") as dsn:
        await db.migrate(dsn, SCHEMA, MIGRATIONS)
        pool = await db.create_pool(dsn, SCHEMA, application_name=CONSUMER)
        try:
            orders = await placed_orders(pool, max(sizes))
            print(f"{'round':>5} {'batch':>5} {'wall ms/event':>14} {'CPU ms/event':>13}")
            for round_ in range(1, args.rounds + 1):
                for size in sizes:
                    wall, cpu = await per_event(pool, orders, size, args.events)
                    print(f"{round_:>5} {size:>5} {wall:>14.3f} {cpu:>13.3f}")
        finally:
            await pool.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.micro_batching", description=__doc__)
    parser.add_argument("--admin", default=ADMIN, help="an admin's DSN (BENCH_DATABASE_ADMIN_URL)")
    parser.add_argument("--sizes", default="1,4,16", help="batch sizes, comma-separated")
    parser.add_argument("--events", type=int, default=1600, help="events per size and round")
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
