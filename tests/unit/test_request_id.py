"""Every response carries the request id, the gateway's or a fresh one, and so does every line
logged while the request is handled."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import orjson
import pytest
from fastapi import FastAPI

from shared.http import REQUEST_ID, add_request_id
from shared.logging import formatter

log = logging.getLogger("tests.request_id")


def app_with_request_id() -> FastAPI:
    app = FastAPI()
    add_request_id(app)

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        log.info("pinged")
        return {"pong": "yes"}

    return app


def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app_with_request_id())
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """What the route logs, formatted as the services format it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("test"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield stream
    log.removeHandler(handler)


async def test_a_response_echoes_the_request_id_the_gateway_sent() -> None:
    async with client() as http:
        response = await http.get("/ping", headers={REQUEST_ID: "gw-123"})
    assert response.headers[REQUEST_ID] == "gw-123"
    assert response.json() == {"pong": "yes"}


async def test_a_request_without_an_id_gets_a_fresh_one_on_its_response() -> None:
    async with client() as http:
        first = (await http.get("/ping")).headers[REQUEST_ID]
        second = (await http.get("/ping")).headers[REQUEST_ID]
    assert len(first) == 32
    assert first != second


async def test_a_request_id_that_is_not_printable_ascii_is_replaced() -> None:
    async with client() as http:
        response = await http.get("/ping", headers={REQUEST_ID: "a b"})
    assert len(response.headers[REQUEST_ID]) == 32


async def test_an_error_response_carries_the_request_id_too() -> None:
    async with client() as http:
        response = await http.get("/missing", headers={REQUEST_ID: "gw-404"})
    assert response.status_code == 404
    assert response.headers[REQUEST_ID] == "gw-404"


async def test_a_line_logged_while_handling_a_request_carries_its_request_id(
    logged: io.StringIO,
) -> None:
    async with client() as http:
        response = await http.get("/ping", headers={REQUEST_ID: "gw-777"})

    [line] = [orjson.loads(text) for text in logged.getvalue().splitlines()]
    assert (line["msg"], line["request_id"]) == ("pinged", "gw-777")
    assert response.headers[REQUEST_ID] == "gw-777"
