"""``python -m services.sandbox``: migrate, then serve; with ``migrate``: migrate only."""

from __future__ import annotations

import asyncio
import logging
import sys

from services.sandbox.bootstrap import create_app, migrate
from services.sandbox.config import Settings
from shared import runner
from shared.logging import configure

log = logging.getLogger("services.sandbox")


def main(argv: list[str]) -> int:
    settings = Settings()
    settings.refuse_unsafe()
    configure("sandbox", settings.log_level)
    settings.register_secrets()
    if argv[1:] not in ([], ["migrate"]):
        print("usage: python -m services.sandbox [migrate]", file=sys.stderr)
        return 2
    if argv[1:] == ["migrate"] or settings.migrate_on_start:
        applied = asyncio.run(migrate(settings))
        log.info("migrations applied", extra={"applied": applied})
    if argv[1:] == ["migrate"]:
        return 0
    return runner.run_http(create_app(settings), settings, settings.host, settings.sandbox_port)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
