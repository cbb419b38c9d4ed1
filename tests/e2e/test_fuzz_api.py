"""Fuzzing every HTTP API of the running stack: never a 5xx, never an answer its schema denies.

Schemathesis generates requests from each API's OpenAPI document, valid ones and invalid ones,
sends them to the real processes and checks every answer: no server error, a documented status,
a documented content type, a body that matches the documented schema, and a 4xx for data the
schema calls invalid.

- The order API is fuzzed through the gateway from the document it serves, with the request
  side narrowed to what the domain accepts (the catalog's SKUs, the customer's coupon codes,
  quantity and line limits), so that valid requests often place real orders and invalid ones
  probe each of the domain's refusals. Orders it places are then read and canceled by id.
- Checkout's routes are browser pages and publish no document: the schema below writes down
  what ``../shared/design.md`` and the PG's redirects promise.
- The sandbox is fuzzed directly (it is not behind the gateway) from the PG contract
  (``../shared/pg-contract.md``), not from a document of its own: that would include the fault
  knobs, and turning those at random would break every other test sharing the stack.

It acts as the second demo customer: the browser test spends the first one's coupon and points.
Bounded for a small machine: a few dozen examples per operation and generation mode, no
shrinking (each failure comes with a curl command instead), nothing stored between runs.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from deploy.stack import Stack
from services.order.domain import MAX_LINES, MAX_QUANTITY
from shared.problems import PROBLEM_JSON

pytestmark = pytest.mark.e2e

EXAMPLES = 40
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)
# The gateway's own refusals (a body over 64 KiB, the rate limit): no service documents them.
GATEWAY_STATUSES = frozenset({413, 429})
CUSTOMER = {"Authorization": "Bearer demo-token-2"}
Operation = schemathesis.APIOperation[Any, Any, Any, Any]
TEST_SECRET_KEY = "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R"


@dataclass
class Target:
    """One API: its schema, where to send requests, and ids it handed out (by path parameter)."""

    schema: schemathesis.BaseSchema
    base_url: str
    headers: dict[str, str] = field(default_factory=dict)
    ids: dict[str, list[str]] = field(default_factory=dict)


def fuzz(target: Target) -> list[str]:
    """Every failure found, one readable entry per operation and phase.

    Per operation: first schemathesis's coverage cases (each constraint at its boundaries and
    broken once, other methods on the path), then random valid and invalid cases.
    """
    failures: list[str] = []
    with requests.Session() as session:
        for operation in operations(target.schema):
            failure = cover_operation(target, operation, session)
            if failure:
                failures.append(f"{operation.label} [coverage]\n{failure}")
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                failure = fuzz_operation(target, operation, mode, session)
                if failure:
                    failures.append(f"{operation.label} [{mode.value}]\n{failure}")
    return failures


def send(target: Target, case: Case[Any], session: requests.Session) -> None:
    """Send one case and check the answer; raises what schemathesis or the checks found."""
    response = case.call(
        base_url=target.base_url, session=session, headers=target.headers, timeout=15
    )
    if response.status_code in GATEWAY_STATUSES:
        assert content_type(response).startswith(PROBLEM_JSON), response.text
        return
    case.validate_response(response, checks=CHECKS, headers=target.headers)
    check_problem_status(response)
    remember_ids(target, response)


def cover_operation(target: Target, operation: Operation, session: requests.Session) -> str | None:
    config = target.schema.config.generation_for(operation=operation, phase="coverage")
    covering = target.schema.iter_coverage_cases(
        operation, generation_modes=list(GenerationMode), generation_config=config
    )
    try:
        for case in covering:
            send(target, case, session)
    except (Exception, BaseExceptionGroup) as exc:
        return str(exc)
    return None


def fuzz_operation(
    target: Target, operation: Operation, mode: GenerationMode, session: requests.Session
) -> str | None:
    @FUZZ
    @given(case=cases(target, operation, mode))
    def send_generated(case: Case[Any]) -> None:
        send(target, case, session)

    try:
        send_generated()
    except Unsatisfiable:
        return None  # nothing in the operation can be made invalid (no parameters, no body)
    except (Exception, BaseExceptionGroup) as exc:
        return str(exc)
    return None


def cases(
    target: Target, operation: Operation, mode: GenerationMode
) -> st.SearchStrategy[Case[Any]]:
    """Generated cases, and as many again aimed at ids the API handed out earlier."""
    generated = operation.as_strategy(generation_mode=mode)
    for name, known in target.ids.items():
        if known and f"{{{name}}}" in operation.path:

            def aimed_at(value: str, name: str = name) -> st.SearchStrategy[Case[Any]]:
                return operation.as_strategy(generation_mode=mode, path_parameters={name: value})

            return generated | st.sampled_from(known).flatmap(aimed_at)
    return generated


def remember_ids(target: Target, response: schemathesis.Response) -> None:
    if response.status_code == 201 and content_type(response).startswith("application/json"):
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("orderId"), str):
            target.ids.setdefault("order_id", []).append(body["orderId"])


def operations(schema: schemathesis.BaseSchema) -> Iterator[Operation]:
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        yield result.ok()


def content_type(response: schemathesis.Response) -> str:
    return (response.headers.get("content-type") or [""])[0]


def check_problem_status(response: schemathesis.Response) -> None:
    """A problem's ``status`` member repeats the HTTP status (RFC 9457)."""
    if content_type(response).startswith(PROBLEM_JSON):
        body = response.json()
        assert body["status"] == response.status_code, body


def report(failures: list[str]) -> str:
    return f"{len(failures)} operation(s) failed:\n\n" + "\n\n".join(f[:3000] for f in failures)


def gateway_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.config.gateway_port}"


# --- the order API ---------------------------------------------------------------------------


def order_api(stack: Stack) -> dict[str, Any]:
    """The order service's own document, its requests narrowed to what the domain accepts."""
    with httpx.Client(base_url=gateway_url(stack), headers=CUSTOMER, timeout=10) as client:
        skus = [product["sku"] for product in client.get("/api/products").json()]
        coupons = [coupon["code"] for coupon in client.get("/api/me").json()["coupons"]]
    served = httpx.get(f"http://127.0.0.1:{stack.config.order_port}/openapi.json", timeout=10)
    document: dict[str, Any] = served.json()
    models = document["components"]["schemas"]
    models["ItemIn"]["properties"]["sku"]["enum"] = skus
    models["ItemIn"]["properties"]["quantity"].update(minimum=1, maximum=MAX_QUANTITY)
    order = models["PlaceOrderIn"]["properties"]
    order["items"].update(minItems=1, maxItems=MAX_LINES)
    order["couponCode"] = {"anyOf": [{"enum": coupons}, {"type": "null"}]}
    order["points"]["minimum"] = 0
    return document


def test_the_order_api_through_the_gateway_answers_every_request_as_documented(
    stack: Stack,
) -> None:
    target = Target(schemathesis.openapi.from_dict(order_api(stack)), gateway_url(stack), CUSTOMER)
    failures = fuzz(target)
    assert not failures, report(failures)
    assert target.ids.get("order_id"), "no valid order was placed: the fuzzing missed its aim"


def test_the_order_api_refuses_every_request_without_a_token(stack: Stack) -> None:
    """Without a token or a session: a 401, except starting or ending a session, which only the
    shop's own pages may do (a request without their Origin is a 403)."""
    schema = schemathesis.openapi.from_dict(order_api(stack))
    with requests.Session() as session:
        for operation in operations(schema):
            path = {"order_id": "ord_nobody"} if "{order_id}" in operation.path else None
            case = operation.Case(path_parameters=path)
            response = case.call(base_url=gateway_url(stack), session=session, timeout=15)
            expected = 403 if operation.path == "/api/session" else 401
            assert response.status_code == expected, (operation.label, response.text)
            case.validate_response(response, checks=CHECKS)


# --- checkout: the PG's redirect targets and the result page --------------------------------

ORDER_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{6,64}$"}
# A parameter given empty counts as absent.
OPTIONAL_ORDER_ID = {"type": "string", "pattern": "^([A-Za-z0-9_-]{6,64})?$"}
HTML_PAGE = {"text/html": {"schema": {"type": "string"}}}
SEE_RESULT = {
    "303": {
        "description": "Recorded; on to the result page",
        "headers": {"Location": {"required": True, "schema": {"type": "string"}}},
    }
}


def _query(name: str, schema: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def _page(parameters: list[dict[str, Any]], answers: dict[str, Any]) -> dict[str, Any]:
    """A GET route that answers ``answers``, or a 400 page listing what is wrong."""
    refused = {"description": "A malformed query", "content": HTML_PAGE}
    return {"get": {"parameters": parameters, "responses": {**answers, "400": refused}}}


CODE = {"type": "string", "pattern": "^[A-Z][A-Z0-9_]{0,99}$"}
MESSAGE = {"type": "string", "maxLength": 500}
CHECKOUT_API: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "checkout (browser routes)", "version": "1"},
    "paths": {
        "/payments/success": _page(
            [
                _query("paymentKey", {"type": "string", "pattern": "^\\S{1,200}$"}, required=True),
                _query("orderId", ORDER_ID, required=True),
                # 1 to 1,000,000,000 won in at most 12 digits (leading zeros allowed).
                _query(
                    "amount",
                    {
                        "type": "string",
                        "maxLength": 12,
                        "pattern": "^0*([1-9][0-9]{0,8}|1000000000)$",
                    },
                    required=True,
                ),
                _query(
                    "paymentType",
                    {"type": "string", "enum": ["NORMAL", "BRANDPAY", "KEYIN"]},
                    required=True,
                ),
            ],
            SEE_RESULT,
        ),
        "/payments/fail": _page(
            [
                _query("code", CODE, required=True),
                _query("message", MESSAGE),
                _query("orderId", OPTIONAL_ORDER_ID),
            ],
            SEE_RESULT,
        ),
        "/payments/result": _page(
            [
                _query("orderId", OPTIONAL_ORDER_ID),
                _query("paymentKey", {"type": "string", "pattern": "^(\\S{1,200})?$"}),
                _query("code", {"type": "string", "pattern": "^([A-Z][A-Z0-9_]{0,99})?$"}),
                # Without a code there is no failure to show: a lone message is ignored.
                _query("message", {"type": "string"}),
            ],
            {"200": {"description": "The result page", "content": HTML_PAGE}},
        ),
    },
}


def test_the_checkout_pages_through_the_gateway_answer_every_redirect_as_documented(
    stack: Stack,
) -> None:
    failures = fuzz(Target(schemathesis.openapi.from_dict(CHECKOUT_API), gateway_url(stack)))
    assert not failures, report(failures)


# --- the sandbox: the PG contract's API ------------------------------------------------------

PG_ERROR = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
        "message": {"type": "string"},
    },
}
PAYMENT_STATUSES = [
    "READY",
    "IN_PROGRESS",
    "DONE",
    "CANCELED",
    "PARTIAL_CANCELED",
    "ABORTED",
    "EXPIRED",
    "WAITING_FOR_DEPOSIT",
]
PAYMENT = {
    "type": "object",
    "required": ["paymentKey", "orderId", "status", "totalAmount", "balanceAmount", "currency"],
    "properties": {
        "paymentKey": {"type": "string"},
        "orderId": {"type": "string"},
        "status": {"enum": PAYMENT_STATUSES},
        "totalAmount": {"type": "integer"},
        "balanceAmount": {"type": "integer"},
        "currency": {"enum": ["KRW"]},
    },
}
KEY = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[A-Za-z0-9_-]+$"}
PAYMENT_KEY = {"name": "paymentKey", "in": "path", "required": True, "schema": KEY}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "schema": {"type": "string", "minLength": 1, "maxLength": 300, "pattern": "^[A-Za-z0-9_-]+$"},
}


def _pg_answers(*errors: int) -> dict[str, Any]:
    payment = {"description": "The payment", "content": {"application/json": {"schema": PAYMENT}}}
    error = {"description": "A PG error", "content": {"application/json": {"schema": PG_ERROR}}}
    return {"200": payment, **{str(status): error for status in errors}}


def _post(parameters: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "parameters": [*parameters, IDEMPOTENCY_KEY],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": _pg_answers(400, 401, 403, 404, 409),
        }
    }


def _lookup(parameter: dict[str, Any]) -> dict[str, Any]:
    return {"get": {"parameters": [parameter], "responses": _pg_answers(400, 401, 403, 404)}}


PG_API: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Toss Payments core API (sandbox)", "version": "2022-11-16"},
    "paths": {
        "/v1/payments/confirm": _post(
            [],
            {
                "type": "object",
                "required": ["paymentKey", "orderId", "amount"],
                "properties": {
                    "paymentKey": KEY,
                    "orderId": ORDER_ID,
                    "amount": {"type": "integer", "minimum": 1},
                },
            },
        ),
        "/v1/payments/{paymentKey}": _lookup(PAYMENT_KEY),
        "/v1/payments/orders/{orderId}": _lookup(
            {"name": "orderId", "in": "path", "required": True, "schema": ORDER_ID}
        ),
        "/v1/payments/{paymentKey}/cancel": _post(
            [PAYMENT_KEY],
            {
                "type": "object",
                "required": ["cancelReason"],
                "properties": {
                    "cancelReason": {"type": "string", "minLength": 1, "maxLength": 200},
                    "cancelAmount": {"type": "integer", "minimum": 1},
                },
            },
        ),
    },
}


def test_the_sandbox_pg_api_answers_every_request_as_documented(stack: Stack) -> None:
    basic = base64.b64encode(f"{TEST_SECRET_KEY}:".encode()).decode()
    schema = schemathesis.openapi.from_dict(PG_API)
    failures = fuzz(Target(schema, stack.config.sandbox_url, {"Authorization": f"Basic {basic}"}))
    assert not failures, report(failures)
