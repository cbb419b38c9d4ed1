"""Database URLs that name a Unix socket directory (``?host=/run/postgresql``) are used whole."""

from __future__ import annotations

from deploy.scratch import with_database
from deploy.stack import server_of

SOCKET_URL = "postgresql://app@/payments?host=/var/run/postgresql"


def test_another_database_on_a_socket_keeps_the_socket_directory() -> None:
    assert with_database(SOCKET_URL, "postgres") == (
        "postgresql://app@/postgres?host=/var/run/postgresql"
    )


def test_a_socket_url_names_its_socket_directory_as_the_server() -> None:
    assert server_of(SOCKET_URL) == "/var/run/postgresql:5432"


def test_a_tcp_url_names_its_host_and_port_as_the_server() -> None:
    assert server_of("postgresql://app@127.0.0.1:6543/payments") == "127.0.0.1:6543"
