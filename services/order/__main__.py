"""``python -m services.order`` migrates, then serves; ``python -m services.order migrate`` only
migrates."""

from __future__ import annotations

import asyncio
import sys

from services.order.bootstrap import create_app, migrate
from services.order.config import Settings
from shared import runner
from shared.logging import configure


def main(argv: list[str]) -> int:
    if argv not in ([], ["migrate"]):
        print("usage: python -m services.order [migrate]", file=sys.stderr)
        return 2
    settings = Settings()
    settings.refuse_unsafe()
    configure("order", settings.log_level)
    settings.register_secrets()
    if argv == ["migrate"] or settings.migrate_on_start:
        asyncio.run(migrate(settings))
    if argv == ["migrate"]:
        return 0
    return runner.run_http(create_app(settings), settings, settings.host, settings.order_port)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
