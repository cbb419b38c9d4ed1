"""``python -m services.checkout [migrate]``: migrate, then (without ``migrate``) serve.

``… conflicts [--since WHEN] [--limit N]`` lists redirects that conflicted with a recorded one.
"""

from __future__ import annotations

import asyncio
import sys

from services.checkout import conflicts
from services.checkout.bootstrap import create_app, migrate
from services.checkout.config import Settings
from shared.http import serve
from shared.logging import configure


def main(argv: list[str]) -> int:
    if argv[:1] == ["conflicts"]:
        return conflicts.main(Settings(), argv[1:])
    if argv not in ([], ["migrate"]):
        print("usage: python -m services.checkout [migrate | conflicts]", file=sys.stderr)
        return 2
    settings = Settings()
    settings.refuse_unsafe()
    configure("checkout", settings.log_level)
    settings.register_secrets()
    asyncio.run(migrate(settings))
    if argv == ["migrate"]:
        return 0
    serve(create_app(settings), settings.host, settings.checkout_port)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
