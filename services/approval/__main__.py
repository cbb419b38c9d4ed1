"""``python -m services.approval``: migrate, then run the worker.

``… migrate`` only migrates; ``… healthcheck`` exits 0 if this host's worker reconciled lately;
``… security-events [--since WHEN] [--limit N]`` lists the tampering and forgery refused;
``… stuck``, ``… refunds [retry REFUND_ID]`` and ``… reconcile [--date D]`` list, retry and
reconcile what needs a person (see ``services/approval/operator_cli.py``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop

from services.approval import operator_cli, security
from services.approval.bootstrap import healthy, migrate, running
from services.approval.config import ConfigurationError, Settings
from shared.logging import configure

log = logging.getLogger("services.approval")


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with running(settings) as worker:
        log.info("approval worker running", extra={"owner": worker.owner})
        await stop.wait()
        log.info("approval worker stopping", extra={"owner": worker.owner})


def main(argv: list[str]) -> int:
    settings = Settings()
    if argv in ([], ["migrate"]):
        settings.refuse_unsafe()
    configure("approval", settings.log_level)
    settings.register_secrets()
    try:
        if argv == ["migrate"]:
            applied = asyncio.run(migrate(settings))
            log.info("migrated", extra={"applied": applied})
        elif argv == ["healthcheck"]:
            return 0 if healthy(settings) else 1
        elif argv[:1] == ["security-events"]:
            return security.main(settings, argv[1:])
        elif argv[:1] == ["stuck"]:
            return operator_cli.stuck(settings, argv[1:])
        elif argv[:1] == ["refunds"]:
            return operator_cli.refunds(settings, argv[1:])
        elif argv[:1] == ["reconcile"]:
            return operator_cli.reconcile(settings, argv[1:])
        elif not argv:
            uvloop.run(serve(settings))
        else:
            print(
                "usage: python -m services.approval [migrate | healthcheck | security-events"
                " | stuck | refunds [retry ID] | reconcile [--date D]]",
                file=sys.stderr,
            )
            return 2
    except ConfigurationError as exc:
        log.error("refusing to start: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
