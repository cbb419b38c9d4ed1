"""Private PostgreSQL and RabbitMQ servers, started from the machine's own packages.

Each server runs on ports of its own, listens on 127.0.0.1 only, keeps every file under the
directory its caller names (``<base_dir>/postgres``, ``<base_dir>/rabbitmq``) and lives exactly as
long as the context manager that started it: on the way out, successful or not, the server is
stopped and its files are left where they are (the caller removes the directory if it wants to).
A server that does not come up fails with the tail of its own log.

PostgreSQL refuses to run as root: as root, ``initdb`` and ``postgres`` run as the ``postgres``
user that Debian's package creates, the data directory is theirs, and the directories above it
get the search bit for others where that user could not otherwise reach it.

RabbitMQ gets its own node name, AMQP, distribution and epmd ports (its own epmd: one that Erlang
starts by itself would outlive the node), no plugins, and a code path trimmed to the applications
the broker needs: an Erlang node looks for every module it loads in every directory of its code
path, and the package's seventy plugin directories make that the bulk of its start-up time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy import processes
from shared.provision import Rabbitmqctl

POSTGRES_PACKAGE = "postgresql"
RABBITMQ_PACKAGE = "rabbitmq-server"
POSTGRES_START_TIMEOUT = 60.0
RABBITMQ_START_TIMEOUT = 90.0
LOG_TAIL_LINES = 30


class ServerError(RuntimeError):
    """A private server could not be found, installed or started."""


# --------------------------------------------------------------------------------------------
# PostgreSQL


@dataclass
class PostgresServer:
    """A private PostgreSQL cluster: trust auth, superuser ``postgres``, 127.0.0.1 only."""

    admin_dsn: str
    port: int
    data_dir: Path
    max_connections: int = 300
    bin_dir: Path = field(default=Path("/usr/bin"), repr=False)
    extra_settings: dict[str, str] = field(default_factory=dict)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / "server.log"

    def start(self) -> None:
        """Start on the same port and data; returns once it accepts connections."""
        if self._process is not None and self._process.poll() is None:
            return
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        argv += _settings(
            listen_addresses="127.0.0.1",
            unix_socket_directories=_socket_dir(self.data_dir.parent / "socket", self.port),
            max_connections=str(self.max_connections),
            **self.extra_settings,
        )
        self._process = processes.spawn(
            argv,
            env=_without("PG"),
            cwd=self.data_dir.parent,
            log=self.log_path,
            user=_postgres_user(),
        )
        _wait_until_up(
            "PostgreSQL",
            self._process,
            lambda: _answers(self.port) and _run(_postgres_accepts(self.admin_dsn)),
            POSTGRES_START_TIMEOUT,
            [self.log_path],
        )

    def postmaster_pid(self) -> int | None:
        """The running server's main process (its backends are its children)."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Fast shutdown (SIGINT), immediate if that hangs; the port stops answering."""
        if self._process is None:
            return
        processes.end(self._process, (signal.SIGINT, 30), (signal.SIGQUIT, 5))
        self._process = None


@contextlib.contextmanager
def private_postgres(
    base_dir: Path,
    *,
    port: int | None = None,
    max_connections: int = 300,
    settings: dict[str, str] | None = None,
) -> Iterator[PostgresServer]:
    """A private PostgreSQL with its files in ``base_dir/postgres``, kept there afterwards.

    An existing cluster there is started again as it is; otherwise one is created first.
    ``settings`` are further server settings (``-c name=value``).
    """
    home = base_dir.resolve() / "postgres"
    port = port or free_ports(1)[0]
    server = PostgresServer(
        admin_dsn=f"postgresql://postgres@127.0.0.1:{port}/postgres",
        port=port,
        data_dir=home / "data",
        max_connections=max_connections,
        extra_settings=settings or {},
        bin_dir=_require(postgres_bin_dir(), "PostgreSQL", POSTGRES_PACKAGE),
    )
    _prepare_postgres_home(home)
    if not (server.data_dir / "PG_VERSION").exists():
        _initdb(server)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def postgres_bin_dir() -> Path | None:
    """Where ``postgres`` and ``initdb`` are: Debian's newest version, else the PATH."""
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda path: _version_key(path.parent.parent.name),
    )
    if debian:
        return debian[-1].parent
    found = shutil.which("initdb") or shutil.which("postgres")
    return Path(found).resolve().parent if found else None


def _prepare_postgres_home(home: Path) -> None:
    for path in (home, home / "data", home / "socket"):
        path.mkdir(parents=True, exist_ok=True)
    (home / "data").chmod(0o700)
    user = _postgres_user()
    if user is None:
        return
    account = pwd.getpwnam(user)
    for path in (home, home / "data", home / "socket"):
        os.chown(path, account.pw_uid, account.pw_gid)
    _let_reach(home, account)


def _initdb(server: PostgresServer) -> None:
    argv = [str(server.bin_dir / "initdb"), "-D", str(server.data_dir)]
    argv += ["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"]
    with server.log_path.open("ab") as log:
        done = subprocess.run(  # noqa: S603
            argv,
            env=_without("PG"),
            cwd=server.data_dir.parent,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
            **processes.identity(_postgres_user()),
        )
    if done.returncode != 0:
        raise ServerError(
            f"initdb failed (exit {done.returncode}) for {server.data_dir}"
            + _log_tails([server.log_path])
        )


def _postgres_user() -> str | None:
    """Who runs PostgreSQL: ourselves, or the ``postgres`` user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ServerError(
            "PostgreSQL refuses to run as root and there is no 'postgres' user to run it as "
            f"(Debian's {POSTGRES_PACKAGE} package creates one)"
        ) from None
    return "postgres"


def _let_reach(path: Path, account: pwd.struct_passwd) -> None:
    """Give ``path``'s ancestors the search bit for others where ``account`` lacks it."""
    groups = set(os.getgrouplist(account.pw_name, account.pw_gid))
    for parent in path.resolve().parents:
        info = parent.stat()
        if info.st_uid == account.pw_uid:
            can = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            can = info.st_mode & stat.S_IXGRP
        else:
            can = info.st_mode & stat.S_IXOTH
        if not can:
            parent.chmod(info.st_mode | stat.S_IXOTH)


def _socket_dir(path: Path, port: int) -> str:
    """The Unix socket directory, or none at all (TCP only) where the path would be too long."""
    return str(path) if len(f"{path}/.s.PGSQL.{port}") < 100 else ""


async def _postgres_accepts(dsn: str) -> bool:
    import asyncpg

    try:
        connection = await asyncpg.connect(dsn, timeout=2)
    except (OSError, TimeoutError, asyncpg.PostgresError):
        return False
    await connection.close()
    return True


# --------------------------------------------------------------------------------------------
# RabbitMQ


@dataclass
class RabbitServer:
    """A private RabbitMQ node: user ``guest``, 127.0.0.1 only, no plugins."""

    url: str
    port: int
    home: Path = field(default=Path(), repr=False)
    node: str = ""
    dist_port: int = 0
    epmd_port: int = 0
    server_script: Path = field(default=Path("rabbitmq-server"), repr=False)
    epmd: Path = field(default=Path("epmd"), repr=False)
    scripts_dir: Path | None = field(default=None, repr=False)
    _broker: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _epmd: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def log_paths(self) -> list[Path]:
        logs = self.home / "log"
        return [logs / "stdout.log", logs / f"{self.node}.log", logs / "epmd.log"]

    def start(self) -> None:
        """Start the node on the same ports and data; returns once an AMQP client connects."""
        if self._broker is not None and self._broker.poll() is None:
            return
        self._start_epmd()
        self._broker = processes.spawn(
            [str(self.server_script)],
            env=self._environment(),
            cwd=self.home,
            log=self.log_paths[0],
        )
        _wait_until_up(
            "RabbitMQ",
            self._broker,
            lambda: _answers(self.port) and _run(_amqp_connects(self.url)),
            RABBITMQ_START_TIMEOUT,
            self.log_paths,
        )

    def stop(self) -> None:
        """Stop the node (SIGTERM: a clean shutdown that keeps durable queues and persistent
        messages), then its epmd; the AMQP port is closed afterwards."""
        if self._broker is not None:
            processes.end(self._broker, (signal.SIGTERM, 60))
            self._broker = None
        if self._epmd is not None:
            processes.end(self._epmd, (signal.SIGTERM, 5))
            self._epmd = None

    def pid(self) -> int | None:
        """The running node's process (the Erlang VM and its helpers are below it)."""
        return self._broker.pid if self._broker is not None else None

    def control(self) -> Rabbitmqctl:
        """This node's rabbitmqctl (the package's script beside rabbitmq-server, not Debian's
        wrapper, which switches to the rabbitmq user and cannot read this node's cookie)."""
        env = self._environment()
        # The trimmed scripts directory is the server's; the CLI finds its own in the package.
        env.pop("RABBITMQ_SCRIPTS_DIR", None)
        command = (str(self.server_script.parent / "rabbitmqctl"), "-n", self.node)
        return Rabbitmqctl(command, env)

    def _start_epmd(self) -> None:
        if self._epmd is not None and self._epmd.poll() is None:
            return
        self._epmd = processes.spawn(
            [str(self.epmd), "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            env=_without("ERL_"),
            cwd=self.home,
            log=self.log_paths[2],
        )
        _wait_until_up("epmd", self._epmd, lambda: _answers(self.epmd_port), 10, self.log_paths)

    def _environment(self) -> dict[str, str]:
        home = self.home
        env = _without("RABBITMQ_", "ERL_")
        env.update(
            HOME=str(home / "home"),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            # Files that do not exist: no /etc/rabbitmq settings (the system node's) apply here.
            RABBITMQ_CONFIG_FILE=str(home / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(home / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(home / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(home / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(home / "mnesia"),
            RABBITMQ_LOG_BASE=str(home / "log"),
            RABBITMQ_PID_FILE=str(home / "rabbitmq.pid"),
            RABBITMQ_PLUGINS_EXPAND_DIR=str(home / "plugins-expand"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
        )
        if self.scripts_dir is not None:
            env["RABBITMQ_SCRIPTS_DIR"] = str(self.scripts_dir)
        return env


@contextlib.contextmanager
def private_rabbitmq(base_dir: Path, *, port: int | None = None) -> Iterator[RabbitServer]:
    """A private RabbitMQ node with its files in ``base_dir/rabbitmq``, kept there afterwards.

    The node's name comes from that directory, so a node started there again finds its durable
    queues and persistent messages.
    """
    script = _require(rabbitmq_server_script(), "RabbitMQ", RABBITMQ_PACKAGE)
    home = base_dir.resolve() / "rabbitmq"
    for sub in ("home", "log", "mnesia"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    (home / "enabled_plugins").write_text("[].\n")
    amqp_port, dist_port, epmd_port = free_ports(3)
    port = port or amqp_port
    server = RabbitServer(
        url=f"amqp://guest:guest@127.0.0.1:{port}/",
        port=port,
        home=home,
        node=f"payments-{hashlib.sha256(str(home).encode()).hexdigest()[:10]}@localhost",
        dist_port=dist_port,
        epmd_port=epmd_port,
        server_script=script,
        epmd=_require(_epmd(), "Erlang's epmd", RABBITMQ_PACKAGE),
        scripts_dir=_trimmed_home(script.parent, home / "code"),
    )
    try:
        server.start()
        _CONTROLS[server.port] = server.control()
        yield server
    finally:
        _CONTROLS.pop(server.port, None)
        server.stop()


# The private nodes this process runs, by AMQP port: how to manage each one's users.
_CONTROLS: dict[int, Rabbitmqctl] = {}


def rabbitmq_control(port: int) -> Rabbitmqctl | None:
    """The rabbitmqctl of the private node this process runs on ``port``, if any."""
    return _CONTROLS.get(port)


def rabbitmq_server_script() -> Path | None:
    """The broker's own start script (not Debian's wrapper, which switches to the rabbitmq user)."""
    packaged = sorted(
        Path("/usr/lib/rabbitmq/lib").glob("rabbitmq_server-*/sbin/rabbitmq-server"),
        key=lambda path: _version_key(path.parent.parent.name.split("-", 1)[1]),
    )
    if packaged:
        return packaged[-1]
    found = shutil.which("rabbitmq-server")
    if found is None:
        return None
    # A wrapper (Debian's) sits beside a link to the real script; a link resolves to it.
    real = (Path(found).resolve().parent / "rabbitmq-server").resolve()
    return real if (real.parent / "rabbitmq-env").exists() else None


def _epmd() -> Path | None:
    found = shutil.which("epmd") or next(
        iter(Path("/usr/lib/erlang").glob("erts-*/bin/epmd")), None
    )
    return Path(found) if found else None


def _trimmed_home(sbin: Path, target: Path) -> Path | None:
    """A RabbitMQ home whose plugins directory holds only what the broker application needs
    (links into the package); returns its scripts directory, or None to use the package as is."""
    plugins = sbin.parent / "plugins"
    apps = {entry.name.rsplit("-", 1)[0]: entry for entry in plugins.glob("*-*") if entry.is_dir()}
    needed = _closure("rabbit", apps)
    if "rabbit" not in needed:
        return None
    shutil.rmtree(target, ignore_errors=True)
    (target / "sbin").mkdir(parents=True)
    (target / "plugins").mkdir()
    for script in sbin.iterdir():
        (target / "sbin" / script.name).symlink_to(script)
    for name in needed:
        (target / "plugins" / apps[name].name).symlink_to(apps[name])
    return target / "sbin"


def _closure(root: str, apps: dict[str, Path]) -> set[str]:
    """``root`` and every application it depends on that ``apps`` provides."""
    needed: set[str] = set()
    pending = [root]
    while pending:
        name = pending.pop()
        if name in needed or name not in apps:
            continue
        needed.add(name)
        for app_file in (apps[name] / "ebin").glob("*.app"):
            pending += _app_dependencies(app_file.read_text())
    return needed


def _app_dependencies(app_file: str) -> list[str]:
    names: list[str] = []
    for key in ("applications", "included_applications"):
        match = re.search(r"\{\s*" + key + r"\s*,\s*\[([^\]]*)\]", app_file)
        if match:
            names += [name.strip() for name in match.group(1).split(",") if name.strip()]
    return names


async def _amqp_connects(url: str) -> bool:
    import aio_pika

    try:
        connection = await aio_pika.connect(url, timeout=2)
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError):
        return False
    await connection.close()
    return True


# --------------------------------------------------------------------------------------------
# Installing the packages


def install_debian_packages(*packages: str) -> None:
    """``apt-get install`` the packages without starting their system services (a private
    server is wanted, not a system one). Needs root and apt-get."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ServerError(
            f"please install {' '.join(packages)} (Debian/Ubuntu: apt-get install "
            f"{' '.join(packages)}), or name running servers with the environment variables"
        )
    print(f"installing {' '.join(packages)} (apt-get)", flush=True)
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    with _services_not_started():
        for argv in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        ):
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # noqa: S603
            if done.returncode != 0:
                raise ServerError(
                    f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
                )


@contextlib.contextmanager
def _services_not_started() -> Iterator[None]:
    """Debian's policy-rc.d convention: package scripts may not start services meanwhile."""
    policy = Path("/usr/sbin/policy-rc.d")
    if policy.exists():
        yield
        return
    policy.write_text(
        "#!/bin/sh\n# written by deploy/servers.py while it installs packages\nexit 101\n"
    )
    policy.chmod(0o755)
    try:
        yield
    finally:
        policy.unlink()


# --------------------------------------------------------------------------------------------
# Shared helpers


def _require(found: Path | None, what: str, package: str) -> Path:
    if found is None:
        raise ServerError(f"{what} is not installed (Debian: apt-get install {package})")
    return found


def _wait_until_up(
    name: str,
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    timeout: float,
    logs: list[Path],
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise ServerError(f"{name} exited with status {process.returncode}" + _log_tails(logs))
        if time.monotonic() > deadline:
            raise ServerError(f"{name} did not come up within {timeout:.0f} s" + _log_tails(logs))
        time.sleep(0.1)


def _log_tails(logs: list[Path]) -> str:
    text = ""
    for log in logs:
        with contextlib.suppress(OSError):
            lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            text += f"\n--- last lines of {log}:\n" + "\n".join(lines)
    return text


def free_ports(count: int) -> list[int]:
    """``count`` different ports nobody listens on right now (on 127.0.0.1)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _run(coroutine: Coroutine[Any, Any, bool]) -> bool:
    """Run a check on a loop of its own, whether or not the caller is inside one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _settings(**values: str) -> list[str]:
    return [arg for key, value in values.items() for arg in ("-c", f"{key}={value}")]


def _without(*prefixes: str) -> dict[str, str]:
    """This process's environment minus variables that would reconfigure the server."""
    return {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


__all__ = [
    "PostgresServer",
    "RabbitServer",
    "ServerError",
    "free_ports",
    "install_debian_packages",
    "postgres_bin_dir",
    "private_postgres",
    "private_rabbitmq",
    "rabbitmq_server_script",
]
