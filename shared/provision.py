"""Provisioning, an admin's step before the roles start: each role's own PostgreSQL role, owning
its schema and nothing else, and its own RabbitMQ user, allowed its own queues and events only.

``python -m shared.provision`` reads the admin URLs (``DATABASE_URL``, ``AMQP_URL``) and each
role's own (``ORDER_DATABASE_URL``, ``ORDER_AMQP_URL``, …: :data:`ROLES`), creates or updates
what they name, and declares the whole topology. Each role then migrates its schema as its owner
when it starts (or with ``python -m services.<role> migrate``).

- PostgreSQL: a login role per service, no superuser, no CREATEDB/CREATEROLE, owner of its
  schema (anything already in it is handed over); ``PUBLIC`` loses every right on the schemas and
  on the database, so a role reaches only its own tables.
- RabbitMQ: a user per service whose vhost permissions let it configure nothing, write only to
  the events exchange and the return exchange, and read only its own queues; topic permissions
  narrow its writes to the routing keys of the events it publishes and to its own queues' names.
  Created through the management API (``RABBITMQ_MANAGEMENT_URL``) or ``rabbitmqctl``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aio_pika
import asyncpg
import httpx

from shared import messaging, topology
from shared.messaging import Topology
from shared.settings import CommonSettings

# Each role and its schema (services/<role>/config.py: db_schema).
ROLES: dict[str, str] = {
    "order": "orders",
    "checkout": "checkout",
    "approval": "approval",
    "sandbox": "sandbox",
}
# Roles with a broker user but no database role of their own: the operator console works on
# approval's tables as approval's database role does (services/ops/__init__.py says why).
BROKER_ONLY: tuple[str, ...] = ("ops",)


@dataclass(frozen=True)
class RoleAccess:
    """A role's own credentials: its database URL and (if it uses the broker) its AMQP URL."""

    role: str
    database_url: str | None
    amqp_url: str | None = None

    @property
    def schema(self) -> str:
        return ROLES[self.role]


def accesses_from(environ: Mapping[str, str]) -> list[RoleAccess]:
    """Every role whose own URLs the environment names (``ORDER_DATABASE_URL``, …)."""
    found = []
    for role in (*ROLES, *BROKER_ONLY):
        database = environ.get(f"{role.upper()}_DATABASE_URL") if role in ROLES else None
        database = database or None
        broker = environ.get(f"{role.upper()}_AMQP_URL") or None
        if database or broker:
            found.append(RoleAccess(role, database, broker))
    return found


def with_credentials(url: str, user: str, password: str) -> str:
    """``url`` (an admin's) with another user and password: same server, database and vhost."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{parts.port}" if parts.port else ""
    userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}@"
    return urlunsplit(parts._replace(netloc=f"{userinfo}{host}{port}"))


def new_password() -> str:
    return secrets.token_hex(24)


def _user_and_password(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    if not parts.username:
        raise ValueError(f"no user in the URL for {parts.hostname}")
    return unquote(parts.username), unquote(parts.password) if parts.password else None


# --- PostgreSQL ---------------------------------------------------------------------------------


async def provision_database(admin_dsn: str, accesses: Iterable[RoleAccess]) -> None:
    """Create or update each role's login role and its schema, owned by it; take every right
    from ``PUBLIC``. Idempotent (run it at every deployment: it also rotates passwords)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        database = await conn.fetchval("SELECT current_database()")
        await _execute_formatted(conn, "REVOKE ALL ON DATABASE %I FROM PUBLIC", database)
        await conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        for access in accesses:
            if access.database_url is not None:
                await _provision_role(conn, database, access.schema, access.database_url)
    finally:
        await conn.close()


async def _provision_role(conn: asyncpg.Connection, database: str, schema: str, url: str) -> None:
    user, password = _user_and_password(url)
    exists = await conn.fetchval("SELECT true FROM pg_roles WHERE rolname = $1", user)
    await _execute_formatted(
        conn,
        "%s ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
        " PASSWORD %L",
        "ALTER" if exists else "CREATE",
        user,
        scram_verifier(password) if password is not None else None,
    )
    await _execute_formatted(conn, "GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I", database, user)
    if not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
        # An admin that is not a superuser hands objects over only as a member of the new owner.
        await _execute_formatted(conn, "GRANT %I TO current_user", user)
    if await conn.fetchval("SELECT true FROM pg_namespace WHERE nspname = $1", schema):
        await _execute_formatted(conn, "ALTER SCHEMA %I OWNER TO %I", schema, user)
    else:
        await _execute_formatted(conn, "CREATE SCHEMA %I AUTHORIZATION %I", schema, user)
    await _execute_formatted(conn, "REVOKE ALL ON SCHEMA %I FROM PUBLIC", schema)
    for statement in await conn.fetch(_HAND_OVER, schema, user):
        await conn.execute(statement[0])


# What a schema holds that its owner does not own yet (made by an admin's migrations before
# roles had users of their own): tables, views and free sequences, then routines. Indexes,
# owned sequences and row types follow their table.
_HAND_OVER = """
SELECT format('ALTER %s %I.%I OWNER TO %I',
              CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                             WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE'
                             ELSE 'TABLE' END,
              n.nspname, c.relname, $2::text)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
   AND pg_get_userbyid(c.relowner) <> $2
   AND NOT (c.relkind = 'S' AND EXISTS (
            SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
               AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
UNION ALL
SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, $2::text)
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = $1 AND pg_get_userbyid(p.proowner) <> $2
"""


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier of ``password``: the server (and its statement log)
    never sees the password itself."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    salt64, stored64, server64 = (base64.b64encode(b).decode() for b in (salt, stored, server))
    return f"SCRAM-SHA-256${iterations}:{salt64}${stored64}:{server64}"


async def _execute_formatted(conn: asyncpg.Connection, template: str, *values: object) -> None:
    """Run a statement whose identifiers and literals PostgreSQL's format() quoted."""
    placeholders = ", ".join(f"${n}::text" for n in range(1, len(values) + 1))
    statement = await conn.fetchval(f"SELECT format('{template}', {placeholders})", *values)
    await conn.execute(statement)


async def drop_database_roles(admin_dsn: str, prefix: str) -> list[str]:
    """Drop the login roles named ``<prefix>_…`` (a throw-away database's, after it is gone)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        pattern = prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "\\_%"
        names = [
            row[0]
            for row in await conn.fetch(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE $1 AND NOT rolsuper", pattern
            )
        ]
        for name in names:
            await _execute_formatted(conn, "DROP ROLE IF EXISTS %I", name)
        return names
    finally:
        await conn.close()


# --- RabbitMQ ----------------------------------------------------------------------------------


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password))."""
    salt = salt if salt is not None else secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def vhost_of(amqp_url: str) -> str:
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if path not in ("", "/") else "/"


def _exactly(names: Iterable[str]) -> str:
    """A regular expression matching exactly these names (none: nothing)."""
    alternatives = "|".join(re.escape(name) for name in sorted(set(names)))
    return f"^({alternatives})$" if alternatives else "^$"


def broker_definitions(topo: Topology, accesses: Iterable[RoleAccess]) -> dict[str, Any]:
    """RabbitMQ definitions (``rabbitmqctl import_definitions``, ``POST /api/definitions``) for
    each role's user: who may read, write and publish what, on the topology's vhost."""
    users: list[dict[str, Any]] = []
    permissions: list[dict[str, Any]] = []
    topic_permissions: list[dict[str, Any]] = []
    for access in accesses:
        if access.amqp_url is None:
            continue
        user, password = _user_and_password(access.amqp_url)
        vhost = vhost_of(access.amqp_url)
        queues = [topo.queue(s) for s in topology.CONSUMES.get(access.role, ())]
        own = queues + [f"{queue}.dlq" for queue in queues]
        keys = [event.routing_key for event in topology.PUBLISHES.get(access.role, ())]
        replays = topology.REPLAYS.get(access.role, ())
        # A replay republishes a dead letter under its original routing key.
        keys += [key for s in replays for key in s.routing_keys]
        readable = queues + [topo.dead_letter_queue(s) for s in replays]
        users.append(
            {
                "name": user,
                "password_hash": password_hash(password or ""),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": "",
            }
        )
        permissions.append(
            {
                "user": user,
                "vhost": vhost,
                "configure": "^$",
                "write": _exactly([topo.exchange, topo.return_exchange]),
                "read": _exactly(readable),
            }
        )
        topic_permissions += [
            {"user": user, "vhost": vhost, "exchange": topo.exchange, "write": _exactly(keys)},
            {
                "user": user,
                "vhost": vhost,
                "exchange": topo.return_exchange,
                "write": _exactly(own),
            },
        ]
    for permission in topic_permissions:
        permission["read"] = "^$"
    return {"users": users, "permissions": permissions, "topic_permissions": topic_permissions}


class BrokerAdmin(Protocol):
    """Creates and deletes broker users (AMQP itself cannot)."""

    def apply(self, definitions: Mapping[str, Any]) -> None: ...

    def delete_users(self, names: Iterable[str]) -> None: ...


@dataclass(frozen=True)
class Rabbitmqctl:
    """The broker's own CLI, on its node (the local server's by default)."""

    command: tuple[str, ...] = ("rabbitmqctl",)
    env: Mapping[str, str] | None = None

    def apply(self, definitions: Mapping[str, Any]) -> None:
        # From standard input: the hashes never touch a file another user could read.
        self._run("import_definitions", stdin=json.dumps(definitions))

    def delete_users(self, names: Iterable[str]) -> None:
        running = [self._start("delete_user", name) for name in names]
        for process, name in running:
            _, stderr = process.communicate(timeout=120)
            if process.returncode != 0 and "does not exist" not in stderr:
                raise ProvisioningError(f"rabbitmqctl delete_user {name}: {stderr.strip()[-300:]}")

    def _run(self, *args: str, stdin: str | None = None) -> None:
        done = subprocess.run(  # noqa: S603 - a fixed command, our own arguments
            [*self.command, "-q", *args],
            input=stdin,
            env=dict(self.env) if self.env is not None else None,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise ProvisioningError(f"rabbitmqctl {args[0]}: {done.stderr.strip()[-300:]}")

    def _start(self, *args: str) -> tuple[subprocess.Popen[str], str]:
        process = subprocess.Popen(  # noqa: S603 - a fixed command, our own arguments
            [*self.command, "-q", *args],
            env=dict(self.env) if self.env is not None else None,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        return process, args[-1]


@dataclass(frozen=True)
class ManagementApi:
    """The management plugin's HTTP API (``http://admin:password@host:15672``)."""

    url: str

    def apply(self, definitions: Mapping[str, Any]) -> None:
        with self._client() as client:
            client.post("/api/definitions", json=definitions).raise_for_status()

    def delete_users(self, names: Iterable[str]) -> None:
        with self._client() as client:
            for name in names:
                response = client.delete(f"/api/users/{quote(name, safe='')}")
                if response.status_code != 404:
                    response.raise_for_status()

    def _client(self) -> httpx.Client:
        parts = urlsplit(self.url)
        auth = (unquote(parts.username or ""), unquote(parts.password or ""))
        base = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        return httpx.Client(base_url=base, auth=auth, timeout=30)


class ProvisioningError(RuntimeError):
    pass


def broker_admin(environ: Mapping[str, str]) -> BrokerAdmin | None:
    """How to manage the broker's users: ``RABBITMQ_MANAGEMENT_URL``, else ``RABBITMQCTL`` (a
    command line), else a ``rabbitmqctl`` on the PATH; None if there is no way."""
    if url := environ.get("RABBITMQ_MANAGEMENT_URL"):
        return ManagementApi(url)
    if command := environ.get("RABBITMQCTL"):
        return Rabbitmqctl(tuple(shlex.split(command)))
    if shutil.which("rabbitmqctl"):
        return Rabbitmqctl()
    return None


async def declare_topology(admin_amqp_url: str, topo: Topology) -> None:
    connection = await aio_pika.connect(admin_amqp_url)
    async with connection:
        await messaging.declare_all(await connection.channel(), topo)


async def provision_broker(
    admin_amqp_url: str, admin: BrokerAdmin, topo: Topology, accesses: Sequence[RoleAccess]
) -> None:
    """Declare the topology (as the admin), then create or update each role's user."""
    await declare_topology(admin_amqp_url, topo)
    definitions = broker_definitions(topo, accesses)
    if definitions["users"]:
        await asyncio.to_thread(admin.apply, definitions)


def broker_users(accesses: Iterable[RoleAccess]) -> list[str]:
    return [_user_and_password(a.amqp_url)[0] for a in accesses if a.amqp_url is not None]


# --- the command --------------------------------------------------------------------------------


async def provision(environ: Mapping[str, str]) -> list[str]:
    """Everything the environment names; returns what was done, one line each."""
    settings = CommonSettings()
    accesses = accesses_from(environ)
    done = []
    if any(a.database_url for a in accesses):
        await provision_database(settings.database_url, accesses)
        done.append(f"database roles: {', '.join(a.role for a in accesses if a.database_url)}")
    if any(a.amqp_url for a in accesses):
        admin = broker_admin(environ)
        if admin is None:
            raise ProvisioningError(
                "no way to create broker users: set RABBITMQ_MANAGEMENT_URL or RABBITMQCTL"
            )
        await provision_broker(settings.amqp_url, admin, settings.topology(), accesses)
        done.append(f"broker users: {', '.join(broker_users(accesses))}")
    else:
        await declare_topology(settings.amqp_url, settings.topology())
    done.append("topology declared")
    return done


def main() -> int:
    try:
        for line in asyncio.run(provision(os.environ)):
            print(f"provision: {line}")
    except (ProvisioningError, OSError, asyncpg.PostgresError) as exc:
        print(f"provision: failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
