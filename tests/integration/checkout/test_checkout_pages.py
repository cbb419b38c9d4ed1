"""The result page and the static files it needs, served by checkout."""

from __future__ import annotations

import httpx

from services.checkout.bootstrap import create_app, migrate
from services.checkout.config import Settings
from shared.db import create_pool
from shared.events import utcnow
from shared.outbox import Handoff
from tests.integration.checkout.conftest import SUCCESS, Checkout


async def test_the_result_page_follows_the_order_it_names(checkout: Checkout) -> None:
    response = await checkout.client.get("/payments/result", params={"orderId": "order-2026-0001"})

    assert response.status_code == 200
    assert 'data-order-id="order-2026-0001"' in response.text
    assert 'id="payment-status" data-status="PROCESSING"' in response.text
    assert '<script src="/payments/static/result.js" defer></script>' in response.text
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"


async def test_the_result_page_shows_the_shops_words_for_a_code_never_the_links_message(
    checkout: Checkout,
) -> None:
    response = await checkout.client.get(
        "/payments/result",
        params={
            "orderId": "order-2026-0001",
            "code": "REJECT_CARD_COMPANY",
            "message": "Call +82 10 0000 0000 to get your money back",
        },
    )

    assert response.status_code == 200
    assert 'data-status="FAILED"' in response.text
    assert "The card company declined the payment; nothing was charged. (REJECT_CARD_COMPANY)" in (
        response.text
    )
    assert "Call +82" not in response.text


async def test_an_unknown_failure_code_gets_the_generic_reason(checkout: Checkout) -> None:
    response = await checkout.client.get(
        "/payments/result",
        params={"orderId": "order-2026-0001", "code": "SOMETHING_ODD", "message": "<img src=x>"},
    )

    assert "The payment was not completed; nothing was charged. (SOMETHING_ODD)" in response.text
    assert "<img" not in response.text
    assert "&lt;img" not in response.text


async def test_the_result_page_refuses_a_forged_order_id(checkout: Checkout) -> None:
    response = await checkout.client.get(
        "/payments/result", params={"orderId": '"><script>alert(1)</script>'}
    )

    assert response.status_code == 400
    assert "<script>alert" not in response.text
    assert 'data-field="orderId"' in response.text


async def test_the_result_script_and_stylesheet_are_served(checkout: Checkout) -> None:
    script = await checkout.client.get("/payments/static/result.js")
    style = await checkout.client.get("/payments/static/checkout.css")

    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "credentials" in script.text
    assert "Authorization" not in script.text
    assert style.status_code == 200


async def test_an_unknown_page_is_an_html_404(checkout: Checkout) -> None:
    response = await checkout.client.get("/payments/nowhere")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")


async def test_the_health_check_answers(checkout: Checkout) -> None:
    response = await checkout.client.get("/healthz")

    assert response.status_code == 200
    assert response.headers["x-request-id"]


async def test_a_canceled_window_says_canceled(checkout: Checkout) -> None:
    response = await checkout.client.get(
        "/payments/result", params={"code": "PAY_PROCESS_CANCELED", "message": "closed"}
    )

    assert 'data-status="FAILED">Payment canceled<' in response.text


async def test_a_database_outage_gets_a_503_page_to_refresh(database_url: str) -> None:
    settings = Settings(database_url=database_url)
    await migrate(settings)
    app = create_app(settings)
    app.state.settings = settings
    app.state.pool = await create_pool(database_url, settings.db_schema, min_size=1, max_size=1)
    app.state.handoff = Handoff()
    app.state.clock = utcnow
    await app.state.pool.close()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://checkout.test") as client:
        response = await client.get("/payments/success", params=SUCCESS)

    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert "refresh" in response.text


async def test_the_result_page_follows_the_attempt_it_came_from(checkout: Checkout) -> None:
    response = await checkout.client.get(
        "/payments/result", params={"orderId": "order-2026-0001", "paymentKey": "tpk_second_try"}
    )

    assert response.status_code == 200
    assert 'data-payment-key="tpk_second_try"' in response.text
