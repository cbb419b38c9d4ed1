"""``python -m shared.schema wait ROLE``: what a role's pod waits on before it starts."""

from __future__ import annotations

import pytest

from services.checkout.bootstrap import migrate
from services.checkout.config import Settings
from shared import schema


async def test_waiting_gives_up_while_the_schema_lacks_migrations(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)

    assert await schema.wait("checkout", patience=0.1) == 1


async def test_waiting_ends_once_every_migration_is_applied(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    await migrate(Settings(database_url=database_url))

    assert await schema.wait("checkout", patience=0.1) == 0
