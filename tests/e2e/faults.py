"""Breaking the real stack on purpose, and the one check every fault test ends with.

- :func:`fault_stack` starts a private stack (its own database, exchange, ports and supervisord)
  tuned to recover fast: short leases, a reconciler every half second, a 1 s PG read timeout.
  With ``via_proxy`` every process reaches RabbitMQ through a :class:`ThreadedProxy` the test
  can cut.
- :func:`kill_random_worker`, :meth:`FaultStack.terminate_backends`, :meth:`FaultStack.faults`,
  :func:`restart_private_broker` are the faults; :func:`failpoint_kills` counts the SIGKILLs the
  approval workers' failpoints fired.
- :func:`assert_money_is_right` waits until everything settled and checks the invariants
  against the sandbox's ledger: an order is PAID exactly when it holds exactly one approval that
  was not refunded, no order has two approvals, every confirm carried the payment's one
  idempotency key, no attempt or refund is left unsettled, no event is left unpublished.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import random
import shutil
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import aio_pika
import asyncpg
import httpx

from deploy.servers import RabbitServer
from deploy.stack import Stack, StackConfig
from services.approval.domain import confirm_idempotency_key
from shared import topology as shared_topology
from shared.deadletters import list_dead_letters
from shared.events import PaymentAuthenticated, utcnow
from shared.messaging import Publisher, declare_exchange
from shared.topology import topology
from tests import infra
from tests.e2e.buyer import Buyer
from tests.e2e.conftest import LEAN_POOLS
from tests.integration.shared.helpers import TcpProxy

T = TypeVar("T")

# Recover in seconds, not minutes; small pools (the test database server is shared).
FAST_RECOVERY = {
    **LEAN_POOLS,
    "LEASE_SECONDS": "3",
    "RECONCILE_INTERVAL_SECONDS": "0.5",
    "VERIFIED_GRACE_SECONDS": "1",
    "PG_READ_TIMEOUT_SECONDS": "1",
    "PG_CALL_DEADLINE_SECONDS": "1",
    "CONFIRM_RETRY_BASE_SECONDS": "0.2",
    "UNKNOWN_BACKOFF_BASE_SECONDS": "0.5",
    "UNKNOWN_BACKOFF_MAX_SECONDS": "2",
    "SHUTDOWN_GRACE_SECONDS": "1",
    "OUTBOX_POLL_SECONDS": "0.2",
    "OUTBOX_POLL_INTERVAL": "0.2",
    "APPROVAL_PREFETCH": "16",
}
SCHEMAS_WITH_OUTBOX = ("orders", "checkout", "approval")
UNSETTLED_ATTEMPTS = ("RECEIVED", "AWAITING_ORDER", "VERIFIED", "CONFIRMING", "UNKNOWN")
UNSETTLED_REFUNDS = ("REQUESTED", "CANCELING", "UNKNOWN")


# --- a broker connection the test can cut --------------------------------------------------


class _Proxy(TcpProxy):
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await super()._serve(reader, writer)
        except OSError:  # the broker itself is down (restarting): refuse, the client retries
            writer.transport.abort()


class ThreadedProxy:
    """A :class:`TcpProxy` on its own thread and event loop: it keeps forwarding while the test's
    loop is blocked (starting the stack) or idle (between tests)."""

    def __init__(self, target_url: str) -> None:
        self._proxy = _Proxy(target_url)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return self._proxy.url

    @property
    def connections(self) -> int:
        """Connections accepted so far (each reconnection of a process adds one)."""
        return self._proxy.connections

    def start(self) -> None:
        self._thread.start()
        self._call(self._proxy.start())

    async def cut(self) -> None:
        await asyncio.to_thread(self._call, self._proxy.cut())

    async def restore(self) -> None:
        await asyncio.to_thread(self._call, self._proxy.restore())

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._proxy.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)


# --- the stack ------------------------------------------------------------------------------


@dataclass
class FaultStack:
    stack: Stack
    database_url: str
    amqp_url: str  # the broker itself, never through the proxy
    proxy: ThreadedProxy | None = None

    @property
    def config(self) -> StackConfig:
        return self.stack.config

    @property
    def logs(self) -> Path:
        return self.config.run_dir / "logs"

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of its own (a pool's would be terminated along with the stack's)."""
        conn = await asyncpg.connect(self.database_url)
        try:
            yield conn
        finally:
            await conn.close()

    async def faults(self, **knobs: object) -> None:
        """Set the sandbox's fault knobs (``confirmLatencyMs``, ``dropResponseRate``, …)."""
        async with httpx.AsyncClient(base_url=self.config.sandbox_url, timeout=10) as client:
            response = await client.put("/sandbox/faults", json=knobs)
            response.raise_for_status()

    async def no_faults(self) -> None:
        """Every endpoint's knobs back to none (the clock scale the stack started with stays)."""
        quiet = {"latencyMs": 0, "errorRate": 0, "dropResponseRate": 0}
        late = {"lateCompletionRate": 0}
        await self.faults(
            confirm=quiet | late,
            cancel=quiet | late,
            lookupByKey=quiet,
            lookupByOrder=quiet,
            replayErrors=True,
            forgetIdempotencyKeys=False,
        )

    async def script(self, order_id: str, **confirm: object) -> None:
        """A scripted timeline for the order's first confirm (see the sandbox's README)."""
        async with httpx.AsyncClient(base_url=self.config.sandbox_url, timeout=10) as client:
            response = await client.put(f"/sandbox/scripts/{order_id}", json={"confirm": confirm})
            response.raise_for_status()

    async def terminate_backends(self) -> int:
        """Kill every other PostgreSQL backend of the stack's database, mid-whatever."""
        async with self.connection() as conn:
            killed: int = await conn.fetchval(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t"
            )
        return killed

    async def approval_workers(self) -> list[dict[str, Any]]:
        processes = await asyncio.to_thread(self.stack.processes)
        return [p for p in processes if p["group"] == "approval"]

    async def wait_workers_running(self, within: float = 30) -> None:
        """supervisord brought every worker back (nobody restarted anything by hand)."""
        deadline = time.monotonic() + within
        while True:
            states = [p["statename"] for p in await self.approval_workers()]
            if all(s == "RUNNING" for s in states):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"approval workers not running again: {states}")
            await asyncio.sleep(0.2)

    def log_tail(self, chars: int = 2500) -> str:
        return "\n".join(
            f"----- {log.name}\n{log.read_text(errors='replace')[-chars:]}"
            for log in sorted(self.logs.glob("*.log"))
        )


@contextlib.asynccontextmanager
async def fault_stack(
    admin_dsn: str,
    amqp_url: str,
    *,
    workers: int = 3,
    via_proxy: bool = False,
    env: dict[str, str] | None = None,
) -> AsyncIterator[FaultStack]:
    """A private stack for breaking things (see the module docstring)."""
    async with (
        infra.fresh_database(admin_dsn, prefix="faults") as database_url,
        infra.fresh_broker(amqp_url, prefix="faults") as broker,
    ):
        proxy = ThreadedProxy(amqp_url) if via_proxy else None
        with tempfile.TemporaryDirectory(prefix="faults-") as run_dir:
            extra = {**FAST_RECOVERY, "HEARTBEAT_FILE": f"{run_dir}/heartbeat", **(env or {})}
            try:
                if proxy is not None:
                    proxy.start()
                config = StackConfig.on_free_ports(
                    Path(run_dir),
                    database_url,
                    proxy.url if proxy else amqp_url,
                    exchange=broker.exchange,
                    queue_prefix=broker.prefix,
                    approval_workers=workers,
                    extra_env=extra,
                )
                stack = Stack(config)
                try:
                    await asyncio.to_thread(stack.start, 90)
                    yield FaultStack(stack, database_url, amqp_url, proxy)
                except BaseException:
                    print(FaultStack(stack, database_url, amqp_url).log_tail())
                    raise
                finally:
                    await asyncio.to_thread(stack.stop)
            finally:
                if proxy is not None:
                    proxy.close()


# --- paying while things break --------------------------------------------------------------


async def persistently(call: Callable[[], Awaitable[T]], within: float = 30) -> T:
    """What a browser does when a page fails to load: try again (a fault may be in progress)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await call()
        except (httpx.HTTPError, AssertionError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


async def place_orders(buyer: Buyer, count: int, **body: Any) -> list[dict[str, Any]]:
    sku = await buyer.first_sku()
    return [
        await buyer.place_order(items=[{"sku": sku, "quantity": 1}], **body) for _ in range(count)
    ]


async def pay(buyer: Buyer, order: dict[str, Any], within: float = 30) -> None:
    """Authenticate in the PG window and follow the redirect to checkout, retrying both."""
    location = await persistently(lambda: buyer.authenticate(order), within)

    async def redirect() -> None:
        response = await buyer.follow_redirect(location)
        assert response.status_code in (200, 303), response.status_code

    await persistently(redirect, within)


async def pay_all(buyer: Buyer, orders: Iterable[dict[str, Any]], spread: float = 0.0) -> None:
    """Pay every order concurrently, the starts spread over ``spread`` seconds."""

    async def one(order: dict[str, Any]) -> None:
        await asyncio.sleep(random.uniform(0, spread))
        await pay(buyer, order)

    await asyncio.gather(*(one(order) for order in orders))


def presented(location: str, order: dict[str, Any]) -> PaymentAuthenticated:
    """The PaymentAuthenticated checkout would publish for this success redirect."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    return PaymentAuthenticated(
        correlation_id=order["orderId"],
        order_id=query["orderId"],
        payment_key=query["paymentKey"],
        amount=int(query["amount"]),
        payment_type=query.get("paymentType", "NORMAL"),
        received_at=utcnow(),
    )


async def publish_copies(fs: FaultStack, event: PaymentAuthenticated, copies: int) -> None:
    """The same event (same eventId) published ``copies`` times at once, straight to the broker."""
    connection = await aio_pika.connect(fs.amqp_url)
    async with connection:
        channel = await connection.channel()
        topo = topology(fs.config.events_exchange, fs.config.queue_prefix)
        publisher = Publisher(await declare_exchange(channel, topo))
        await asyncio.gather(*(publisher.publish_event(event) for _ in range(copies)))


# --- the faults -----------------------------------------------------------------------------


async def kill_random_worker(fs: FaultStack) -> str | None:
    """SIGKILL one running approval worker through supervisord (which starts it again); returns
    its name (None if none was running)."""
    running = [p for p in await fs.approval_workers() if p["statename"] == "RUNNING"]
    if not running:
        return None
    victim = random.choice(running)
    name = f"{victim['group']}:{victim['name']}"
    await asyncio.to_thread(fs.stack.supervisor().signalProcess, name, "KILL")
    return name


def failpoint_kills(fs: FaultStack) -> dict[str, int]:
    """How many times each failpoint fired (the workers log it just before dying)."""
    fired: dict[str, int] = {}
    for log in fs.logs.glob("approval-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if "failpoint: SIGKILL" in line:
                with contextlib.suppress(ValueError, KeyError):
                    point = json.loads(line)["point"]
                    fired[point] = fired.get(point, 0) + 1
    return fired


async def restart_private_broker(rabbit: RabbitServer, down_for: float = 1.0) -> float:
    """Stop a private RabbitMQ node (never the machine's shared broker: other suites and
    sessions use it) and start it again; returns once clients can connect again."""
    started = time.monotonic()
    await asyncio.to_thread(rabbit.stop)
    try:
        await asyncio.sleep(down_for)
    finally:
        await asyncio.to_thread(rabbit.start)
    return time.monotonic() - started


# --- the invariants -------------------------------------------------------------------------


class Expect(enum.Enum):
    PAID = "every order PAID"
    REFUNDED = "every order refunded at the PG and not PAID"
    EITHER = "each order either way"


@dataclass
class Snapshot:
    orders: dict[str, asyncpg.Record]
    ledger: dict[str, list[dict[str, Any]]]
    unsettled_attempts: list[asyncpg.Record]
    unsettled_refunds: list[asyncpg.Record]
    unpublished: dict[str, int]
    refunded: dict[str, int]  # by paymentKey: what approval's finished refunds gave back
    problems: list[str] = field(default_factory=list)

    @property
    def double_approvals(self) -> int:
        return sum(1 for ps in self.ledger.values() if sum(p["approvals"] for p in ps) > 1)


async def snapshot(fs: FaultStack, order_ids: list[str]) -> Snapshot:
    async with httpx.AsyncClient(base_url=fs.config.sandbox_url, timeout=10) as client:
        response = await client.get("/sandbox/ledger")
        response.raise_for_status()
    ledger: dict[str, list[dict[str, Any]]] = {order_id: [] for order_id in order_ids}
    for payment in response.json():
        if payment["orderId"] in ledger:
            ledger[payment["orderId"]].append(payment)
    async with fs.connection() as conn:
        orders = await conn.fetch(
            "SELECT order_id, status, payment_key, payment_status, refunded_amount"
            " FROM orders.orders"
            " WHERE order_id = ANY($1::text[])",
            order_ids,
        )
        attempts = await conn.fetch(
            "SELECT payment_key, order_id, state, tries, pg_message FROM approval.payment_attempts"
            " WHERE state = ANY($1::text[])",
            list(UNSETTLED_ATTEMPTS),
        )
        refunds = await conn.fetch(
            "SELECT refund_id, order_id, state FROM approval.refunds WHERE state = ANY($1::text[])",
            list(UNSETTLED_REFUNDS),
        )
        refunded = await conn.fetch(
            "SELECT payment_key, sum(refunded_amount)::bigint AS refunded FROM approval.refunds"
            " WHERE state = 'SUCCEEDED' AND order_id = ANY($1::text[]) GROUP BY payment_key",
            order_ids,
        )
        unpublished = {
            schema: await conn.fetchval(
                f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL"
            )
            for schema in SCHEMAS_WITH_OUTBOX
        }
    return Snapshot(
        {row["order_id"]: row for row in orders},
        ledger,
        attempts,
        refunds,
        unpublished,
        {row["payment_key"]: row["refunded"] for row in refunded},
    )


def judge(snap: Snapshot) -> list[str]:
    """Every way the snapshot breaks the invariants (empty: the money is right)."""
    problems = [f"{order_id}: {p}" for order_id in snap.ledger for p in _judge(snap, order_id)]
    problems += [
        f"attempt left {a['state']} ({a['tries']} tries, {a['pg_message']}): {a['payment_key']}"
        for a in snap.unsettled_attempts
    ]
    problems += [f"refund left {r['state']}: {r['refund_id']}" for r in snap.unsettled_refunds]
    problems += [f"{n} unpublished events in {s}" for s, n in snap.unpublished.items() if n]
    return problems


# The order holds money from the PG (all of it, or what is left after partial refunds).
HOLDING = frozenset({"PAID", "PARTIALLY_REFUNDED"})


def _judge(snap: Snapshot, order_id: str) -> list[str]:
    order = snap.orders.get(order_id)
    if order is None:
        return ["no such order"]
    payments = snap.ledger[order_id]
    approvals = sum(p["approvals"] for p in payments)
    kept = [p for p in payments if p["approvals"] and p["status"] != "CANCELED"]
    holding = order["status"] in HOLDING
    problems = []
    if approvals > 1:
        problems.append(f"{approvals} approvals at the PG")
    if order["status"] == "REFUND_PENDING":
        problems.append("a refund still pending")
    if holding != (len(kept) == 1):
        problems.append(f"order {order['status']} but {len(kept)} unrefunded approvals")
    if holding and kept and order["payment_key"] != kept[0]["paymentKey"]:
        problems.append("order PAID by another paymentKey than the PG's approval")
    problems += _refunds_agree(order, payments)
    problems += _refunds_recorded(snap, payments)
    for p in payments:
        # The payment's own key, or a later generation of it (after a refusal for our own
        # configuration, which the PG never processed): always derived from the payment.
        key = p["lastConfirmIdempotencyKey"]
        own = confirm_idempotency_key(p["paymentKey"])
        if key is not None and key != own and not key.startswith(f"{own}-g"):
            problems.append(f"confirm with a foreign idempotency key {key}")
    return problems


def _refunds_recorded(snap: Snapshot, payments: list[dict[str, Any]]) -> list[str]:
    """Approval's refunds of each approved payment add up to what the PG gave back of it (a
    cancel sent twice shows here, even where the order follows the PG's balance)."""
    problems = []
    for p in payments:
        given_back = p["totalAmount"] - p["balanceAmount"] if p["approvals"] else 0
        recorded = snap.refunded.get(p["paymentKey"], 0)
        if given_back != recorded:
            key = p["paymentKey"]
            problems.append(f"the PG gave back {given_back} of {key}, our refunds {recorded}")
    return problems


def _refunds_agree(order: asyncpg.Record, payments: list[dict[str, Any]]) -> list[str]:
    """A refunded order's books say what the PG gave back of its own payment."""
    if order["status"] not in ("PARTIALLY_REFUNDED", "REFUNDED"):
        return []
    own = [p for p in payments if p["paymentKey"] == order["payment_key"]]
    given_back = own[0]["totalAmount"] - own[0]["balanceAmount"] if own else 0
    if given_back != order["refunded_amount"]:
        return [f"refunded {order['refunded_amount']} in our books, {given_back} at the PG"]
    return []


async def assert_money_is_right(
    fs: FaultStack, orders: Iterable[dict[str, Any]], expect: Expect, within: float = 45
) -> Snapshot:
    """Wait until every order settled and nothing is pending, then hold the invariants (and
    ``expect``) against the ledger; fails with every problem found at the deadline."""
    order_ids = [order["orderId"] for order in orders]
    deadline = time.monotonic() + within
    while True:
        snap = await snapshot(fs, order_ids)
        snap.problems = judge(snap) + _expectation(snap, expect) + await dead_letters(fs)
        if not snap.problems:
            return snap
        if time.monotonic() > deadline:
            listed = "\n  ".join(snap.problems[:40])
            kept = Path(tempfile.mkdtemp(prefix="faults-logs-"))
            shutil.copytree(fs.logs, kept, dirs_exist_ok=True)
            raise AssertionError(f"money is not right after {within}s (logs: {kept}):\n  {listed}")
        await asyncio.sleep(0.5)


async def dead_letters(fs: FaultStack) -> list[str]:
    """A dead-lettered event waits for a person: under faults alone there must be none."""
    topology = shared_topology.topology(fs.config.events_exchange, fs.config.queue_prefix)
    connection = await aio_pika.connect(fs.amqp_url)
    async with connection:
        found = []
        for subscription in topology.subscriptions:
            letters = await list_dead_letters(connection, topology, subscription, limit=20)
            found += [f"dead letter in {subscription.name}: {letter}" for letter in letters]
        return found


def _expectation(snap: Snapshot, expect: Expect) -> list[str]:
    problems = []
    for order_id, order in snap.orders.items():
        payments = snap.ledger[order_id]
        if expect is Expect.PAID and order["status"] != "PAID":
            problems.append(f"{order_id}: order {order['status']}, expected PAID")
        if expect is Expect.REFUNDED and (
            order["status"] == "PAID"
            or not payments
            or any(p["approvals"] and p["status"] != "CANCELED" for p in payments)
            or order["payment_status"] != "REFUNDED"
        ):
            statuses = [p["status"] for p in payments]
            problems.append(
                f"{order_id}: order {order['status']}/{order['payment_status']}, PG {statuses},"
                " expected refunded"
            )
    return problems
