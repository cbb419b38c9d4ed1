"""The whole system as native processes under supervisord: what `make run` and the e2e tests start.

One :class:`StackConfig` says where everything listens and which database and exchange it uses;
:class:`Stack` renders the gateway's nginx config and a supervisord config into a run directory,
provisions each role's own database role and broker user (:mod:`shared.provision`), applies
every role's migrations as that role, starts supervisord (which restarts any process that dies),
and waits until every HTTP role answers its health check. Each program gets only its own
credentials: the admin URLs stay with this process, the PG secret key goes to approval alone.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx

from deploy import processes, servers
from deploy.scratch import database_of, with_database
from gateway import render as gateway_render
from shared import metrics, provision
from shared.provision import BrokerAdmin, RoleAccess
from shared.topology import CONSUMES, REPLAYS, topology

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
ROLES_WITH_MIGRATIONS = ("sandbox", "order", "checkout", "approval")
TEST_CLIENT_KEY = "test_ck_D5GePWvyJnrK0W0k6q8gLzN97Eoq"
# Test stacks drive everything from one address: the gateway's per-address limits out of the way
# (they have tests of their own; the benchmark talks to the services directly).
UNLIMITED_GATEWAY = {
    "GATEWAY_RATE_LIMIT": "100000",
    "GATEWAY_RATE_BURST": "100000",
    "GATEWAY_CONN_LIMIT": "60000",
}
# Credentials no program gets from the shared environment: the admin's, and the ones a single
# role needs (below). ``<ROLE>_DATABASE_URL`` and ``<ROLE>_AMQP_URL`` go to their role only too.
ADMIN_ONLY = ("DATABASE_URL", "AMQP_URL", "RABBITMQ_MANAGEMENT_URL", "RABBITMQCTL")
ONE_ROLE_ONLY = {
    "approval": ("TOSS_SECRET_KEY", "TOSS_SECRET_KEY_FILE"),
    "order": ("DEMO_CUSTOMER_TOKEN", "DEMO_CUSTOMER_TOKEN_2"),
    "ops": ("OPERATOR_USER", "OPERATOR_PASSWORD"),
}
# The operator console works on approval's tables as approval's database role (services/ops).
CONSOLE_DATABASE_ROLE = "approval"


def free_port() -> int:
    """A TCP port nobody listens on right now (on the loopback interface)."""
    return servers.free_ports(1)[0]


def free_port_block(size: int, avoid: Iterable[int] = ()) -> int:
    """The first of ``size`` consecutive ports nobody listens on right now, none of ``avoid``
    (approval workers' metrics ports: worker n serves on the first plus n)."""
    taken = set(avoid)
    while True:
        first = free_port()
        block = range(first, first + size)
        if taken.isdisjoint(block) and all(_port_is_free(port) for port in block[1:]):
            return first


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def operator_credentials() -> dict[str, str]:
    """The console's credentials: the environment's when it names both, else generated."""
    user, password = os.environ.get("OPERATOR_USER"), os.environ.get("OPERATOR_PASSWORD")
    if user and password:
        return {}
    return {"OPERATOR_USER": "operator", "OPERATOR_PASSWORD": secrets.token_urlsafe(18)}


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
    ops_port: int = 8003
    sandbox_port: int = 8090
    approval_workers: int = 1
    # Each process's internal /metrics port; approval worker n serves on approval's plus n.
    metrics_ports: dict[str, int] = field(default_factory=lambda: dict(metrics.DEFAULT_PORTS))
    public_host: str = "localhost"
    # supervisord's control socket is private to this run (its folder and chmod 0700 as well).
    control_user: str = "stack"
    control_password: str = field(default_factory=lambda: secrets.token_hex(16))
    extra_env: dict[str, str] = field(default_factory=dict)
    # Each role on a database role and broker user of its own (else all share the admin URLs).
    own_users: bool = True
    # Remove the broker users at stop (a test's or benchmark's stack; make run keeps them).
    throwaway: bool = False

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
            ops_port=int(_env("OPS_PORT", "8003")),
            sandbox_port=int(_env("SANDBOX_PORT", "8090")),
            approval_workers=int(_env("APPROVAL_WORKERS", "1")),
            metrics_ports={
                role: int(_env(f"{role.upper()}_METRICS_PORT", str(port)))
                for role, port in metrics.DEFAULT_PORTS.items()
            },
            extra_env=operator_credentials(),
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
        # Chosen together: ports picked one at a time may repeat (each is freed at once).
        ports = servers.free_ports(9)
        gateway, order, checkout, ops, sandbox, *metrics_ports = ports
        approval_first = free_port_block(approval_workers, avoid=ports)
        return cls(
            run_dir=run_dir,
            database_url=database_url,
            amqp_url=amqp_url,
            events_exchange=exchange,
            queue_prefix=queue_prefix,
            gateway_port=gateway,
            order_port=order,
            checkout_port=checkout,
            ops_port=ops,
            sandbox_port=sandbox,
            approval_workers=approval_workers,
            metrics_ports={
                **dict(zip(("order", "checkout", "ops", "sandbox"), metrics_ports, strict=True)),
                "approval": approval_first,
            },
            extra_env={**UNLIMITED_GATEWAY, **operator_credentials(), **(extra_env or {})},
            throwaway=True,
        )

    def with_env(self, **extra: str) -> StackConfig:
        return replace(self, extra_env={**self.extra_env, **extra})

    @property
    def storefront_url(self) -> str:
        return f"http://{self.public_host}:{self.gateway_port}/"

    @property
    def console_url(self) -> str:
        return f"http://{self.public_host}:{self.gateway_port}/ops/"

    @property
    def operator(self) -> tuple[str, str]:
        """The console's user and password (given, or generated for this stack)."""
        env = self.environment()
        return env.get("OPERATOR_USER", ""), env.get("OPERATOR_PASSWORD", "")

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    def metrics_targets(self) -> list[dict[str, Any]]:
        """Prometheus file-based service discovery: one group per process, labelled with its
        role and instance (the supervisord program name)."""
        processes = [(role, role, port) for role, port in self.metrics_ports.items()]
        processes = [p for p in processes if p[0] != "approval"] + [
            ("approval", f"approval-{n}", self.metrics_ports["approval"] + n)
            for n in range(self.approval_workers)
        ]
        return [
            {
                "targets": [f"127.0.0.1:{port}"],
                "labels": {"role": role, "instance": instance},
            }
            for role, instance, port in processes
        ]

    def role_accesses(self) -> tuple[RoleAccess, ...]:
        """Each role's own credentials: from ``<ROLE>_DATABASE_URL`` / ``<ROLE>_AMQP_URL`` when
        set, else made up, with fresh passwords, on the admin's servers: database role
        ``<database>_<role>``, broker user ``<exchange>.<role>`` (unique to a test's stack)."""
        if not self.own_users:
            return ()
        given = self.environment()
        database = database_of(self.database_url)
        accesses = []
        for role in provision.ROLES:
            database_url = given.get(f"{role.upper()}_DATABASE_URL") or provision.with_credentials(
                self.database_url, f"{database}_{role}", provision.new_password()
            )
            amqp_url = given.get(f"{role.upper()}_AMQP_URL") or provision.with_credentials(
                self.amqp_url, f"{self.events_exchange}.{role}", provision.new_password()
            )
            accesses.append(RoleAccess(role, database_url, amqp_url if role != "sandbox" else None))
        for role in provision.BROKER_ONLY:
            amqp_url = given.get(f"{role.upper()}_AMQP_URL") or provision.with_credentials(
                self.amqp_url, f"{self.events_exchange}.{role}", provision.new_password()
            )
            accesses.append(RoleAccess(role, None, amqp_url))
        return tuple(accesses)

    def shared_environment(self) -> dict[str, str]:
        """What every program may see: no admin credentials, no role's secrets."""
        private = {*ADMIN_ONLY, *(name for names in ONE_ROLE_ONLY.values() for name in names)}
        roles = (*provision.ROLES, *provision.BROKER_ONLY)
        private |= {f"{role.upper()}_{kind}_URL" for role in roles for kind in KINDS}
        return {k: v for k, v in self.environment().items() if k not in private}

    @property
    def secret_key_file(self) -> Path:
        """Where a PG secret key given by value is handed to approval (mode 0600): never in a
        config file or the environment of another process."""
        return self.run_dir / "secrets" / "toss-secret-key"

    def role_environment(
        self, role: str, access: RoleAccess | None, database: RoleAccess | None = None
    ) -> dict[str, str]:
        """What one role gets on top of the shared environment: its credentials and secrets
        (``database``: the role whose database user it connects as, if not its own)."""
        everything = self.environment()
        own = {name: everything[name] for name in ONE_ROLE_ONLY.get(role, ()) if name in everything}
        if own.pop("TOSS_SECRET_KEY", ""):
            own["TOSS_SECRET_KEY_FILE"] = str(self.secret_key_file)
        uses_broker = role in CONSUMES or role in REPLAYS
        if role in self.metrics_ports:
            own["METRICS_PORT"] = str(self.metrics_ports[role])
        if access is None:  # no users of its own: the admin's URLs, as before
            own["DATABASE_URL"] = self.database_url
            return {**own, "AMQP_URL": self.amqp_url} if uses_broker else own
        prefix = role.upper()
        database_url = (database or access).database_url
        if database_url is not None:
            own[f"{prefix}_DATABASE_URL"] = database_url
        if access.amqp_url is not None:
            own[f"{prefix}_AMQP_URL"] = access.amqp_url
        elif uses_broker:
            own["AMQP_URL"] = self.amqp_url
        return own

    @property
    def stop_wait_seconds(self) -> int:
        """supervisord's stop timeout: a role drains for SHUTDOWN_GRACE_SECONDS, then needs a few
        seconds to flush and close (shared/runner.py) before a SIGKILL may come."""
        grace = float(self.environment().get("SHUTDOWN_GRACE_SECONDS") or 10)
        return math.ceil(grace) + 10

    def environment(self) -> dict[str, str]:
        """Everything the stack knows (admin credentials included): for this process and tools.
        Programs get :meth:`shared_environment` and their own :meth:`role_environment`."""
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
            "OPS_PORT": str(self.ops_port),
            "OPS_UPSTREAM": f"127.0.0.1:{self.ops_port}",
            "SANDBOX_PUBLIC_URL": f"http://{self.public_host}:{self.sandbox_port}",
            # The sandbox delivers its webhooks to our endpoint, through the gateway as the PG's
            # would (the real PG's is registered in its developer console: see the README).
            "SANDBOX_WEBHOOK_URL": f"http://127.0.0.1:{self.gateway_port}/webhooks/toss",
            "TOSS_API_BASE": os.environ.get("TOSS_API_BASE") or self.sandbox_url,
            "TOSS_CLIENT_KEY": _env("TOSS_CLIENT_KEY", TEST_CLIENT_KEY),
            "RUN_DIR": str(self.run_dir / "nginx"),
            "HEALTH_DIR": str(self.run_dir / "health"),
            "STOREFRONT_ROOT": str(ROOT / "gateway" / "storefront"),
            "PYTHONUNBUFFERED": "1",
        }
        return {**os.environ, **env, **self.extra_env}


KINDS = ("DATABASE", "AMQP")


def _supervisord_environment(values: dict[str, str]) -> str:
    """``environment=`` for a program (supervisord expands %(…)s, so % is doubled)."""
    for name, value in values.items():
        if any(c in value for c in '"\n\r') or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
            raise ValueError(f"{name} cannot be passed to a supervisord program")
    return ",".join(f'{name}="{value.replace("%", "%%")}"' for name, value in values.items())


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


def render_supervisord(config: StackConfig, accesses: tuple[RoleAccess, ...] = ()) -> str:
    run, logs, python = config.run_dir, config.run_dir / "logs", sys.executable
    wait = config.stop_wait_seconds
    by_role = {access.role: access for access in accesses}

    def env(role: str) -> str:
        database = by_role.get(CONSOLE_DATABASE_ROLE) if role == "ops" else None
        return _supervisord_environment(config.role_environment(role, by_role.get(role), database))

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
        _program(
            "sandbox",
            f"{python} -m services.sandbox",
            logs,
            wait,
            priority="10",
            environment=env("sandbox"),
        ),
        _program(
            "order",
            f"{python} -m services.order",
            logs,
            wait,
            priority="20",
            environment=env("order"),
        ),
        _program(
            "checkout",
            f"{python} -m services.checkout",
            logs,
            wait,
            priority="20",
            environment=env("checkout"),
        ),
        _program(
            "approval",
            f"{python} -m services.approval",
            logs,
            wait,
            priority="30",
            numprocs=str(config.approval_workers),
            process_name="%(program_name)s-%(process_num)s",
            # Each worker its own metrics port: supervisord expands its number here.
            environment=env("approval") + ',METRICS_PORT_OFFSET="%(process_num)d"',
        ),
        _program(
            "ops",
            f"{python} -m services.ops",
            logs,
            wait,
            priority="35",
            environment=env("ops"),
        ),
        # Renders RUN_DIR/nginx.conf again (prepare checked it) and execs nginx; QUIT lets
        # nginx finish the requests it has (TERM would drop them).
        _program("gateway", f"{python} -m gateway", logs, wait, priority="40", stopsignal="QUIT"),
    ]
    return header + "\n" + "\n\n".join(programs) + "\n"


def _run_async(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` on an event loop of its own on a helper thread, so that it works whether or
    not the caller is inside one (the e2e fixtures are)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, work).result()


def ensure_database(database_url: str) -> None:
    """Create the stack's database if it does not exist yet (the server must be running)."""

    async def create() -> None:
        name = database_of(database_url)
        admin = await asyncpg.connect(with_database(database_url, "postgres"))
        try:
            if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    try:
        _run_async(create())
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # Name the server: "[Errno 111] Connection refused" alone leaves the user guessing.
        raise RuntimeError(
            f"PostgreSQL at {server_of(database_url)}: {exc or type(exc).__name__}"
        ) from exc


def server_of(database_url: str) -> str:
    """Where the URL points: host and port, or the socket directory it names."""
    where = urlsplit(database_url)
    socket_dir = parse_qs(where.query).get("host")
    host = where.hostname or (socket_dir[0] if socket_dir else "localhost")
    return f"{host}:{where.port or 5432}"


def broker_admin_for(amqp_url: str) -> BrokerAdmin | None:
    """How to create users on the broker at ``amqp_url``: a private node's own rabbitmqctl, else
    the environment's way (management API, ``RABBITMQCTL``, the local rabbitmqctl)."""
    port = urlsplit(amqp_url).port or 5672
    return servers.rabbitmq_control(port) or provision.broker_admin(os.environ)


class Stack:
    """A running (or startable) native stack."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self._supervisord: subprocess.Popen[bytes] | None = None
        self._broker_admin: BrokerAdmin | None = None
        self.accesses: tuple[RoleAccess, ...] = ()
        self._provisioned_users: list[str] = []

    def prepare(self) -> Path:
        """Render configs, create the database, provision each role's users, apply migrations
        as each role; returns supervisord.conf."""
        run = self.config.run_dir
        if self.config.environment().get("PAYMENTS_MODE", "sandbox") != "sandbox":
            raise RuntimeError("this stack runs the sandbox PG: it is for PAYMENTS_MODE=sandbox")
        for sub in ("logs", "nginx"):
            (run / sub).mkdir(parents=True, exist_ok=True)
        # The gateway renders its own configuration at start; rendering it here first fails
        # the start early, with the reason, if a value is invalid.
        gateway_values = gateway_render.settings(self.config.environment())
        (run / "nginx.conf").write_text(gateway_render.render(gateway_values))
        gateway_render.prepare_run_dir(Path(gateway_values["RUN_DIR"]))
        ensure_database(self.config.database_url)
        self._hand_over_secret_key()
        self.accesses = self._provision()
        write_metrics_targets(self.config)
        supervisord_conf = run / "supervisord.conf"
        supervisord_conf.write_text(render_supervisord(self.config, self.accesses))
        supervisord_conf.chmod(0o600)  # it holds the roles' credentials
        for role in ROLES_WITH_MIGRATIONS:
            subprocess.run(  # noqa: S603
                [sys.executable, "-m", f"services.{role}", "migrate"],
                env=self._program_environment(role),
                cwd=ROOT,
                check=True,
            )
        return supervisord_conf

    def _hand_over_secret_key(self) -> None:
        key = self.config.environment().get("TOSS_SECRET_KEY", "")
        if not key:
            return
        path = self.config.secret_key_file
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(key)

    def _provision(self) -> tuple[RoleAccess, ...]:
        """Each role's own database role and broker user (see :mod:`shared.provision`); without
        a way to create broker users, the roles share the admin's broker URL."""
        c = self.config
        accesses = c.role_accesses()
        topo = topology(c.events_exchange, c.queue_prefix, _delivery_limit(c.environment()))
        if not accesses:
            _run_async(provision.declare_topology(c.amqp_url, topo))
            return ()
        _run_async(provision.provision_database(c.database_url, accesses))
        self._broker_admin = broker_admin_for(c.amqp_url)
        if self._broker_admin is None:
            print("  RabbitMQ: no way to create users here; every role uses AMQP_URL", flush=True)
            accesses = tuple(replace(a, amqp_url=None) for a in accesses)
            _run_async(provision.declare_topology(c.amqp_url, topo))
            return accesses
        _run_async(provision.provision_broker(c.amqp_url, self._broker_admin, topo, accesses))
        self._provisioned_users = provision.broker_users(accesses)
        return accesses

    def _program_environment(self, role: str) -> dict[str, str]:
        access = next((a for a in self.accesses if a.role == role), None)
        return {**self.config.shared_environment(), **self.config.role_environment(role, access)}

    def program_environment(self, role: str) -> dict[str, str]:
        """What ``role``'s program gets (an operator command run as that role needs it)."""
        return self._program_environment(role)

    def start(self, timeout: float = 60) -> None:
        conf = self.prepare()
        # A session of its own: a terminal's Ctrl-C reaches only `python -m deploy`, which stops
        # supervisord (and so every program, each in its own process group) in order; whatever
        # survives that is still in this session and killed with it (see :meth:`stop`).
        self._supervisord = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
            env=self.config.shared_environment(),
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
            "ops": f"http://127.0.0.1:{c.ops_port}/readyz",
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
        if self._supervisord is not None:
            processes.end(self._supervisord, (signal.SIGTERM, 30))
            self._supervisord = None
        if self.config.throwaway and self._broker_admin is not None and self._provisioned_users:
            users, self._provisioned_users = self._provisioned_users, []
            self._broker_admin.delete_users(users)

    def wait(self) -> int:
        assert self._supervisord is not None
        return self._supervisord.wait()


def metrics_targets_file(config: StackConfig) -> Path:
    return config.run_dir / "prometheus-targets.json"


def write_metrics_targets(config: StackConfig) -> Path:
    """``RUN_DIR/prometheus-targets.json``, for Prometheus' ``file_sd_configs`` (make observe)."""
    path = metrics_targets_file(config)
    path.write_text(json.dumps(config.metrics_targets(), indent=2) + "\n")
    return path


def _delivery_limit(env: dict[str, str]) -> int | None:
    value = env.get("QUEUE_DELIVERY_LIMIT")
    return int(value) if value else None


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
