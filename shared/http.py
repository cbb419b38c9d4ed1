"""Serving a FastAPI app: uvicorn on uvloop, our logging, and a request id on every response."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

import asyncpg
import uvicorn
from fastapi import Depends, FastAPI, Request, Response

REQUEST_ID = "X-Request-ID"


# Dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in a thread
# pool, a thread hop per request for a single attribute lookup.
async def app_pool(request: Request) -> asyncpg.Pool:
    """The pool the application's lifespan put on ``app.state.pool``."""
    pool: asyncpg.Pool = request.app.state.pool
    return pool


PoolDep = Annotated[asyncpg.Pool, Depends(app_pool)]


def add_request_id(app: FastAPI) -> None:
    """Echo the gateway's request id (or make one) on every response."""

    @app.middleware("http")
    async def request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rid = request.headers.get(REQUEST_ID) or uuid.uuid4().hex
        response = await call_next(request)
        response.headers[REQUEST_ID] = rid
        return response


def serve(app: FastAPI, host: str, port: int) -> None:
    """Run ``app`` until SIGINT/SIGTERM, with uvloop and without uvicorn's own log config."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        timeout_graceful_shutdown=5,
    )
