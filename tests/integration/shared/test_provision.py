"""Least privilege: each role's own PostgreSQL role owns its schema and reads nothing else, no
role is a superuser, and each role's RabbitMQ user is refused outside its own queues and events.
The users are made for the test (unique names) and removed after it, failed or not."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import aiormq
import asyncpg
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from deploy.scratch import database_of
from services.approval.bootstrap import MIGRATIONS as APPROVAL_MIGRATIONS
from services.checkout.bootstrap import MIGRATIONS as CHECKOUT_MIGRATIONS
from services.order.bootstrap import MIGRATIONS as ORDER_MIGRATIONS
from shared import db, provision
from shared.events import OrderPlaced, PaymentApproved, PaymentAuthenticated
from shared.messaging import Topology
from shared.provision import RoleAccess
from shared.topology import APPROVAL_PAYMENTS, CHECKOUT_PLACED_ORDERS
from tests.infra import Broker

MIGRATIONS: dict[str, Path] = {
    "order": ORDER_MIGRATIONS,
    "checkout": CHECKOUT_MIGRATIONS,
    "approval": APPROVAL_MIGRATIONS,
}


def own(database_url: str, role: str) -> RoleAccess:
    database = database_of(database_url)
    url = provision.with_credentials(database_url, f"{database}_{role}", provision.new_password())
    return RoleAccess(role, url)


@pytest.fixture
async def accesses(database_url: str) -> dict[str, RoleAccess]:
    """order, checkout and approval on roles of their own, each schema migrated by its owner
    (order's after an admin had migrated it, as in a deployment from before)."""
    made = {role: own(database_url, role) for role in MIGRATIONS}
    await db.migrate(database_url, "orders", ORDER_MIGRATIONS)
    await provision.provision_database(database_url, made.values())
    for role, access in made.items():
        assert access.database_url is not None
        await db.migrate(access.database_url, access.schema, MIGRATIONS[role], role)
    return made  # the roles go with the database (tests.infra.fresh_database)


async def connect_as(access: RoleAccess) -> asyncpg.Connection:
    assert access.database_url is not None
    return await db.connect(access.database_url, access.schema, access.role)


async def test_no_role_is_a_superuser_or_may_create_roles_or_databases(
    accesses: dict[str, RoleAccess], database_url: str
) -> None:
    admin = await asyncpg.connect(database_url)
    try:
        rows = await admin.fetch(
            "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles"
            " WHERE rolname = ANY($1::text[])",
            [urlsplit(a.database_url or "").username for a in accesses.values()],
        )
    finally:
        await admin.close()
    assert len(rows) == 3
    assert all(not any(tuple(row)[1:]) for row in rows), rows


async def test_a_role_owns_its_schema_and_reads_its_own_tables(
    accesses: dict[str, RoleAccess],
) -> None:
    conn = await connect_as(accesses["order"])
    try:
        owner = await conn.fetchval(
            "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'orders'"
        )
        foreign_owned = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'orders' AND c.relowner <> (SELECT oid FROM pg_roles"
            " WHERE rolname = current_user)"
        )
        assert await conn.fetchval("SELECT count(*) FROM customers") == 0
    finally:
        await conn.close()
    assert owner == urlsplit(accesses["order"].database_url or "").username
    assert foreign_owned == 0  # the admin's earlier tables were handed over


@pytest.mark.parametrize(
    ("role", "table"),
    [
        ("order", "checkout.success_redirects"),
        ("order", "approval.payment_attempts"),
        ("checkout", "orders.customers"),
        ("approval", "orders.sessions"),
        ("approval", "checkout.placed_orders"),
    ],
)
async def test_a_role_cannot_read_another_roles_tables(
    accesses: dict[str, RoleAccess], role: str, table: str
) -> None:
    conn = await connect_as(accesses[role])
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval(f"SELECT count(*) FROM {table}")
    finally:
        await conn.close()


async def test_a_roles_connections_are_named_after_it(accesses: dict[str, RoleAccess]) -> None:
    access = accesses["checkout"]
    assert access.database_url is not None
    pool = await db.create_pool(
        access.database_url, access.schema, min_size=1, max_size=1, application_name="checkout"
    )
    try:
        name = await pool.fetchval(
            "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        )
    finally:
        await pool.close()
    assert name == "checkout"


# --- RabbitMQ ------------------------------------------------------------------------------------


@pytest.fixture
async def broker_users(broker: Broker) -> AsyncIterator[dict[str, RoleAccess]]:
    admin = provision.broker_admin({}) if shutil.which("rabbitmqctl") else None
    if admin is None or urlsplit(broker.url).port != 5672:
        pytest.skip("needs rabbitmqctl for the local broker")
    users = {
        role: RoleAccess(
            role,
            None,
            provision.with_credentials(
                broker.url, f"{broker.exchange}.{role}", provision.new_password()
            ),
        )
        for role in ("checkout", "approval", "ops")
    }
    try:
        await provision.provision_broker(broker.url, admin, broker.topology, list(users.values()))
        yield users
    finally:
        await asyncio.to_thread(admin.delete_users, provision.broker_users(users.values()))


@contextlib.asynccontextmanager
async def connected(access: RoleAccess) -> AsyncIterator[AbstractChannel]:
    assert access.amqp_url is not None
    connection = await aio_pika.connect(access.amqp_url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def refused(attempt: Awaitable[object]) -> bool:
    """Whether the broker refused it (ACCESS_REFUSED closes the channel)."""
    try:
        await attempt
    except (aiormq.exceptions.ChannelAccessRefused, aio_pika.exceptions.ChannelClosed):
        return True
    return False


def message() -> aio_pika.Message:
    return aio_pika.Message(b"{}", message_id=str(uuid.uuid4()))


async def handle(message: AbstractIncomingMessage) -> None:
    return None


async def test_a_broker_user_reads_its_own_queue_and_publishes_its_own_events(
    broker_users: dict[str, RoleAccess], broker: Broker
) -> None:
    async with connected(broker_users["checkout"]) as channel:
        queue = await channel.declare_queue(
            broker.topology.queue(CHECKOUT_PLACED_ORDERS), passive=True
        )
        await queue.cancel(await queue.consume(handle))
        exchange = await channel.get_exchange(broker.exchange, ensure=False)
        confirmed = await exchange.publish(message(), routing_key=PaymentAuthenticated.routing_key)
        assert isinstance(confirmed, aiormq.spec.Basic.Ack)


async def trespass(channel: AbstractChannel, topo: Topology, what: str) -> object:
    if what == "consume another role's queue":
        queue = await channel.declare_queue(topo.queue(APPROVAL_PAYMENTS), passive=True)
        return await queue.consume(handle)
    if what == "publish another role's event":
        exchange = await channel.get_exchange(topo.exchange, ensure=False)
        return await exchange.publish(message(), routing_key=PaymentApproved.routing_key)
    if what == "publish order's event":
        exchange = await channel.get_exchange(topo.exchange, ensure=False)
        return await exchange.publish(message(), routing_key=OrderPlaced.routing_key)
    if what == "publish to the default exchange":
        return await channel.default_exchange.publish(message(), topo.queue(APPROVAL_PAYMENTS))
    if what == "put a message into another role's queue":
        back = await channel.get_exchange(topo.return_exchange, ensure=False)
        return await back.publish(message(), routing_key=topo.queue(APPROVAL_PAYMENTS))
    if what == "declare a queue":
        return await channel.declare_queue(f"{topo.prefix}checkout.mine", durable=True)
    queue = await channel.declare_queue(topo.queue(CHECKOUT_PLACED_ORDERS), passive=True)
    return await queue.bind(topo.exchange, routing_key=PaymentApproved.routing_key)


@pytest.mark.parametrize(
    "what",
    [
        "consume another role's queue",
        "publish another role's event",
        "publish order's event",
        "publish to the default exchange",
        "put a message into another role's queue",
        "declare a queue",
        "bind its queue to another routing key",
    ],
)
async def test_a_broker_user_is_refused_outside_its_own_resources(
    broker_users: dict[str, RoleAccess], broker: Broker, what: str
) -> None:
    async with connected(broker_users["checkout"]) as channel:
        assert await refused(trespass(channel, broker.topology, what))


async def test_the_consoles_broker_user_reads_dead_letters_and_sends_them_back(
    broker_users: dict[str, RoleAccess], broker: Broker
) -> None:
    async with connected(broker_users["ops"]) as channel:
        dlq = await channel.declare_queue(
            broker.topology.dead_letter_queue(APPROVAL_PAYMENTS), passive=True
        )
        assert await dlq.get(fail=False) is None
        exchange = await channel.get_exchange(broker.exchange, ensure=False)
        confirmed = await exchange.publish(message(), routing_key=OrderPlaced.routing_key)
        assert isinstance(confirmed, aiormq.spec.Basic.Ack)


@pytest.mark.parametrize(
    "what",
    [
        "consume another role's queue",
        "put a message into another role's queue",
        "publish to the default exchange",
        "declare a queue",
    ],
)
async def test_the_consoles_broker_user_is_refused_outside_the_dead_letters(
    broker_users: dict[str, RoleAccess], broker: Broker, what: str
) -> None:
    async with connected(broker_users["ops"]) as channel:
        assert await refused(trespass(channel, broker.topology, what))
