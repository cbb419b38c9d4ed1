"""The whole system as native processes under supervisord: what `make run` and the e2e tests start.

One :class:`StackConfig` says where everything listens and which database and exchange it uses;
:class:`Stack` renders the gateway's nginx config and a supervisord config into a run directory,
applies every role's migrations, starts supervisord (which restarts any process that dies), and
waits until every HTTP role answers its health check.
"""

from __future__ import annotations

import getpass
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from deploy import processes
from gateway import render as gateway_render

ROOT = Path(__file__).resolve().parent.parent
ROLES_WITH_MIGRATIONS = ("sandbox", "order", "checkout", "approval")
TEST_CLIENT_KEY = "test_ck_D5GePWvyJnrK0W0k6q8gLzN97Eoq"


def free_port() -> int:
    """A TCP port nobody listens on right now (on the loopback interface)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass(frozen=True)
class StackConfig:
    """Everything the processes are told through their environment."""

    run_dir: Path
    database_url: str
    amqp_url: str
    events_exchange: str = "payments"
    queue_prefix: str = ""
    gateway_port: int = 8080
    order_port: int = 8001
    checkout_port: int = 8002
    sandbox_port: int = 8090
    approval_workers: int = 1
    public_host: str = "localhost"
    # supervisord's control socket is private to this run (its folder and chmod 0700 as well).
    control_user: str = "stack"
    control_password: str = field(default_factory=lambda: secrets.token_hex(16))
    extra_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_environment(cls) -> StackConfig:
        return cls(
            run_dir=Path(_env("RUN_DIR", str(ROOT / ".run"))),
            database_url=_env("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/payments"),
            amqp_url=_env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
            events_exchange=_env("EVENTS_EXCHANGE", "payments"),
            queue_prefix=os.environ.get("QUEUE_PREFIX", ""),
            gateway_port=int(_env("GATEWAY_PORT", "8080")),
            order_port=int(_env("ORDER_PORT", "8001")),
            checkout_port=int(_env("CHECKOUT_PORT", "8002")),
            sandbox_port=int(_env("SANDBOX_PORT", "8090")),
            approval_workers=int(_env("APPROVAL_WORKERS", "1")),
        )

    @classmethod
    def on_free_ports(
        cls,
        run_dir: Path,
        database_url: str,
        amqp_url: str,
        *,
        exchange: str,
        queue_prefix: str,
        approval_workers: int = 1,
        extra_env: dict[str, str] | None = None,
    ) -> StackConfig:
        """A stack beside any other (tests, benchmarks): its own ports, exchange and queues."""
        return cls(
            run_dir=run_dir,
            database_url=database_url,
            amqp_url=amqp_url,
            events_exchange=exchange,
            queue_prefix=queue_prefix,
            gateway_port=free_port(),
            order_port=free_port(),
            checkout_port=free_port(),
            sandbox_port=free_port(),
            approval_workers=approval_workers,
            extra_env=dict(extra_env or {}),
        )

    def with_env(self, **extra: str) -> StackConfig:
        return replace(self, extra_env={**self.extra_env, **extra})

    @property
    def storefront_url(self) -> str:
        return f"http://{self.public_host}:{self.gateway_port}/"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    @property
    def stop_wait_seconds(self) -> int:
        """supervisord's stop timeout: a role drains for SHUTDOWN_GRACE_SECONDS, then needs a few
        seconds to flush and close (shared/runner.py) before a SIGKILL may come."""
        grace = float(self.environment().get("SHUTDOWN_GRACE_SECONDS") or 10)
        return math.ceil(grace) + 10

    def environment(self) -> dict[str, str]:
        """The environment every role starts with (on top of this process's own)."""
        env = {
            "DATABASE_URL": self.database_url,
            "AMQP_URL": self.amqp_url,
            "EVENTS_EXCHANGE": self.events_exchange,
            "QUEUE_PREFIX": self.queue_prefix,
            "ORDER_PORT": str(self.order_port),
            "CHECKOUT_PORT": str(self.checkout_port),
            "SANDBOX_PORT": str(self.sandbox_port),
            "GATEWAY_PORT": str(self.gateway_port),
            "ORDER_UPSTREAM": f"127.0.0.1:{self.order_port}",
            "CHECKOUT_UPSTREAM": f"127.0.0.1:{self.checkout_port}",
            "SANDBOX_PUBLIC_URL": f"http://{self.public_host}:{self.sandbox_port}",
            "TOSS_API_BASE": os.environ.get("TOSS_API_BASE") or self.sandbox_url,
            "TOSS_CLIENT_KEY": _env("TOSS_CLIENT_KEY", TEST_CLIENT_KEY),
            "RUN_DIR": str(self.run_dir / "nginx"),
            "HEALTH_DIR": str(self.run_dir / "health"),
            "STOREFRONT_ROOT": str(ROOT / "gateway" / "storefront"),
            "PYTHONUNBUFFERED": "1",
        }
        return {**os.environ, **env, **self.extra_env}


def _program(
    name: str, command: str, log_dir: Path, stop_wait: int, stopsignal: str = "TERM", **options: str
) -> str:
    lines = [
        f"[program:{name}]",
        f"command={command}",
        f"directory={ROOT}",
        "autorestart=true",
        "startsecs=1",
        "startretries=10",
        f"stopsignal={stopsignal}",
        f"stopwaitsecs={stop_wait}",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        f"stdout_logfile={log_dir}/%(program_name)s-%(process_num)s.log",
        "stdout_logfile_maxbytes=20MB",
        "stdout_logfile_backups=2",
    ]
    lines += [f"{key}={value}" for key, value in options.items()]
    return "\n".join(lines)


def render_supervisord(config: StackConfig) -> str:
    run, logs, python = config.run_dir, config.run_dir / "logs", sys.executable
    wait = config.stop_wait_seconds
    # Whoever runs `make run` runs the processes; saying so spares supervisord's root warning.
    user = f"user={getpass.getuser()}\n" if os.getuid() == 0 else ""
    header = f"""[supervisord]
nodaemon=true
{user}logfile={run}/supervisord.log
pidfile={run}/supervisord.pid
childlogdir={logs}
loglevel=warn

[unix_http_server]
file={run}/supervisor.sock
chmod=0700
username={config.control_user}
password={config.control_password}

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{run}/supervisor.sock
username={config.control_user}
password={config.control_password}
"""
    programs = [
        _program("sandbox", f"{python} -m services.sandbox", logs, wait, priority="10"),
        _program("order", f"{python} -m services.order", logs, wait, priority="20"),
        _program("checkout", f"{python} -m services.checkout", logs, wait, priority="20"),
        _program(
            "approval",
            f"{python} -m services.approval",
            logs,
            wait,
            priority="30",
            numprocs=str(config.approval_workers),
            process_name="%(program_name)s-%(process_num)s",
        ),
        # Renders RUN_DIR/nginx.conf again (prepare checked it) and execs nginx; QUIT lets
        # nginx finish the requests it has (TERM would drop them).
        _program("gateway", f"{python} -m gateway", logs, wait, priority="40", stopsignal="QUIT"),
    ]
    return header + "\n" + "\n\n".join(programs) + "\n"


def ensure_database(database_url: str) -> None:
    """Create the stack's database if it does not exist yet (the server must be running).

    Runs its own event loop on a helper thread, so it works whether or not the caller is inside
    one (the e2e fixtures are).
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import asyncpg

    async def create() -> None:
        name = database_url.rsplit("/", 1)[1].split("?")[0]
        admin = await asyncpg.connect(database_url.rsplit("/", 1)[0] + "/postgres")
        try:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        try:
            pool.submit(asyncio.run, create()).result()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # Name the server: "[Errno 111] Connection refused" alone leaves the user guessing.
            where = urlsplit(database_url)
            raise RuntimeError(
                f"PostgreSQL at {where.hostname}:{where.port or 5432}: {exc or type(exc).__name__}"
            ) from exc


class Stack:
    """A running (or startable) native stack."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self._supervisord: subprocess.Popen[bytes] | None = None

    def prepare(self) -> Path:
        """Render configs, create the database, apply migrations; returns supervisord.conf."""
        run = self.config.run_dir
        for sub in ("logs", "nginx"):
            (run / sub).mkdir(parents=True, exist_ok=True)
        env = self.config.environment()
        # The gateway renders its own configuration at start; rendering it here first fails
        # the start early, with the reason, if a value is invalid.
        gateway_values = gateway_render.settings(env)
        (run / "nginx.conf").write_text(gateway_render.render(gateway_values))
        gateway_render.prepare_run_dir(Path(gateway_values["RUN_DIR"]))
        supervisord_conf = run / "supervisord.conf"
        supervisord_conf.write_text(render_supervisord(self.config))
        ensure_database(self.config.database_url)
        for role in ROLES_WITH_MIGRATIONS:
            subprocess.run(  # noqa: S603
                [sys.executable, "-m", f"services.{role}", "migrate"], env=env, cwd=ROOT, check=True
            )
        return supervisord_conf

    def start(self, timeout: float = 60) -> None:
        conf = self.prepare()
        # A session of its own: a terminal's Ctrl-C reaches only `python -m deploy`, which stops
        # supervisord (and so every program, each in its own process group) in order; whatever
        # survives that is still in this session and killed with it (see :meth:`stop`).
        self._supervisord = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
            env=self.config.environment(),
            cwd=ROOT,
            start_new_session=True,
        )
        self.wait_healthy(timeout)

    def health_urls(self) -> dict[str, str]:
        c = self.config
        return {
            "sandbox": f"http://127.0.0.1:{c.sandbox_port}/healthz",
            "order": f"http://127.0.0.1:{c.order_port}/healthz",
            "checkout": f"http://127.0.0.1:{c.checkout_port}/healthz",
            "gateway": f"http://127.0.0.1:{c.gateway_port}/healthz",
        }

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        pending = dict(self.health_urls())
        while pending:
            if self._supervisord is not None and self._supervisord.poll() is not None:
                raise RuntimeError(f"supervisord exited; see {self.config.run_dir}/logs")
            for name, url in list(pending.items()):
                if _answers(url):
                    del pending[name]
            if time.monotonic() > deadline:
                raise TimeoutError(f"not healthy after {timeout}s: {sorted(pending)}")
            time.sleep(0.2)
        self._wait_workers_running(deadline)

    def _wait_workers_running(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            states = {p["name"]: p["statename"] for p in self.processes()}
            workers = [s for n, s in states.items() if n.startswith("approval")]
            if workers and all(s == "RUNNING" for s in workers):
                return
            time.sleep(0.2)
        raise TimeoutError("approval workers did not reach RUNNING")

    def supervisor(self) -> Any:
        """XML-RPC proxy of supervisord (processes, signals, restarts)."""
        from supervisor.xmlrpc import SupervisorTransport

        sock = f"unix://{self.config.run_dir}/supervisor.sock"
        c = self.config
        transport = SupervisorTransport(c.control_user, c.control_password, sock)
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def processes(self) -> list[dict[str, Any]]:
        info: list[dict[str, Any]] = self.supervisor().getAllProcessInfo()
        return info

    def stop(self) -> None:
        """supervisord stops every program (SIGTERM to each group); anything of the session
        still alive after that, or after 30 s, is killed."""
        if self._supervisord is None:
            return
        processes.end(self._supervisord, (signal.SIGTERM, 30))
        self._supervisord = None

    def wait(self) -> int:
        assert self._supervisord is not None
        return self._supervisord.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
