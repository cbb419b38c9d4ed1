"""bench.load.fire: the open model, and the aiohttp client that fires the success redirects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bench import load


class Fake:
    """Answers by order id: a status, or an exception to raise; records when each came."""

    def __init__(self, answers: dict[str, int | BaseException], delay: float = 0.0) -> None:
        self.answers = answers
        self.delay = delay
        self.arrived: dict[str, float] = {}
        self.inflight = 0
        self.most_inflight = 0

    async def status(self, path: str) -> int:
        order_id = path.rsplit("=", 1)[1]
        self.arrived[order_id] = time.monotonic()
        self.inflight += 1
        self.most_inflight = max(self.most_inflight, self.inflight)
        try:
            await asyncio.sleep(self.delay)
            answer = self.answers[order_id]
            if isinstance(answer, BaseException):
                raise answer
            return answer
        finally:
            self.inflight -= 1


def payments(*order_ids: str) -> list[load.Authenticated]:
    return [load.Authenticated(o, f"/payments/success?orderId={o}") for o in order_ids]


async def test_errors_are_4xx_5xx_and_transport_failures_and_every_request_ticks() -> None:
    fake = Fake(
        {
            "a": 200,
            "b": 303,
            "c": 409,
            "d": 502,
            "e": aiohttp.ClientConnectionError(),
            "f": TimeoutError(),
        }
    )
    ticks: list[None] = []

    fired = await load.fire(fake, payments(*"abcdef"), 1000, 8, lambda: ticks.append(None))

    assert fired.errors == 4
    assert len(ticks) == 6


async def test_arrivals_keep_to_the_schedule_whatever_the_answers_take() -> None:
    fake = Fake({o: 200 for o in "abcde"}, delay=0.3)

    fired = await load.fire(fake, payments(*"abcde"), 20, 16, lambda: None)

    offsets = [fake.arrived[o] - fired.started for o in "abcde"]
    for index, offset in enumerate(offsets):
        assert offset == pytest.approx(index / 20, abs=0.03)
    assert fake.most_inflight == 5
    assert fired.behind_schedule_max_s < 0.03


async def test_the_cap_on_requests_in_flight_shows_as_lag() -> None:
    fake = Fake({o: 200 for o in "abcd"}, delay=0.2)

    fired = await load.fire(fake, payments(*"abcd"), 1000, 2, lambda: None)

    assert fake.most_inflight == 2
    assert fired.behind_schedule_max_s >= 0.15


@pytest.fixture
async def checkout() -> AsyncIterator[tuple[str, list[str]]]:
    """A stand-in for checkout's success page: records each request line's target, redirects."""
    seen: list[str] = []

    async def success(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.Response(status=303, text="paid", headers={"Location": "/payments/done"})

    async def done(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.Response(status=500)

    app = web.Application()
    app.router.add_get("/payments/success", success)
    app.router.add_get("/payments/done", done)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_the_redirect_client_sends_the_pgs_query_as_is_and_does_not_follow(
    checkout: tuple[str, list[str]],
) -> None:
    base, seen = checkout
    path = "/payments/success?paymentKey=tgen%2Bab%2F%3D+x&orderId=o-1&amount=1000"

    async with load.redirect_session(base, max_inflight=4) as client:
        statuses = [await client.status(path) for _ in range(3)]

    assert statuses == [303, 303, 303]  # not the 500 of the page it points to
    assert seen == [path] * 3


async def test_a_refused_connection_is_an_error_not_a_crash() -> None:
    async with load.redirect_session("http://127.0.0.1:9", max_inflight=2) as client:
        fired = await load.fire(client, payments("a", "b"), 1000, 2, lambda: None)

    assert fired.errors == 2


class RefusedFirst(Fake):
    """Answers 503 the first ``refusals`` times each order comes, then 200."""

    def __init__(self, refusals: int) -> None:
        super().__init__({})
        self.refusals = refusals
        self.calls: dict[str, int] = {}

    async def status(self, path: str) -> int:
        order_id = path.rsplit("=", 1)[1]
        self.calls[order_id] = self.calls.get(order_id, 0) + 1
        return 503 if self.calls[order_id] <= self.refusals else 200


async def test_a_refused_redirect_is_loaded_again_within_the_retry_window() -> None:
    fake = RefusedFirst(refusals=1)

    fired = await load.fire(fake, payments("a", "b"), 1000, 2, lambda: None, retry_for_s=5)

    assert (fired.errors, fired.refused) == (0, 2)
    assert fake.calls == {"a": 2, "b": 2}


async def test_without_a_retry_window_a_refused_redirect_is_an_error_asked_once() -> None:
    fake = RefusedFirst(refusals=1)

    fired = await load.fire(fake, payments("a"), 1000, 2, lambda: None)

    assert (fired.errors, fired.refused) == (1, 0)
    assert fake.calls == {"a": 1}
