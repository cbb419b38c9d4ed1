"""The stack's database is the one its URL names, whatever the URL's query holds."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from deploy.scratch import database_of, with_database
from deploy.stack import ensure_database, server_of


async def test_the_database_a_url_names_is_created_when_its_query_holds_a_slash(
    database_url: str, postgres_admin_dsn: str
) -> None:
    name = f"{database_of(database_url)}_made"
    # As a socket directory does: postgresql://app@/payments?host=/var/run/postgresql
    url = with_query(with_database(database_url, name), "application_name=stack/test")
    try:
        await asyncio.to_thread(ensure_database, url)

        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval("SELECT current_database()") == name
        finally:
            await conn.close()
    finally:
        admin = await asyncpg.connect(postgres_admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def test_a_socket_url_names_its_socket_directory_as_the_server() -> None:
    url = "postgresql://app@/payments?host=/var/run/postgresql"

    assert server_of(url) == "/var/run/postgresql:5432"


def test_a_tcp_url_names_its_host_and_port_as_the_server() -> None:
    assert server_of("postgresql://app@127.0.0.1:6543/payments") == "127.0.0.1:6543"


def with_query(url: str, query: str) -> str:
    return urlunsplit(urlsplit(url)._replace(query=query))
