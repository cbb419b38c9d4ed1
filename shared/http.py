"""Serving a FastAPI app: uvicorn on uvloop, our logging, a request id on every response
(asgi-correlation-id), and a guard that refuses text no handler should ever see."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated
from urllib.parse import unquote_to_bytes

import asyncpg
import orjson
import uvicorn
from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import Depends, FastAPI, Request
from starlette.responses import Response
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


# A request id is the gateway's ($request_id: 32 hex digits) or whatever a direct caller sent, if
# it is short printable ASCII; anything else is replaced by a fresh one.
_SANE_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")


def _sane_request_id(value: str) -> bool:
    return _SANE_REQUEST_ID.fullmatch(value) is not None


def add_request_id(app: FastAPI) -> None:
    """Echo the gateway's request id (or make one) on every response; every line logged while
    the request is handled carries it (``request_id``: ``shared.logging``)."""
    app.add_middleware(
        CorrelationIdMiddleware,
        header_name=REQUEST_ID,
        generator=lambda: uuid.uuid4().hex,
        validator=_sane_request_id,
    )


# Larger than any request of ours; the gateway refuses bodies over 64 KiB before we see them.
MAX_BODY = 256 * 1024
_NUL_ESCAPE = re.compile(rb"\\u0000", re.IGNORECASE)
Refusal = Callable[[str, str], Response]


class InputGuard:
    """Refuses, before any route runs, input that no handler should have to think about: a NUL
    or invalid UTF-8 in the path, the query or a header, and in a body: invalid UTF-8, a NUL
    (``\\u0000``) or a lone surrogate (``\\ud800``: valid JSON, but no text PostgreSQL or
    UTF-8 can hold), or more than :data:`MAX_BODY` bytes. Each is the client's mistake: a 4xx
    from ``refuse(where, why)``, never a 500 from deep inside."""

    def __init__(self, app: ASGIApp, refuse: Refusal) -> None:
        self.app = app
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = _problem_in_request_line(scope)
        if problem is not None:
            await self.refuse(*problem)(scope, receive, send)
            return
        body = await _read_body(receive)
        problem = _problem_in_body(body)
        if problem is not None:
            await self.refuse(*problem)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


def _problem_in_request_line(scope: Scope) -> tuple[str, str] | None:
    path = scope.get("raw_path") or scope["path"].encode()
    for where, raw in {"path": path, "query": scope["query_string"]}.items():
        if (why := _text_problem(unquote_to_bytes(raw))) is not None:
            return where, why
    for name, value in scope["headers"]:
        if (why := _text_problem(value)) is not None:
            return f"header {name.decode('latin-1')}", why
    return None


def _text_problem(raw: bytes) -> str | None:
    if b"\x00" in raw:
        return "contains a NUL character"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "is not valid UTF-8"
    return None


def _problem_in_body(body: bytes | None) -> tuple[str, str] | None:
    if body is None:
        return "body", f"is larger than {MAX_BODY} bytes"
    if (why := _text_problem(body)) is not None:
        return "body", why
    if b"\\u" in body or b"\\U" in body:
        if _NUL_ESCAPE.search(body):
            return "body", "contains a NUL character"
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if "surrogate" in str(exc):
                return "body", "contains a lone surrogate (not valid Unicode text)"
    return None


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body (None if it is too large); the guard hands it on unchanged."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes | None, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body or b"", "more_body": False}
        return await receive()

    return replayed


def add_input_guard(app: FastAPI, refuse: Refusal) -> None:
    app.add_middleware(InputGuard, refuse=refuse)


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
