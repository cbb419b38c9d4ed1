"""`python -m deploy`: run the whole system natively until Ctrl-C (what `make run` calls)."""

from __future__ import annotations

import signal
import sys
from types import FrameType

from deploy.stack import Stack, StackConfig


def _exit(signum: int, frame: FrameType | None) -> None:
    # Unwind whatever the main thread is blocked in (supervisord's wait included): stopping from
    # inside the handler would wait on the same child again and deadlock on its wait lock.
    raise SystemExit(0)


def main() -> int:
    config = StackConfig.from_environment()
    stack = Stack(config)
    signal.signal(signal.SIGINT, _exit)
    signal.signal(signal.SIGTERM, _exit)
    try:
        stack.start()
        _print_welcome(config)
        return stack.wait()
    except Exception as exc:
        print(f"failed to start: {exc}; logs are in {config.run_dir}/logs", file=sys.stderr)
        return 1
    finally:
        stack.stop()


def _print_welcome(config: StackConfig) -> None:
    print(
        f"\n  Storefront:  {config.storefront_url}\n"
        f"  Sandbox PG:  http://{config.public_host}:{config.sandbox_port}/sandbox/ledger\n"
        f"  Processes:   sandbox, order, checkout, approval x{config.approval_workers},"
        " gateway (supervisord)\n"
        f"  Logs:        {config.run_dir}/logs/\n"
        "  Ctrl-C stops everything.\n",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
