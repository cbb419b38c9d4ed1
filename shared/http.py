"""Serving a FastAPI app: uvicorn on uvloop, our logging, and a request id on every response."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import asyncpg
import uvicorn
from fastapi import Depends, FastAPI, Request
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.clock import Clock

REQUEST_ID = "X-Request-ID"


# Dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in a thread
# pool, a thread hop per request for a single attribute lookup.
async def app_pool(request: Request) -> asyncpg.Pool:
    """The pool the application's lifespan put on ``app.state.pool``."""
    pool: asyncpg.Pool = request.app.state.pool
    return pool


PoolDep = Annotated[asyncpg.Pool, Depends(app_pool)]


async def app_now(request: Request) -> datetime:
    """The time on the application's clock (``app.state.clock``: the database's, see
    ``shared.clock``), so that deadlines agree across roles."""
    clock: Clock = request.app.state.clock
    return clock()


NowDep = Annotated[datetime, Depends(app_now)]


class RequestIdMiddleware:
    """Echoes the gateway's request id (or makes one) on every response.

    Plain ASGI on purpose: Starlette's ``@app.middleware("http")`` runs every request in an
    extra task with stream plumbing, which cost more CPU than some of our routes themselves.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = Headers(scope=scope).get(REQUEST_ID) or uuid.uuid4().hex

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID] = rid
            await send(message)

        await self.app(scope, receive, send_with_id)


def add_request_id(app: FastAPI) -> None:
    """Echo the gateway's request id (or make one) on every response."""
    app.add_middleware(RequestIdMiddleware)


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
