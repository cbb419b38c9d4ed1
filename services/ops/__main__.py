"""``python -m services.ops [serve]``: serve the operator console (``/ops/`` through the gateway).

Approval's migrations create the tables it reads and its audit table; it migrates nothing.
"""

from __future__ import annotations

import sys

from services.ops.bootstrap import create_app
from services.ops.config import Settings
from shared import runner
from shared.logging import configure


def main(argv: list[str]) -> int:
    settings = Settings()
    settings.refuse_unsafe()
    if argv not in ([], ["serve"]):
        print("usage: python -m services.ops [serve]", file=sys.stderr)
        return 2
    configure("ops", settings.log_level)
    settings.register_secrets()
    return runner.run_http(create_app(settings), settings, settings.host, settings.ops_port)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
