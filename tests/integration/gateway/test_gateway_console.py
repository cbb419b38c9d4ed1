"""The gateway's route to the operator console: /ops/ reaches the ops service with the
operator's credentials and the browser's host; a console that is down is a page, not a 502."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import httpx
import pytest

from deploy.stack import free_port
from tests.integration.gateway.conftest import UNLIMITED, Gateway, Upstream, start_gateway


@pytest.fixture(scope="module")
def with_console(upstreams: tuple[Upstream, Upstream]) -> Iterator[Gateway]:
    order, checkout = upstreams
    console = Upstream("ops")
    thread = threading.Thread(target=console.serve_forever, daemon=True)
    thread.start()
    try:
        yield from start_gateway(
            order.address, checkout.address, OPS_UPSTREAM=console.address, **UNLIMITED
        )
    finally:
        console.shutdown()
        console.server_close()


def test_console_requests_reach_the_ops_service_with_their_credentials(
    with_console: Gateway,
) -> None:
    response = httpx.post(
        f"{with_console.url}/ops/refunds/rf_1/retry", auth=("operator", "pw"), data={"csrf": "t"}
    )
    echo = response.json()

    assert echo["upstream"] == "ops"
    assert echo["path"] == "/ops/refunds/rf_1/retry"
    assert echo["headers"]["authorization"].startswith("Basic ")
    assert echo["headers"]["host"] == with_console.url.removeprefix("http://")


def test_a_console_that_is_down_is_an_unavailable_page() -> None:
    nowhere = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    with contextlib.contextmanager(start_gateway)(*nowhere[:2], OPS_UPSTREAM=nowhere[2]) as running:
        response = httpx.get(f"{running.url}/ops/")

    assert response.status_code == 503
    assert "Temporarily unavailable" in response.text
