"""``python -m services.approval``: migrate, then run the worker.

``… migrate`` only migrates; ``… healthcheck`` exits 0 if this host's worker reconciled lately
(``healthcheck live``: its event loop turns; ``healthcheck ready``: its dependencies answer);
``… security-events [--since WHEN] [--limit N]`` lists the tampering and forgery refused;
``… stuck``, ``… refunds [retry REFUND_ID]`` and ``… reconcile [--date D]`` list, retry and
reconcile what needs a person (see ``services/approval/operator_cli.py``).
"""

from __future__ import annotations

import asyncio
import logging
import sys

from services.approval import operator_cli, security
from services.approval.bootstrap import healthy, migrate, running
from services.approval.config import ConfigurationError, Settings
from shared import runner
from shared.logging import configure

log = logging.getLogger("services.approval")


def healthcheck(settings: Settings, argv: list[str]) -> int:
    """No argument: the reconciler finished a round lately. ``live``: the event loop turns.
    ``ready``: the database and the broker answer and the worker is not stopping."""
    if not argv:
        return 0 if healthy(settings) else 1
    if argv not in (["live"], ["ready"]) or settings.health_dir is None:
        print("usage: python -m services.approval healthcheck [live | ready]", file=sys.stderr)
        return 2
    return 0 if runner.fresh(runner.health_file(settings.health_dir, "approval", argv[0])) else 1


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
        elif argv[:1] == ["healthcheck"]:
            return healthcheck(settings, argv[1:])
        elif argv[:1] == ["security-events"]:
            return security.main(settings, argv[1:])
        elif argv[:1] == ["stuck"]:
            return operator_cli.stuck(settings, argv[1:])
        elif argv[:1] == ["refunds"]:
            return operator_cli.refunds(settings, argv[1:])
        elif argv[:1] == ["reconcile"]:
            return operator_cli.reconcile(settings, argv[1:])
        elif not argv:
            return runner.run_worker(settings, lambda stop: running(settings, shutdown=stop))
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
