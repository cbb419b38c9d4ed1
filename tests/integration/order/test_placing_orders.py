"""POST /api/orders, the catalog and the profile, against the real database and broker."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest

from shared.events import OrderPlaced, utcnow
from tests.integration.order.conftest import (
    BEANS,
    COUPON,
    COUPON_2,
    GRINDER,
    KETTLE,
    START_POINTS,
    TOKEN_2,
    OrderService,
    bearer,
)


async def test_an_order_is_priced_by_the_server_and_announced(service: OrderService) -> None:
    order = await service.placed(
        items=[{"sku": BEANS, "quantity": 2}, {"sku": KETTLE, "quantity": 1}],
        couponCode=COUPON,
        points=1_000,
    )

    assert order["subtotal"] == 2 * 12_000 + 25_000
    assert (order["couponDiscount"], order["pointsUsed"]) == (3_000, 1_000)
    assert order["amount"] == 45_000
    assert (order["status"], order["currency"]) == ("PENDING", "KRW")
    assert order["orderName"] == "Coffee beans 1kg and 1 more"
    assert order["payment"] == {
        "status": "NONE",
        "paymentKey": None,
        "approvedAt": None,
        "method": None,
        "failure": None,
    }
    placed = await service.next_event(OrderPlaced)
    assert placed.order_id == order["orderId"] == placed.correlation_id
    assert (placed.amount, placed.customer_key) == (45_000, order["customerKey"])


async def test_placing_an_order_reserves_its_coupon_and_points(service: OrderService) -> None:
    await service.placed(couponCode=COUPON, points=1_000)

    assert await service.points() == START_POINTS - 1_000
    assert await service.coupon_status(COUPON) == "RESERVED"


@pytest.mark.parametrize("field", ["amount", "price", "total", "subtotal"])
async def test_a_body_that_tries_to_set_a_price_or_total_is_refused(
    service: OrderService, field: str
) -> None:
    response = await service.post_order({"items": [{"sku": BEANS, "quantity": 1}], field: 100})

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert (response.json()["code"], response.json()["field"]) == ("VALIDATION_FAILED", field)


async def test_a_price_on_an_item_is_refused(service: OrderService) -> None:
    response = await service.place(items=[{"sku": BEANS, "quantity": 1, "price": 1}])

    assert response.status_code == 422
    assert response.json()["field"] == "items.0.price"


BAD_ORDERS: list[tuple[str, dict[str, Any], int, str]] = [
    ("unknown sku", {"items": [{"sku": "NOPE", "quantity": 1}]}, 422, "UNKNOWN_PRODUCT"),
    ("no items", {"items": []}, 422, "EMPTY_ORDER"),
    ("zero quantity", {"items": [{"sku": BEANS, "quantity": 0}]}, 422, "QUANTITY_OUT_OF_RANGE"),
    ("huge quantity", {"items": [{"sku": BEANS, "quantity": 101}]}, 422, "QUANTITY_OUT_OF_RANGE"),
    (
        "fifty-one lines",
        {"items": [{"sku": f"SKU-{i}", "quantity": 1} for i in range(51)]},
        422,
        "TOO_MANY_LINES",
    ),
    (
        "duplicate sku",
        {"items": [{"sku": BEANS, "quantity": 1}, {"sku": BEANS, "quantity": 1}]},
        422,
        "DUPLICATE_SKU",
    ),
    ("negative points", {"points": -1}, 422, "NEGATIVE_POINTS"),
    ("points over the balance", {"points": START_POINTS + 1}, 409, "INSUFFICIENT_POINTS"),
    ("unknown coupon", {"couponCode": "NOPE"}, 422, "COUPON_NOT_FOUND"),
    ("another customer's coupon", {"couponCode": COUPON_2}, 422, "COUPON_NOT_FOUND"),
    (
        "below the coupon minimum",
        {"couponCode": "BIGSPENDER"},
        422,
        "COUPON_MINIMUM_NOT_MET",
    ),
    ("expired coupon", {"couponCode": "OLD"}, 422, "COUPON_EXPIRED"),
    (
        "quantity as a string",
        {"items": [{"sku": BEANS, "quantity": "1"}]},
        422,
        "VALIDATION_FAILED",
    ),
    # PostgreSQL text holds neither NUL nor lone surrogates: refused at the edge, never a 500.
    (
        "NUL in a sku",
        {"items": [{"sku": f"{BEANS}\x00", "quantity": 1}]},
        400,
        "INVALID_CHARACTERS",
    ),
    ("NUL in a coupon code", {"couponCode": f"{COUPON}\x00"}, 400, "INVALID_CHARACTERS"),
    ("a coupon code of 10,000 characters", {"couponCode": "X" * 10_000}, 422, "VALIDATION_FAILED"),
]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [(body, status, code) for _, body, status, code in BAD_ORDERS],
    ids=[name for name, *_ in BAD_ORDERS],
)
async def test_bad_input_is_refused_with_its_own_code_and_reserves_nothing(
    service: OrderService, body: dict[str, Any], status: int, code: str
) -> None:
    await service.add_coupon("BIGSPENDER", min_order_amount=50_000)
    await service.add_coupon("OLD", expires_at=utcnow() - timedelta(seconds=1))

    response = await service.place(**body)

    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert await service.points() == START_POINTS
    assert await service.pool.fetchval("SELECT count(*) FROM orders") == 0


async def test_a_body_that_is_not_json_is_refused_as_a_whole(service: OrderService) -> None:
    response = await service.client.post(
        "/api/orders",
        content=b"{not json",
        headers={**bearer(), "Content-Type": "application/json"},
    )

    assert (response.status_code, response.json()["code"]) == (422, "VALIDATION_FAILED")
    assert response.json()["field"] == "body"


async def test_points_that_bring_the_amount_below_100_are_refused(service: OrderService) -> None:
    await service.pool.execute("UPDATE customers SET points_balance = 20000")

    response = await service.place(points=11_901)

    assert (response.status_code, response.json()["code"]) == (422, "AMOUNT_BELOW_MINIMUM")
    assert (await service.place(points=11_900)).json()["amount"] == 100


async def test_a_used_coupon_is_refused(service: OrderService) -> None:
    await service.placed(couponCode=COUPON)

    response = await service.place(couponCode=COUPON)

    assert (response.status_code, response.json()["code"]) == (409, "COUPON_UNAVAILABLE")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong-token"),
        {"Authorization": "Basic Zm9vOmJhcg=="},
        {"Authorization": "Bearer "},
    ],
    ids=["no header", "unknown token", "not bearer", "empty token"],
)
async def test_api_calls_without_a_valid_token_are_unauthorized(
    service: OrderService, headers: dict[str, str]
) -> None:
    for method, path in [("GET", "/api/products"), ("GET", "/api/me"), ("POST", "/api/orders")]:
        response = await service.client.request(method, path, headers=headers, json={"items": []})

        assert response.status_code == 401, path
        assert response.json()["code"] == "UNAUTHORIZED"
        assert response.headers["www-authenticate"] == "Bearer"


async def test_health_needs_no_token(service: OrderService) -> None:
    assert (await service.client.get("/healthz")).status_code == 200


async def test_another_customers_order_is_not_found(service: OrderService) -> None:
    order = await service.placed()

    theirs = await service.client.get(f"/api/orders/{order['orderId']}", headers=bearer(TOKEN_2))
    missing = await service.client.get("/api/orders/ord_missing", headers=bearer(TOKEN_2))

    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["code"] == missing.json()["code"] == "ORDER_NOT_FOUND"


async def test_the_catalog_lists_sku_name_and_price(service: OrderService) -> None:
    response = await service.client.get("/api/products", headers=bearer())

    assert [(p["sku"], p["price"]) for p in response.json()] == [
        (BEANS, 12_000),
        (KETTLE, 25_000),
        (GRINDER, 39_000),
    ]


async def test_the_profile_shows_points_and_usable_coupons(service: OrderService) -> None:
    me = (await service.client.get("/api/me", headers=bearer())).json()

    assert me["pointsBalance"] == START_POINTS
    assert me["customerKey"].startswith("cus_")
    welcome = next(c for c in me["coupons"] if c["code"] == COUPON)
    assert (welcome["amountOff"], welcome["minOrderAmount"]) == (3_000, 10_000)
    assert COUPON_2 not in {c["code"] for c in me["coupons"]}


async def test_concurrent_orders_cannot_overspend_points(service: OrderService) -> None:
    responses = await asyncio.gather(*(service.place(points=1_000) for _ in range(10)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 5 + [409] * 5
    assert await service.points() == 0


async def test_concurrent_orders_cannot_use_one_coupon_twice(service: OrderService) -> None:
    responses = await asyncio.gather(*(service.place(couponCode=COUPON) for _ in range(10)))

    assert sorted(r.status_code for r in responses) == [201] + [409] * 9
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"COUPON_UNAVAILABLE"}


async def test_a_lone_surrogate_in_a_coupon_code_is_refused_not_a_server_error(
    service: OrderService,
) -> None:
    body = json.dumps({"items": [{"sku": BEANS, "quantity": 1}], "couponCode": "\ud800"})

    response = await service.client.post(
        "/api/orders",
        content=body.encode(),  # JSON spells it "\\ud800": valid JSON, no valid text
        headers={**bearer(), "Content-Type": "application/json"},
    )

    assert (response.status_code, response.json()["code"]) == (400, "INVALID_CHARACTERS")
    assert await service.points() == START_POINTS
