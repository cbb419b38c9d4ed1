"""Where PostgreSQL and RabbitMQ come from (deploy/sources.py), decided without starting any."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy import sources
from deploy.servers import ServerError
from deploy.stack import free_port

VARIABLE = "SOURCES_TEST_DATABASE_URL"


@pytest.fixture(autouse=True)
def nothing_local(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local probe looks where nothing listens, and no variable names a server."""
    monkeypatch.delenv(VARIABLE, raising=False)
    monkeypatch.setenv("LOCAL_POSTGRES_PORT", str(free_port()))
    monkeypatch.setenv("LOCAL_RABBITMQ_PORT", str(free_port()))


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_server_named_by_the_environment_is_used_as_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(VARIABLE, "postgresql://app:s3cret@db.example:6543/payments")

    choice = sources.choose(sources.POSTGRES, VARIABLE)

    assert choice.origin is sources.Origin.ENVIRONMENT
    assert choice.url == "postgresql://app:s3cret@db.example:6543/payments"
    assert choice.describe() == f"PostgreSQL: the server in {VARIABLE} at db.example:6543"


def test_a_server_named_by_the_environment_that_does_not_answer_fails_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(VARIABLE, f"postgresql://postgres@127.0.0.1:{free_port()}/payments")

    with (
        pytest.raises(ServerError, match=f"the server in {VARIABLE}.*nothing answers"),
        sources.provide(sources.choose(sources.POSTGRES, VARIABLE), tmp_path),
    ):
        pass


def test_a_local_server_that_answers_is_used(
    monkeypatch: pytest.MonkeyPatch, listening: int
) -> None:
    monkeypatch.setenv("LOCAL_RABBITMQ_PORT", str(listening))

    choice = sources.choose(sources.RABBITMQ, "SOURCES_TEST_AMQP_URL")

    assert choice.origin is sources.Origin.LOCAL
    assert choice.url == f"amqp://guest:guest@127.0.0.1:{listening}/"


def test_with_nothing_local_an_installed_server_is_started_privately() -> None:
    installed = dataclasses.replace(sources.POSTGRES, installed=lambda: True)

    choice = sources.choose(installed, VARIABLE)

    assert (choice.origin, choice.install) == (sources.Origin.PRIVATE, False)
    assert "nothing answers on 127.0.0.1:" in choice.describe()


def test_without_the_package_a_docker_engine_runs_a_container(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sources, "docker_engine_answers", lambda: True)
    missing = dataclasses.replace(sources.RABBITMQ, installed=lambda: False)

    assert sources.choose(missing, VARIABLE).origin is sources.Origin.CONTAINER


def test_without_the_package_or_docker_the_package_is_installed_for_a_private_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sources, "docker_engine_answers", lambda: False)
    missing = dataclasses.replace(sources.POSTGRES, installed=lambda: False)

    choice = sources.choose(missing, VARIABLE)

    assert (choice.origin, choice.install) == (sources.Origin.PRIVATE, True)
    assert "installing postgresql" in choice.describe()
