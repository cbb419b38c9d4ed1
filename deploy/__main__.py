"""`python -m deploy`: run the whole system natively until Ctrl-C (what `make run` calls)."""

from __future__ import annotations

import signal
import sys
from types import FrameType

from deploy.stack import Stack, StackConfig


def main() -> int:
    config = StackConfig.from_environment()
    stack = Stack(config)

    def stop(signum: int, frame: FrameType | None) -> None:
        stack.stop()
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        stack.start()
    except Exception as exc:
        stack.stop()
        print(f"failed to start: {exc}; logs are in {config.run_dir}/logs", file=sys.stderr)
        return 1
    workers = config.approval_workers
    print(
        f"\n  Storefront:  {config.storefront_url}\n"
        f"  Sandbox PG:  http://{config.public_host}:{config.sandbox_port}/sandbox/ledger\n"
        f"  Processes:   sandbox, order, checkout, approval x{workers}, gateway (supervisord)\n"
        f"  Logs:        {config.run_dir}/logs/\n"
        "  Ctrl-C stops everything.\n",
        flush=True,
    )
    return stack.wait()


if __name__ == "__main__":
    sys.exit(main())
