"""Bad text anywhere, never a 5xx: for every operation of every service's schema (the order
API's own OpenAPI document, and the documents ``test_fuzz_api`` writes for checkout's pages and
the sandbox's PG API), hypothesis puts a lone surrogate, invalid UTF-8, a NUL or an overlong
string into a path parameter, a query parameter, a header or a body field of an otherwise
valid request, sends it byte for byte to the running stack (through the gateway where browsers
go), and expects a 4xx."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploy.stack import Stack
from tests.e2e.test_fuzz_api import (
    CHECKOUT_API,
    CUSTOMER,
    PG_API,
    TEST_SECRET_KEY,
    gateway_url,
    order_api,
)

pytestmark = pytest.mark.e2e

BAD = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
# Past every field's limit and the gateway's 8 KiB request line and header buffers.
OVERLONG = "x" * 20_000
# As text (a JSON body field, escaped by json.dumps) and as the bytes a URL or header carries;
# drawn by name, so that a failure reads short.
BAD_TEXT: dict[str, str] = {
    "a lone high surrogate": "\ud800",
    "a lone low surrogate": "\udfff",
    "a surrogate inside text": "a\udc80b",
    "a NUL": "nul\x00here",
    "an overlong string": OVERLONG * 4,
}
BAD_BYTES: dict[str, bytes] = {
    "a surrogate in UTF-8": b"\xed\xa0\x80",
    "invalid UTF-8": b"\xff\xfe",
    "an overlong NUL": b"\xc0\x80",
    "a NUL": b"nul\x00here",
    "a lone continuation byte": b"\x80",
    "an overlong string": OVERLONG.encode(),
}
# Headers a request may carry; NUL cannot be sent in a header at all (HTTP forbids it).
HEADERS = ("Authorization", "Cookie", "Origin", "Idempotency-Key", "User-Agent", "Accept-Language")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    query: tuple[str, ...]
    path_params: tuple[str, ...]
    body_fields: tuple[str, ...]


def operations(document: dict[str, Any]) -> list[Operation]:
    found = []
    for path, methods in document["paths"].items():
        for method, spec in methods.items():
            parameters = spec.get("parameters", [])
            found.append(
                Operation(
                    method.upper(),
                    path,
                    tuple(p["name"] for p in parameters if p["in"] == "query"),
                    tuple(p["name"] for p in parameters if p["in"] == "path"),
                    _body_fields(document, spec),
                )
            )
    return found


def _body_fields(document: dict[str, Any], spec: dict[str, Any]) -> tuple[str, ...]:
    content = spec.get("requestBody", {}).get("content", {}).get("application/json", {})
    schema = content.get("schema", {})
    for option in [schema, *schema.get("anyOf", [])]:
        if "$ref" in option:
            option = document["components"]["schemas"][option["$ref"].rsplit("/", 1)[1]]
        if "properties" in option:
            return tuple(option["properties"])
    return ("x",) if content else ()


@dataclass(frozen=True)
class Service:
    base_url: str
    headers: dict[str, str]
    operations: list[Operation]


def request(service: Service, operation: Operation, where: str, bad: str | bytes) -> httpx.Request:
    """A valid-looking request with one bad value at ``where``."""
    raw = bad.encode("utf-8", "surrogatepass") if isinstance(bad, str) else bad
    path = operation.path
    for name in operation.path_params:
        value = quote_from_bytes(raw) if where == f"path:{name}" else "order-does-not-exist"
        path = path.replace(f"{{{name}}}", value)
    query = "&".join(
        f"{name}={quote_from_bytes(raw) if where == f'query:{name}' else 'ok-value'}"
        for name in operation.query
    )
    headers = {name.encode(): value.encode() for name, value in service.headers.items()}
    if where.startswith("header:"):
        headers[where.removeprefix("header:").encode()] = raw
    content = None
    if operation.body_fields:
        fields: dict[str, Any] = {name: "ok-value" for name in operation.body_fields}
        if where.startswith("body:"):
            fields[where.removeprefix("body:")] = bad
        content = json.dumps(fields).encode()  # escapes: "\ud800" travels as valid JSON
        if where == "body":
            content = b'{"x": "' + raw + b'"}'
        headers[b"Content-Type"] = b"application/json"
    url = f"{service.base_url}{path}" + (f"?{query}" if query else "")
    return httpx.Request(operation.method, url, headers=list(headers.items()), content=content)


def places(operation: Operation) -> list[str]:
    return [
        *(f"path:{name}" for name in operation.path_params),
        *(f"query:{name}" for name in operation.query),
        *(f"header:{name}" for name in HEADERS),
        *((f"body:{name}" for name in operation.body_fields) if operation.body_fields else ()),
        *(("body",) if operation.body_fields else ()),
    ]


def check(service: Service) -> None:
    @BAD
    @given(data=st.data())
    def never_a_server_error(data: st.DataObject) -> None:
        operation = data.draw(st.sampled_from(service.operations), label="operation")
        where = data.draw(st.sampled_from(places(operation)), label="where")
        values: dict[str, str] | dict[str, bytes] = (
            BAD_TEXT if where.startswith("body:") else BAD_BYTES
        )
        what = data.draw(st.sampled_from(sorted(values)), label="bad value")
        if where.startswith("header:") and what == "a NUL":
            return  # no HTTP client can send it; the gateway's parser refuses it anyway
        with httpx.Client(timeout=15) as client:
            response = client.send(request(service, operation, where, values[what]))
        assert 400 <= response.status_code < 500, (
            f"{operation.method} {operation.path} with {what} in {where}: "
            f"{response.status_code} {response.text[:300]}"
        )

    never_a_server_error()


def test_bad_text_anywhere_in_the_order_api_gets_a_4xx(stack: Stack) -> None:
    document = order_api(stack)
    headers = {**CUSTOMER, "Origin": gateway_url(stack).replace("127.0.0.1", "localhost")}
    check(Service(gateway_url(stack), headers, operations(document)))


def test_bad_text_anywhere_in_the_checkout_pages_gets_a_4xx(stack: Stack) -> None:
    check(Service(gateway_url(stack), {}, operations(CHECKOUT_API)))


def test_bad_text_anywhere_in_the_sandbox_pg_api_gets_a_4xx(stack: Stack) -> None:
    basic = base64.b64encode(f"{TEST_SECRET_KEY}:".encode()).decode()
    service = Service(stack.config.sandbox_url, {"Authorization": f"Basic {basic}"}, [])
    check(Service(service.base_url, service.headers, operations(PG_API)))
