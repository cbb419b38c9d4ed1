"""The rendered gateway: routes, headers, limits and errors, with the real nginx binary."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from gateway import render
from tests.integration.gateway.conftest import SANDBOX, Gateway, access_log, start_gateway


def received(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_storefront_is_served_at_the_root(client: httpx.Client) -> None:
    page = client.get("/")
    script = client.get("/app.js")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="products"' in page.text
    assert script.headers["content-type"].startswith("application/javascript")


def test_an_unknown_static_file_is_a_404(client: httpx.Client) -> None:
    assert client.get("/no-such-file.js").status_code == 404


def test_api_requests_go_to_the_order_service_with_the_path_intact(client: httpx.Client) -> None:
    echo = received(client.get("/api/orders/ord_1?x=1"))

    assert echo["upstream"] == "order"
    assert echo["path"] == "/api/orders/ord_1?x=1"


def test_payment_pages_go_to_checkout(client: httpx.Client) -> None:
    echo = received(client.get("/payments/success?paymentKey=k&orderId=order-1"))

    assert echo["upstream"] == "checkout"
    assert echo["path"] == "/payments/success?paymentKey=k&orderId=order-1"


def test_upstreams_learn_the_client_address_and_the_request_id(client: httpx.Client) -> None:
    response = client.get("/api/x", headers={"X-Forwarded-For": "192.0.2.99"})
    headers = received(response)["headers"]

    assert headers["x-real-ip"] == "127.0.0.1"  # the peer, not what the client claims
    assert headers["x-forwarded-for"] == "192.0.2.99, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])
    assert response.headers.get_list("x-request-id") == [headers["x-request-id"]]


def test_a_visitors_trace_context_does_not_reach_the_services(client: httpx.Client) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    response = client.get("/payments/x", headers={"traceparent": traceparent, "tracestate": "a=b"})

    assert {"traceparent", "tracestate"}.isdisjoint(received(response)["headers"])


def test_every_response_carries_a_request_id_and_the_security_headers(
    client: httpx.Client,
) -> None:
    for path in ("/", "/api/x", "/payments/x", "/no-such-file"):
        headers = client.get(path).headers
        assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"]), path
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert headers["server"] == "nginx"  # no version


def test_pages_may_load_scripts_only_from_the_gateway_and_the_sandbox(
    client: httpx.Client,
) -> None:
    policy = client.get("/").headers["content-security-policy"]

    assert f"script-src 'self' {SANDBOX};" in policy
    assert f"form-action 'self' {SANDBOX};" in policy
    assert "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy


def test_the_storefront_config_names_the_key_the_sdk_and_the_mode_and_no_identity(
    client: httpx.Client,
) -> None:
    response = client.get("/storefront-config.js")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    prefix = "window.STOREFRONT_CONFIG = "
    assert response.text.startswith(prefix)
    config = json.loads(response.text.removeprefix(prefix).strip().removesuffix(";"))
    assert config == {
        "clientKey": render.DEFAULTS["TOSS_CLIENT_KEY"],
        "sdkUrl": f"{SANDBOX}/v2/standard",
        "mode": "sandbox",
    }
    assert "token" not in response.text.lower()


def test_the_gateway_health_check_answers(client: httpx.Client) -> None:
    assert client.get("/healthz").status_code == 200


def test_an_upstream_error_passes_through_unchanged(client: httpx.Client) -> None:
    response = client.get("/api/conflict")

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "ORDER_NOT_CANCELABLE"


def test_a_body_over_64_kib_is_refused_with_a_problem(client: httpx.Client) -> None:
    response = client.post("/api/orders", content=b"x" * (65 * 1024))

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"


def test_webhooks_go_to_checkout(client: httpx.Client) -> None:
    echo = received(client.post("/webhooks/toss", json={"eventType": "PAYMENT_STATUS_CHANGED"}))

    assert (echo["upstream"], echo["path"]) == ("checkout", "/webhooks/toss")


def test_the_access_log_holds_the_path_but_no_query(client: httpx.Client, gateway: Gateway) -> None:
    client.get("/payments/success?paymentKey=tpk_logged_never&orderId=order-1&amount=1")

    log = access_log(gateway, "/payments/success")

    assert "tpk_logged_never" not in log
    assert "paymentKey" not in log
    assert "orderId=" not in log


def test_a_down_order_service_is_a_502_problem(gateway_without_upstreams: Gateway) -> None:
    response = httpx.get(f"{gateway_without_upstreams.url}/api/orders", timeout=5)

    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "UPSTREAM_UNAVAILABLE"
    assert response.headers["x-request-id"]


def test_a_down_checkout_is_an_html_page(gateway_without_upstreams: Gateway) -> None:
    response = httpx.get(f"{gateway_without_upstreams.url}/payments/result?orderId=x", timeout=5)

    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert "refresh" in response.text


def test_behind_a_trusted_proxy_the_forwarded_client_address_counts(
    upstreams: tuple[Any, Any],
) -> None:
    order, checkout = upstreams
    for behind in start_gateway(
        order.address, checkout.address, GATEWAY_TRUSTED_PROXY="127.0.0.1/32"
    ):
        response = httpx.get(
            f"{behind.url}/api/x", headers={"X-Forwarded-For": "192.0.2.99"}, timeout=5
        )
        assert received(response)["headers"]["x-real-ip"] == "192.0.2.99"
