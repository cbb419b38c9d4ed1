"""The simplest alternative, as the PG's official samples do it, for comparison only.

The success handler itself reads the stored order, checks the amount, calls confirm and marks the
order paid, all inside the buyer's request: no broker, no outbox, no separate worker.
Run as ``python -m bench.baseline`` with DATABASE_URL, TOSS_API_BASE and BASELINE_PORT.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

from shared.db import create_pool
from shared.http import serve

# The contract's public test key: the baseline only ever talks to the sandbox.
SANDBOX_SECRET_KEY = "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R"  # noqa: S105

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS bench_baseline (
    order_id    text PRIMARY KEY,
    received_at timestamptz NOT NULL,
    paid_at     timestamptz
)"""


def create_app(database_url: str, pg_base: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        auth = base64.b64encode(f"{SANDBOX_SECRET_KEY}:".encode()).decode()
        app.state.pool = await create_pool(database_url, "orders", min_size=4, max_size=20)
        app.state.pg = httpx.AsyncClient(
            base_url=pg_base,
            headers={"Authorization": f"Basic {auth}"},
            timeout=httpx.Timeout(30, connect=3),
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=512),
        )
        async with app.state.pool.acquire() as conn:
            await conn.execute(SCHEMA_SQL)
        try:
            yield
        finally:
            await app.state.pg.aclose()
            await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/payments/success")
    async def success(
        request: Request,
        payment_key: str = Query(alias="paymentKey"),
        order_id: str = Query(alias="orderId"),
        amount: int = Query(),
    ) -> JSONResponse:
        pool: asyncpg.Pool = request.app.state.pool
        pg: httpx.AsyncClient = request.app.state.pg
        async with pool.acquire() as conn:
            stored = await conn.fetchval(
                "INSERT INTO bench_baseline (order_id, received_at) VALUES ($1, clock_timestamp())"
                " ON CONFLICT (order_id) DO NOTHING RETURNING"
                " (SELECT amount FROM orders WHERE order_id = $1 AND status = 'PENDING')",
                order_id,
            )
        if stored is None or stored != amount:
            return JSONResponse({"error": "not payable or amount mismatch"}, status_code=400)
        answer = await pg.post(
            "/v1/payments/confirm",
            json={"paymentKey": payment_key, "orderId": order_id, "amount": stored},
            headers={"Idempotency-Key": f"baseline-{payment_key}"},
        )
        if answer.status_code != 200:
            return JSONResponse({"error": answer.json()}, status_code=502)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE orders SET status = 'PAID', payment_status = 'APPROVED',"
                " payment_key = $2, updated_at = clock_timestamp()"
                " WHERE order_id = $1 AND status = 'PENDING'",
                order_id,
                payment_key,
            )
            await conn.execute(
                "UPDATE bench_baseline SET paid_at = clock_timestamp() WHERE order_id = $1",
                order_id,
            )
        return JSONResponse({"status": "PAID"})

    return app


if __name__ == "__main__":
    serve(
        create_app(os.environ["DATABASE_URL"], os.environ["TOSS_API_BASE"]),
        "127.0.0.1",
        int(os.environ["BASELINE_PORT"]),
    )
