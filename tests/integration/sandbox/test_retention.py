"""The sandbox forgets idempotent answers and delivered webhooks a retention after they stop
mattering, and nothing sooner."""

from __future__ import annotations

import uuid

from services.sandbox.bootstrap import PURGES, migrate
from shared import db
from shared.retention import Janitor, Retention
from tests.integration.sandbox.support import sandbox_settings


async def test_old_idempotent_answers_and_delivered_webhooks_are_purged(database_url: str) -> None:
    # A schema of its own, with no sandbox running: a sandbox's own janitor would race this one.
    await migrate(sandbox_settings(database_url))
    pool = await db.create_pool(database_url, "sandbox", min_size=1, max_size=2)
    try:
        await pool.execute(
            "INSERT INTO idempotent_requests (idempotency_key, secret_digest, method, path,"
            " expires_at) VALUES ('old', 'd', 'POST', '/p', now() - interval '31 days'),"
            " ('live', 'd', 'POST', '/p', now() + interval '15 days')"
        )
        for delivered in ("now() - interval '31 days'", "now()", "NULL"):
            await pool.execute(
                "INSERT INTO webhook_deliveries (transmission_id, url, payment_key, body,"
                f" delivered_at) VALUES ($1, 'http://x', 'pk', '{{}}', {delivered})",
                f"whtrans_{uuid.uuid4().hex}",
            )

        await Janitor(pool, Retention(days=30), PURGES).purge_all()

        # What is left, not what this round deleted: the running sandbox's own janitor purges
        # at its start too and may have taken the old rows first.
        keys = await pool.fetch("SELECT idempotency_key FROM idempotent_requests")
        assert [k["idempotency_key"] for k in keys] == ["live"]
        kept = await pool.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE payment_key = 'pk'"
            " AND (delivered_at IS NULL OR delivered_at > now() - interval '1 day')"
        )
        gone = await pool.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE payment_key = 'pk'"
        )
        assert (kept, gone) == (2, 2)
    finally:
        await pool.close()
