"""Every response carries the request id: the gateway's, or a fresh one."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from shared.http import REQUEST_ID, add_request_id


def app_with_request_id() -> FastAPI:
    app = FastAPI()
    add_request_id(app)

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    return app


def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app_with_request_id())
    return httpx.AsyncClient(transport=transport, base_url="http://test")


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


async def test_an_error_response_carries_the_request_id_too() -> None:
    async with client() as http:
        response = await http.get("/missing", headers={REQUEST_ID: "gw-404"})
    assert response.status_code == 404
    assert response.headers[REQUEST_ID] == "gw-404"
