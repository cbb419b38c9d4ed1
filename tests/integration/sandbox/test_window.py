"""6. The payment window through its real form, and the SDK stand-in script."""

from __future__ import annotations

import httpx

from tests.integration.sandbox.support import parse_form, window_fields


async def test_the_window_renders_a_card_form_whose_submission_redirects_to_the_success_url(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/sandbox/checkout", params=window_fields("order-win-01", 23000))
    form = parse_form(page.text)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert (form.action, form.method) == ("/sandbox/checkout", "post")
    assert form.buttons == {"approve": "action", "cancel": "action"}
    assert form.action is not None

    submitted = await client.post(form.action, data={**form.fields, "action": "approve"})

    assert submitted.status_code == 303
    location = httpx.URL(submitted.headers["location"])
    assert (location.host, location.path) == ("merchant.test", "/payments/success")
    assert dict(location.params) == {
        "paymentType": "NORMAL",
        "orderId": "order-win-01",
        "paymentKey": form.fields["paymentKey"],
        "amount": "23000",
    }


async def test_the_amount_the_browser_posts_is_the_one_authenticated(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/sandbox/checkout", params=window_fields("order-win-02", 23000))
    fields = {**parse_form(page.text).fields, "amount": "100", "action": "approve"}

    submitted = await client.post("/sandbox/checkout", data=fields)

    assert httpx.URL(submitted.headers["location"]).params["amount"] == "100"


async def test_a_card_with_the_reject_prefix_goes_to_the_fail_url(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/sandbox/checkout", params=window_fields("order-win-03"))
    fields = {**parse_form(page.text).fields, "cardNumber": "9999 1234 5678 0000"}

    submitted = await client.post("/sandbox/checkout", data={**fields, "action": "approve"})

    location = httpx.URL(submitted.headers["location"])
    assert submitted.status_code == 303
    assert location.path == "/payments/fail"
    assert location.params["code"] == "REJECT_CARD_COMPANY"
    assert location.params["orderId"] == "order-win-03"
    assert location.params["message"]
    payment = (await client.get(f"/v1/payments/{fields['paymentKey']}")).json()
    assert payment["status"] == "ABORTED"


async def test_cancel_goes_to_the_fail_url_without_an_order_id(client: httpx.AsyncClient) -> None:
    page = await client.get("/sandbox/checkout", params=window_fields("order-win-04"))

    submitted = await client.post(
        "/sandbox/checkout", data={**parse_form(page.text).fields, "action": "cancel"}
    )

    location = httpx.URL(submitted.headers["location"])
    assert submitted.status_code == 303
    assert location.path == "/payments/fail"
    assert location.params["code"] == "PAY_PROCESS_CANCELED"
    assert location.params["message"]
    assert "orderId" not in location.params


async def test_a_post_without_the_get_opens_and_authenticates_in_one_step(
    client: httpx.AsyncClient,
) -> None:
    submitted = await client.post(
        "/sandbox/checkout", data=window_fields("order-win-05", action="approve")
    )

    key = httpx.URL(submitted.headers["location"]).params["paymentKey"]
    assert (await client.get(f"/v1/payments/{key}")).json()["status"] == "IN_PROGRESS"


async def test_a_success_url_with_a_query_keeps_it(client: httpx.AsyncClient) -> None:
    fields = window_fields(
        "order-win-06", successUrl="http://merchant.test/ok?shop=1", action="approve"
    )

    submitted = await client.post("/sandbox/checkout", data=fields)

    location = httpx.URL(submitted.headers["location"])
    assert location.params["shop"] == "1"
    assert location.params["orderId"] == "order-win-06"


async def test_bad_window_fields_get_a_400_page(client: httpx.AsyncClient) -> None:
    bad = [
        window_fields("short"),
        window_fields("order-win-07", 99),
        window_fields("order-win-07", orderName="x" * 101),
        window_fields("order-win-07", customerKey="a"),
        window_fields("order-win-07", successUrl="/relative"),
        window_fields("order-win-07", clientKey="test_ck_unknown"),
        {},
    ]
    for fields in bad:
        page = await client.get("/sandbox/checkout", params=fields)
        posted = await client.post("/sandbox/checkout", data={**fields, "action": "approve"})
        assert page.status_code == posted.status_code == 400, fields
        assert page.headers["content-type"].startswith("text/html")

    bad_card = window_fields("order-win-07", action="approve", cardNumber="12ab")
    bad_action = window_fields("order-win-07", action="explode")
    bad_key = window_fields("order-win-07", action="approve", paymentKey="tsbx_unknown")
    for fields in (bad_card, bad_action, bad_key):
        assert (await client.post("/sandbox/checkout", data=fields)).status_code == 400


async def test_the_sdk_script_opens_the_sandbox_window_from_the_requests_origin(
    client: httpx.AsyncClient, sandbox_url: str
) -> None:
    response = await client.get("/v2/standard")

    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]
    assert response.headers["access-control-allow-origin"] == "*"
    assert "window.TossPayments = function (clientKey)" in response.text
    assert "requestPayment" in response.text
    assert f'"{sandbox_url}"' in response.text
    assert "/sandbox/checkout?" in response.text
