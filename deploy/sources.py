"""Where a run's PostgreSQL and RabbitMQ come from: one rule for `make run` and `make test`.

For each server, the first of these that applies:

1. **environment**: a variable names it (``DATABASE_URL``/``AMQP_URL`` for `make run`,
   ``TEST_DATABASE_URL``/``TEST_AMQP_URL`` for the tests); it must answer.
2. **local**: a server answers on ``127.0.0.1:5432`` / ``127.0.0.1:5672`` (user ``postgres`` with
   trust auth, ``guest``/``guest``). ``LOCAL_SERVERS_HOST``, ``LOCAL_POSTGRES_PORT`` and
   ``LOCAL_RABBITMQ_PORT`` move the probe (a test points it where nothing listens).
3. **private**: the machine has the server's package: a private server (:mod:`deploy.servers`)
   with its files under the caller's directory, stopped when the caller is done.
4. **container**: a Docker engine answers: a throw-away container (testcontainers).
5. **private, after installing** Debian's package (as root, with apt-get), as in 3.

:func:`choose` decides without starting anything (and says why in :meth:`Choice.describe`);
:func:`provide` starts what the choice needs and yields the server's URL; :func:`server` does
both and announces the result in one line.
"""

from __future__ import annotations

import contextlib
import enum
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from deploy import servers
from deploy.scratch import with_database


class Origin(enum.Enum):
    ENVIRONMENT = "environment"
    LOCAL = "local"
    PRIVATE = "private"
    CONTAINER = "container"


@dataclass(frozen=True)
class Kind:
    """What differs between PostgreSQL and RabbitMQ as far as finding one goes."""

    name: str
    subdir: str  # of a private server's base directory
    default_port: int
    port_variable: str
    package: str
    local_url: Callable[[str, int], str]
    installed: Callable[[], bool]
    private: Callable[[Path], AbstractContextManager[str]]
    container: Callable[[], AbstractContextManager[str]]


@contextlib.contextmanager
def _private_postgres(base_dir: Path) -> Iterator[str]:
    with servers.private_postgres(base_dir) as server:
        yield server.admin_dsn


@contextlib.contextmanager
def _private_rabbitmq(base_dir: Path) -> Iterator[str]:
    with servers.private_rabbitmq(base_dir) as server:
        yield server.url


@contextlib.contextmanager
def _postgres_container() -> Iterator[str]:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver=None) as container:
        yield container.get_connection_url()


@contextlib.contextmanager
def _rabbitmq_container() -> Iterator[str]:
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3.13-alpine") as container:
        params = container.get_connection_params()
        yield f"amqp://guest:guest@{params.host}:{params.port}/"


POSTGRES = Kind(
    name="PostgreSQL",
    subdir="postgres",
    default_port=5432,
    port_variable="LOCAL_POSTGRES_PORT",
    package=servers.POSTGRES_PACKAGE,
    local_url=lambda host, port: f"postgresql://postgres@{host}:{port}/postgres",
    installed=lambda: servers.postgres_bin_dir() is not None,
    private=_private_postgres,
    container=_postgres_container,
)
RABBITMQ = Kind(
    name="RabbitMQ",
    subdir="rabbitmq",
    default_port=5672,
    port_variable="LOCAL_RABBITMQ_PORT",
    package=servers.RABBITMQ_PACKAGE,
    local_url=lambda host, port: f"amqp://guest:guest@{host}:{port}/",
    installed=lambda: servers.rabbitmq_server_script() is not None,
    private=_private_rabbitmq,
    container=_rabbitmq_container,
)


@dataclass(frozen=True)
class Choice:
    kind: Kind
    origin: Origin
    label: str  # "the local server", "a private server", ...
    url: str | None = None  # known at once for environment and local; else once it is up
    why: str = ""
    install: bool = False

    def describe(self, url: str | None = None, files: Path | None = None) -> str:
        """One line: which server, where, and why this one."""
        url = url or self.url
        line = f"{self.kind.name}: {self.label}"
        line += f" at {_address(url)}" if url else ""
        line += f" ({self.why})" if self.why else ""
        line += f", files in {files}" if files and self.origin is Origin.PRIVATE else ""
        return line


def choose(kind: Kind, variable: str) -> Choice:
    """Decide where ``kind`` comes from, starting nothing (see the module's docstring)."""
    if named := os.environ.get(variable):
        return Choice(kind, Origin.ENVIRONMENT, f"the server in {variable}", named)
    host = os.environ.get("LOCAL_SERVERS_HOST") or "127.0.0.1"
    port = int(os.environ.get(kind.port_variable) or kind.default_port)
    if _answers(host, port):
        return Choice(kind, Origin.LOCAL, "the local server", kind.local_url(host, port))
    nobody = f"nothing answers on {host}:{port}"
    if kind.installed():
        return Choice(kind, Origin.PRIVATE, "a private server", why=nobody)
    if docker_engine_answers():
        why = f"{nobody}, {kind.package} is not installed"
        return Choice(kind, Origin.CONTAINER, "a container", why=why)
    why = f"{nobody}; installing {kind.package}"
    return Choice(kind, Origin.PRIVATE, "a private server", why=why, install=True)


@contextlib.contextmanager
def provide(choice: Choice, base_dir: Path) -> Iterator[str]:
    """The chosen server's URL, for as long as the block runs (a private server's files go
    under ``base_dir``)."""
    if choice.url is not None:
        if not _answers(*_host_port(choice.url, choice.kind.default_port)):
            raise servers.ServerError(f"{choice.describe()}: nothing answers there")
        yield choice.url
    elif choice.origin is Origin.CONTAINER:
        with choice.kind.container() as url:
            yield url
    else:
        if choice.install:
            servers.install_debian_packages(choice.kind.package)
        with choice.kind.private(base_dir) as url:
            yield url


@contextlib.contextmanager
def server(
    kind: Kind,
    variable: str,
    base_dir: Path,
    announce: Callable[[str], None],
    *,
    database: str | None = None,
) -> Iterator[str]:
    """Choose, provide and announce ``kind``'s server. With ``database``, a PostgreSQL URL we
    make up names that database (a URL from the environment is used exactly as given)."""
    choice = choose(kind, variable)
    with provide(choice, base_dir) as url:
        announce(choice.describe(url, base_dir / kind.subdir))
        if database and choice.origin is not Origin.ENVIRONMENT:
            url = with_database(url, database)
        yield url


def docker_engine_answers() -> bool:
    """A Docker engine (not just the client) answers, and testcontainers can use it."""
    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return False
    try:
        import docker
    except ImportError:
        return False
    try:
        docker.from_env(timeout=3).ping()
    except Exception:  # the client raises several unrelated types; any means "no engine"
        return False
    return True


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def _address(url: str) -> str:
    """host:port only: a URL from the environment may carry a password."""
    host, port = _host_port(url, 0)
    return f"{host}:{port}"
