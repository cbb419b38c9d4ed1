"""The approval worker's PG secret key: from the environment or a file only, validated before the
worker touches anything, never written into the reason it gives for refusing to start, and
masked out of whatever the PG answers before that travels on in events."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.approval.__main__ import main
from services.approval.bootstrap import running
from services.approval.config import ConfigurationError, Settings
from services.approval.pg_client import (
    ConfirmRequest,
    Declined,
    Found,
    TossClient,
    build_http_client,
)

# Nothing listens here: a worker that got past validation would fail differently.
NO_DATABASE = "postgresql://postgres@127.0.0.1:1/none"
NO_BROKER = "amqp://guest:guest@127.0.0.1:1/"


@pytest.fixture
def root_logging() -> Iterator[None]:
    """``main`` configures the root logger; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


@pytest.mark.parametrize(
    "api_base",
    [
        "https://api.tosspayments.com",
        "https://api.tosspayments.com/",
        "https://API.TossPayments.com",
        "https://api.tosspayments.com:443",
        "https://api.tosspayments.com./",
    ],
)
def test_the_real_api_in_any_spelling_needs_a_configured_key(api_base: str) -> None:
    with pytest.raises(ConfigurationError, match="TOSS_SECRET_KEY is required"):
        Settings(toss_api_base=api_base).secret_key()


async def test_the_worker_refuses_to_start_without_a_key_before_connecting_to_anything() -> None:
    settings = Settings(
        toss_api_base="https://api.tosspayments.com", database_url=NO_DATABASE, amqp_url=NO_BROKER
    )

    with pytest.raises(ConfigurationError, match="TOSS_SECRET_KEY is required"):
        async with running(settings):
            pytest.fail("the worker started")


async def test_the_worker_refuses_a_malformed_key_before_connecting_to_anything() -> None:
    settings = Settings(
        toss_secret_key="sk_live_not_a_toss_key", database_url=NO_DATABASE, amqp_url=NO_BROKER
    )

    with pytest.raises(ConfigurationError, match="must start with test_sk_ or live_sk_"):
        async with running(settings):
            pytest.fail("the worker started")


def test_the_process_exits_2_and_says_why_without_repeating_a_malformed_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], root_logging: None
) -> None:
    malformed = "sk_live_0123456789abcdef"
    monkeypatch.setenv("TOSS_SECRET_KEY", malformed)
    monkeypatch.setenv("DATABASE_URL", NO_DATABASE)
    monkeypatch.setenv("AMQP_URL", NO_BROKER)

    assert main([]) == 2

    stderr = capsys.readouterr().err
    assert "refusing to start" in stderr
    assert malformed not in stderr


def test_the_key_is_read_from_a_file_trimmed(tmp_path: Path) -> None:
    key_file = tmp_path / "toss-secret-key"
    key_file.write_text("  test_sk_fromafile0000000000\n")

    settings = Settings(toss_secret_key_file=key_file, toss_api_base="https://api.tosspayments.com")

    assert settings.secret_key() == "test_sk_fromafile0000000000"


def test_a_key_file_that_cannot_be_read_is_refused_by_name(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-file"

    with pytest.raises(ConfigurationError, match="no-such-file cannot be read"):
        Settings(toss_secret_key_file=missing).secret_key()


def test_a_key_in_the_environment_wins_over_a_file(tmp_path: Path) -> None:
    key_file = tmp_path / "toss-secret-key"
    key_file.write_text("test_sk_fromafile0000000000")

    settings = Settings(
        toss_secret_key="test_sk_fromtheenv000000000", toss_secret_key_file=key_file
    )

    assert settings.secret_key() == "test_sk_fromtheenv000000000"


async def test_a_pg_answer_that_echoes_the_key_loses_it_before_it_can_travel() -> None:
    secret = "test_sk_echoed0000000000000000"
    basic = base64.b64encode(f"{secret}:".encode()).decode()
    echoed = f"key {secret} / Basic {basic}"

    def echo(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/confirm"):
            return httpx.Response(403, json={"code": "REJECT_CARD_PAYMENT", "message": echoed})
        failure = {"code": "REJECT_CARD_PAYMENT", "message": echoed}
        body = {"paymentKey": "pk_1", "orderId": "order-1", "status": "ABORTED"}
        return httpx.Response(200, json={**body, "totalAmount": 100, "failure": failure})

    http = build_http_client("http://pg.test", secret, transport=httpx.MockTransport(echo))
    async with http:
        toss = TossClient(http)
        request = ConfirmRequest("pk_1", "order-1", 100, "confirm-1")
        declined = await toss.confirm(request)
        found = await toss.get_payment("pk_1")

    assert isinstance(declined, Declined)
    assert isinstance(found, Found)
    for text in (declined.message, found.payment.failure_message or ""):
        assert "key *** / Basic ***" in text
