"""The PG's redirects: each success recorded and announced once, malformed ones refused."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from services.checkout import repository
from shared.events import PaymentAuthenticated, PaymentAuthenticationFailed
from tests.integration.checkout.conftest import (
    NEVER_PLACED,
    PLACED,
    SUCCESS,
    Checkout,
    order_placed,
)


async def redirect(checkout: Checkout, path: str, params: dict[str, str]) -> httpx.Response:
    return await checkout.client.get(
        path, params=params, headers={"User-Agent": "Playwright/1.0", "X-Real-IP": "198.51.100.4"}
    )


def location_query(response: httpx.Response) -> tuple[str, dict[str, list[str]]]:
    location = urlsplit(response.headers["location"])
    return location.path, parse_qs(location.query)


async def test_a_success_redirect_is_recorded_and_announced_once(checkout: Checkout) -> None:
    response = await redirect(checkout, "/payments/success", SUCCESS)

    assert response.status_code == 303
    assert location_query(response) == (
        "/payments/result",
        {"orderId": ["order-2026-0001"], "paymentKey": ["tpk_20260101_abcdef"]},
    )
    [event] = await checkout.published()
    assert isinstance(event, PaymentAuthenticated)
    assert (event.order_id, event.payment_key, event.amount, event.payment_type) == (
        "order-2026-0001",
        "tpk_20260101_abcdef",
        15000,
        "NORMAL",
    )
    assert (event.client_ip, event.user_agent) == ("198.51.100.4", "Playwright/1.0")
    assert event.correlation_id == "order-2026-0001"
    assert await checkout.count("success_redirects") == 1


async def test_without_gateway_headers_the_peer_address_is_recorded(checkout: Checkout) -> None:
    await checkout.client.get("/payments/success", params=SUCCESS)

    [event] = await checkout.published()
    assert isinstance(event, PaymentAuthenticated)
    assert event.client_ip == "203.0.113.7"


async def test_a_refresh_of_the_success_redirect_publishes_nothing_more(
    checkout: Checkout,
) -> None:
    first = await redirect(checkout, "/payments/success", SUCCESS)
    again = await redirect(checkout, "/payments/success", SUCCESS)

    assert again.status_code == 303
    assert again.headers["location"] == first.headers["location"]
    assert len(await checkout.published()) == 1
    assert await checkout.count("outbox") == 1
    assert await checkout.pool.fetchval("SELECT repeat_count FROM success_redirects") == 1


async def test_concurrent_duplicate_redirects_announce_one_authentication(
    checkout: Checkout,
) -> None:
    responses = await asyncio.gather(
        *(redirect(checkout, "/payments/success", SUCCESS) for _ in range(6))
    )

    assert {r.status_code for r in responses} == {303}
    assert len(await checkout.published()) == 1


async def test_the_same_payment_key_with_a_tampered_amount_is_a_conflict_and_not_announced(
    checkout: Checkout,
) -> None:
    await redirect(checkout, "/payments/success", SUCCESS)
    tampered = await redirect(checkout, "/payments/success", {**SUCCESS, "amount": "100"})

    assert tampered.status_code == 303
    [event] = await checkout.published()
    assert isinstance(event, PaymentAuthenticated)
    assert event.amount == 15000
    conflict = await checkout.pool.fetchrow(
        "SELECT payment_key, order_id, amount, client_ip FROM conflicting_redirects"
    )
    assert conflict is not None
    assert dict(conflict) == {
        "payment_key": "tpk_20260101_abcdef",
        "order_id": "order-2026-0001",
        "amount": 100,
        "client_ip": "198.51.100.4",
    }
    assert await checkout.pool.fetchval("SELECT amount FROM success_redirects") == 15000


async def test_the_same_payment_key_for_another_order_is_a_conflict(checkout: Checkout) -> None:
    await redirect(checkout, "/payments/success", SUCCESS)
    await redirect(checkout, "/payments/success", {**SUCCESS, "orderId": "order-2026-0002"})

    assert len(await checkout.published()) == 1
    assert await checkout.count("conflicting_redirects") == 1


async def test_a_malformed_success_redirect_gets_a_400_page_and_leaves_no_trace(
    checkout: Checkout,
) -> None:
    response = await redirect(
        checkout, "/payments/success", {**SUCCESS, "amount": "-5", "paymentType": "CASH"}
    )

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert 'data-field="amount"' in response.text
    assert 'data-field="paymentType"' in response.text
    assert "Traceback" not in response.text
    for table in ("success_redirects", "conflicting_redirects", "fail_redirects", "outbox"):
        assert await checkout.count(table) == 0
    assert await checkout.published() == []


async def test_a_success_redirect_with_a_nul_byte_is_refused_not_a_server_error(
    checkout: Checkout,
) -> None:
    response = await checkout.client.get(
        "/payments/success?paymentKey=a%00b&orderId=order-2026-0001&amount=1&paymentType=NORMAL"
    )

    assert response.status_code == 400
    assert await checkout.count("success_redirects") == 0


async def test_a_fail_redirect_is_recorded_and_announced_once(checkout: Checkout) -> None:
    params = {"code": "REJECT_CARD_COMPANY", "message": "카드사 거절", "orderId": "order-2026-0001"}
    response = await redirect(checkout, "/payments/fail", params)
    await redirect(checkout, "/payments/fail", params)

    assert response.status_code == 303
    path, query = location_query(response)
    assert path == "/payments/result"
    assert query["orderId"] == ["order-2026-0001"]
    assert query["code"] == ["REJECT_CARD_COMPANY"]
    [event] = await checkout.published()
    assert isinstance(event, PaymentAuthenticationFailed)
    assert (event.order_id, event.code, event.message) == (
        "order-2026-0001",
        "REJECT_CARD_COMPANY",
        "The card company declined the payment; nothing was charged.",
    )
    assert await checkout.pool.fetchval("SELECT repeat_count FROM fail_redirects") == 1


async def test_a_fail_redirects_own_message_is_kept_for_operators_but_never_announced(
    checkout: Checkout,
) -> None:
    params = {"code": "PAY_PROCESS_ABORTED", "message": "Call us at +82 10", "orderId": PLACED[0]}
    response = await redirect(checkout, "/payments/fail", params)

    assert "message" not in location_query(response)[1]
    [event] = await checkout.published()
    assert isinstance(event, PaymentAuthenticationFailed)
    assert event.message == "The payment was interrupted; nothing was charged."
    assert await checkout.pool.fetchval("SELECT message FROM fail_redirects") == "Call us at +82 10"


async def test_a_fail_redirect_for_an_order_never_placed_is_not_announced(
    checkout: Checkout,
) -> None:
    params = {"code": "REJECT_CARD_COMPANY", "orderId": NEVER_PLACED}
    response = await redirect(checkout, "/payments/fail", params)

    assert response.status_code == 303
    assert await checkout.count("fail_redirects") == 1
    assert await checkout.published() == []


async def test_a_fail_redirect_before_its_order_placed_is_announced_once_it_is(
    checkout: Checkout,
) -> None:
    await redirect(
        checkout, "/payments/fail", {"code": "PAY_PROCESS_ABORTED", "orderId": NEVER_PLACED}
    )

    assert await checkout.place(NEVER_PLACED) == 1
    [event] = await checkout.published()
    assert isinstance(event, PaymentAuthenticationFailed)
    assert (event.order_id, event.code) == (NEVER_PLACED, "PAY_PROCESS_ABORTED")


async def test_a_success_redirect_for_an_order_never_placed_is_held_and_never_announced(
    checkout: Checkout,
) -> None:
    response = await redirect(checkout, "/payments/success", {**SUCCESS, "orderId": NEVER_PLACED})

    assert response.status_code == 303
    assert await checkout.count("success_redirects") == 1
    assert await checkout.count("outbox") == 0
    assert await checkout.published() == []


async def test_a_held_redirect_is_announced_once_its_order_is_placed(checkout: Checkout) -> None:
    early = {**SUCCESS, "orderId": NEVER_PLACED}
    await redirect(checkout, "/payments/success", early)
    await redirect(checkout, "/payments/success", early)  # a refresh while it waits

    assert await checkout.place(NEVER_PLACED) == 1
    [event] = await checkout.published()
    assert isinstance(event, PaymentAuthenticated)
    assert (event.order_id, event.payment_key, event.client_ip) == (
        NEVER_PLACED,
        SUCCESS["paymentKey"],
        "198.51.100.4",
    )
    assert await checkout.place(NEVER_PLACED) == 0  # OrderPlaced redelivered: nothing more


async def test_orders_placed_together_each_announce_their_own_held_redirects(
    checkout: Checkout,
) -> None:
    await redirect(checkout, "/payments/success", {**SUCCESS, "orderId": NEVER_PLACED})

    released = await checkout.place_together([order_placed(NEVER_PLACED), order_placed("o-77")])

    assert released == [1, 0]
    [event] = await checkout.published()
    assert isinstance(event, PaymentAuthenticated)
    assert event.order_id == NEVER_PLACED


async def test_two_copies_of_an_order_placed_in_one_batch_announce_its_redirects_once(
    checkout: Checkout,
) -> None:
    await redirect(checkout, "/payments/success", {**SUCCESS, "orderId": NEVER_PLACED})
    placed = order_placed(NEVER_PLACED)

    assert await checkout.place_together([placed, placed]) == [1, 0]
    assert len(await checkout.published()) == 1


async def test_redirects_racing_their_order_placed_are_each_announced_once(
    checkout: Checkout,
) -> None:
    order_id = "order-2026-0042"
    keys = [f"tpk_race_{n}" for n in range(12)]
    redirects = [
        redirect(checkout, "/payments/success", {**SUCCESS, "orderId": order_id, "paymentKey": k})
        for k in keys
    ]
    await asyncio.gather(*redirects[:6], checkout.place(order_id), *redirects[6:])

    events = await checkout.published()
    assert sorted(e.payment_key for e in events if isinstance(e, PaymentAuthenticated)) == sorted(
        keys
    )


async def test_a_redirect_whose_order_is_placed_just_after_it_looked_is_announced_at_once(
    checkout: Checkout, monkeypatch: pytest.MonkeyPatch
) -> None:
    order_id = "order-2026-0043"
    insert_first_success = repository.insert_first_success
    looked = 0

    async def look_then_place(*args: Any) -> int | None:
        nonlocal looked
        looked += 1
        outbox_id = await insert_first_success(*args)
        if looked == 1:  # not placed when it looked; placed before it takes the order's turn
            assert outbox_id is None
            assert await checkout.place(order_id) == 0
        return outbox_id

    monkeypatch.setattr(repository, "insert_first_success", look_then_place)

    await redirect(checkout, "/payments/success", {**SUCCESS, "orderId": order_id})

    [event] = await checkout.published()
    assert isinstance(event, PaymentAuthenticated)
    assert event.order_id == order_id
    assert looked == 2


async def test_a_canceled_window_without_an_order_is_recorded_but_not_announced(
    checkout: Checkout,
) -> None:
    params = {"code": "PAY_PROCESS_CANCELED", "message": "사용자에 의해 결제가 취소되었습니다."}
    response = await redirect(checkout, "/payments/fail", params)
    await redirect(checkout, "/payments/fail", params)

    assert response.status_code == 303
    assert location_query(response)[1]["code"] == ["PAY_PROCESS_CANCELED"]
    assert await checkout.count("fail_redirects") == 1
    assert await checkout.count("outbox") == 0
    assert await checkout.published() == []


async def test_a_malformed_fail_redirect_gets_a_400_page(checkout: Checkout) -> None:
    response = await redirect(checkout, "/payments/fail", {"code": "oops", "orderId": "x"})

    assert response.status_code == 400
    assert 'data-field="code"' in response.text
    assert 'data-field="orderId"' in response.text
    assert await checkout.count("fail_redirects") == 0
