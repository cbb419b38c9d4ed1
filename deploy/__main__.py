"""`python -m deploy`: run the whole system natively until Ctrl-C (what `make run` calls).

PostgreSQL and RabbitMQ come from :mod:`deploy.sources` (the environment, else local servers that
answer, else private servers with their files under the run directory, else containers); one line
each says which. Everything this starts is stopped on the way out, however it goes out.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
from dataclasses import replace
from types import FrameType

from deploy import sources
from deploy.stack import Stack, StackConfig


def _exit(signum: int, frame: FrameType | None) -> None:
    # Unwind whatever the main thread is blocked in (supervisord's wait included): stopping from
    # inside the handler would wait on the same child again and deadlock on its wait lock. A
    # second Ctrl-C must not cut the cleanup short, so from here on the signals are ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(0)


def main() -> int:
    signal.signal(signal.SIGINT, _exit)
    signal.signal(signal.SIGTERM, _exit)
    config = StackConfig.from_environment()
    try:
        with contextlib.ExitStack() as running:
            config = replace(
                config,
                database_url=running.enter_context(
                    sources.server(
                        sources.POSTGRES, "DATABASE_URL", config.run_dir, _say, database="payments"
                    )
                ),
                amqp_url=running.enter_context(
                    sources.server(sources.RABBITMQ, "AMQP_URL", config.run_dir, _say)
                ),
            )
            stack = Stack(config)
            running.callback(stack.stop)
            stack.start()
            _write_stack_env(config)
            _print_welcome(config)
            return stack.wait()
    except Exception as exc:
        print(f"failed to start: {exc}\nlogs are in {config.run_dir}/logs", file=sys.stderr)
        return 1


# What an operator command run beside `make run` (make reconcile, make refunds, …) needs to
# reach the same servers, PG and queues; sourced by the Makefile. No secret is written here.
STACK_ENV_KEYS = ("DATABASE_URL", "AMQP_URL", "EVENTS_EXCHANGE", "QUEUE_PREFIX", "TOSS_API_BASE")


def _write_stack_env(config: StackConfig) -> None:
    env = config.environment()
    # The caller's own setting, if any, wins over the run's.
    lines = [
        f'export {key}="${{{key}:-}}"; : "${{{key}:={shlex.quote(env[key])}}}"'
        for key in STACK_ENV_KEYS
    ]
    path = config.run_dir / "stack.env"
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


def _say(line: str) -> None:
    print(f"  {line}", flush=True)


def _print_welcome(config: StackConfig) -> None:
    user, password = config.operator
    print(
        f"\n  Storefront:  {config.storefront_url}\n"
        f"  Console:     {config.console_url}  (user {user}, password {password})\n"
        f"  Sandbox PG:  http://{config.public_host}:{config.sandbox_port}/sandbox/ledger\n"
        f"  Processes:   sandbox, order, checkout, approval x{config.approval_workers},"
        " ops, gateway (supervisord)\n"
        f"  Metrics:     {config.run_dir}/prometheus-targets.json (make observe: Prometheus)\n"
        f"  Logs:        {config.run_dir}/logs/\n"
        "  Ctrl-C stops everything.\n",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
