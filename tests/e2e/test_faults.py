"""Exactly once under faults: the real processes, broken for real, and the ledger still agrees.

Each group runs on a private stack (``faults.fault_stack``) so that killing things never disturbs
the other e2e tests, and each test ends with :func:`faults.assert_money_is_right`: every order is
PAID exactly when the PG holds exactly one (unrefunded) approval for it, no order is approved
twice, every confirm carried the payment's one idempotency key, and nothing is left pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from deploy.servers import RabbitServer, private_rabbitmq
from tests.e2e import faults
from tests.e2e.buyer import Buyer
from tests.e2e.faults import Expect, FaultStack

pytestmark = pytest.mark.e2e

PAYMENTS = 24


@contextlib.asynccontextmanager
async def buying(fs: FaultStack) -> AsyncIterator[Buyer]:
    async with Buyer.for_stack(fs.config) as buyer:
        try:
            yield buyer
        finally:
            await fs.no_faults()


async def repeatedly(
    fault: Callable[[], Awaitable[object]], times: int, every: float
) -> list[object]:
    """Inflict ``fault`` ``times`` times, ``every`` seconds apart; returns what each returned."""
    done = []
    for _ in range(times):
        await asyncio.sleep(every)
        done.append(await fault())
    return done


# Each group of tests gets its own stack, torn down when the group is done.


@pytest.fixture(scope="class")
async def chaos_stack(postgres_admin_dsn: str, amqp_url: str) -> AsyncIterator[FaultStack]:
    """Three approval workers; every process reaches RabbitMQ through a proxy the test cuts."""
    async with faults.fault_stack(postgres_admin_dsn, amqp_url, via_proxy=True) as stack:
        yield stack


FAILPOINTS = "after_verify=0.15,after_confirming=0.15,after_pg_answer=0.15,before_ack=0.15"


@pytest.fixture(scope="class")
async def failpoint_stack(postgres_admin_dsn: str, amqp_url: str) -> AsyncIterator[FaultStack]:
    """Three approval workers that SIGKILL themselves at random steps of the state machine."""
    env = {"APPROVAL_FAILPOINTS": FAILPOINTS}
    async with faults.fault_stack(postgres_admin_dsn, amqp_url, env=env) as stack:
        yield stack


@pytest.fixture(scope="class")
async def expiry_stack(postgres_admin_dsn: str, amqp_url: str) -> AsyncIterator[FaultStack]:
    """Orders that live 6 s, swept every 0.3 s."""
    env = {
        "ORDER_TTL_SECONDS": "6",
        "ORDER_EXPIRY_GRACE_SECONDS": "0",
        "EXPIRY_SWEEP_INTERVAL_SECONDS": "0.3",
        "PG_READ_TIMEOUT_SECONDS": "15",
        "PG_CALL_DEADLINE_SECONDS": "15",
    }
    async with faults.fault_stack(postgres_admin_dsn, amqp_url, workers=2, env=env) as stack:
        yield stack


class TestAStackUnderFaults:
    """Three approval workers; every process reaches RabbitMQ through a proxy the test cuts."""

    async def test_workers_sigkilled_while_payments_are_in_flight_charge_each_order_once(
        self, chaos_stack: FaultStack
    ) -> None:
        async with buying(chaos_stack) as buyer:
            orders = await faults.place_orders(buyer, PAYMENTS)
            kills = repeatedly(lambda: faults.kill_random_worker(chaos_stack), times=4, every=0.7)

            _, killed = await asyncio.gather(faults.pay_all(buyer, orders, spread=3.0), kills)

            assert all(killed), killed
            await faults.assert_money_is_right(chaos_stack, orders, Expect.PAID)
            await chaos_stack.wait_workers_running()

    async def test_approvals_whose_answer_is_lost_are_settled_by_asking_the_pg(
        self, chaos_stack: FaultStack
    ) -> None:
        async with buying(chaos_stack) as buyer:
            await chaos_stack.faults(dropResponseRate=1)
            orders = await faults.place_orders(buyer, PAYMENTS)

            await faults.pay_all(buyer, orders)

            snap = await faults.assert_money_is_right(chaos_stack, orders, Expect.PAID)
            assert all(p["status"] == "DONE" for ps in snap.ledger.values() for p in ps)

    async def test_confirms_slower_than_the_client_timeout_are_settled_by_asking_the_pg(
        self, chaos_stack: FaultStack
    ) -> None:
        async with buying(chaos_stack) as buyer:
            await chaos_stack.faults(confirmLatencyMs=2500)  # PG_READ_TIMEOUT_SECONDS is 1
            orders = await faults.place_orders(buyer, PAYMENTS)

            await faults.pay_all(buyer, orders)

            await faults.assert_money_is_right(chaos_stack, orders, Expect.PAID)

    async def test_an_authentication_delivered_five_times_at_once_is_confirmed_once(
        self, chaos_stack: FaultStack
    ) -> None:
        async with buying(chaos_stack) as buyer:
            orders = await faults.place_orders(buyer, 8)
            locations = [await buyer.authenticate(order) for order in orders]
            events = [faults.presented(loc, o) for loc, o in zip(locations, orders, strict=True)]

            await asyncio.gather(
                *(faults.publish_copies(chaos_stack, event, 5) for event in events)
            )

            snap = await faults.assert_money_is_right(chaos_stack, orders, Expect.PAID)
            assert all(p["approvals"] == 1 for ps in snap.ledger.values() for p in ps)

    async def test_the_broker_connection_cut_mid_flow_loses_and_doubles_nothing(
        self, chaos_stack: FaultStack
    ) -> None:
        assert chaos_stack.proxy is not None
        proxy = chaos_stack.proxy

        async def outage() -> None:
            await proxy.cut()
            await asyncio.sleep(3)
            await proxy.restore()

        async with buying(chaos_stack) as buyer:
            orders = await faults.place_orders(buyer, PAYMENTS)
            connected = proxy.connections

            await asyncio.gather(
                faults.pay_all(buyer, orders, spread=4.0), repeatedly(outage, times=2, every=0.5)
            )

            await faults.assert_money_is_right(chaos_stack, orders, Expect.PAID)
            assert proxy.connections > connected  # every process reconnected by itself

    async def test_database_backends_terminated_mid_flight_lose_and_double_nothing(
        self, chaos_stack: FaultStack
    ) -> None:
        async with buying(chaos_stack) as buyer:
            orders = await faults.place_orders(buyer, PAYMENTS)

            _, terminated = await asyncio.gather(
                faults.pay_all(buyer, orders, spread=3.0),
                repeatedly(chaos_stack.terminate_backends, times=4, every=0.8),
            )

            assert all(terminated), terminated
            await faults.assert_money_is_right(chaos_stack, orders, Expect.PAID)
            await chaos_stack.wait_workers_running()


@pytest.fixture
def rabbit() -> Iterator[RabbitServer]:
    """A private RabbitMQ node (never the machine's shared broker: others use it)."""
    with (
        tempfile.TemporaryDirectory(prefix="faults-rabbitmq-") as base,
        private_rabbitmq(Path(base)) as node,
    ):
        yield node


class TestBrokerRestart:
    """A private RabbitMQ node of the test's own, restarted mid-flow."""

    async def test_a_broker_restart_mid_flow_loses_and_doubles_nothing(
        self, rabbit: RabbitServer, postgres_admin_dsn: str
    ) -> None:
        async with (
            faults.fault_stack(postgres_admin_dsn, rabbit.url) as fs,
            buying(fs) as buyer,
        ):
            orders = await faults.place_orders(buyer, PAYMENTS)

            async def restart() -> None:
                await asyncio.sleep(0.5)
                await faults.restart_private_broker(rabbit)

            await asyncio.gather(faults.pay_all(buyer, orders, spread=2.0), restart())

            await faults.assert_money_is_right(fs, orders, Expect.PAID, within=60)


class TestWorkersKilledAtEachStep:
    """Failpoints SIGKILL approval workers between the steps of the state machine."""

    async def test_a_worker_killed_at_every_step_loses_and_doubles_nothing(
        self, failpoint_stack: FaultStack
    ) -> None:
        points = {"after_verify", "after_confirming", "after_pg_answer", "before_ack"}
        paid: list[dict[str, object]] = []
        async with buying(failpoint_stack) as buyer:
            # Until every step has seen a kill (bounded): the failpoints are random.
            while len(paid) < 40 and (
                len(paid) < 20 or set(faults.failpoint_kills(failpoint_stack)) < points
            ):
                orders = await faults.place_orders(buyer, 10)
                await faults.pay_all(buyer, orders, spread=1.0)
                await faults.assert_money_is_right(failpoint_stack, orders, Expect.PAID, within=60)
                paid += orders

        await faults.assert_money_is_right(failpoint_stack, paid, Expect.PAID)
        kills = faults.failpoint_kills(failpoint_stack)
        print(f"{len(paid)} payments, failpoint kills: {kills}")
        assert set(kills) == points, kills
        await failpoint_stack.wait_workers_running()


class TestAnOrderWhoseTimeRunsOutWhileItsPaymentIsApproved:
    """Orders live 6 s and the PG takes 9 s to confirm."""

    async def test_is_paid_not_expired_while_its_payment_is_being_settled(
        self, expiry_stack: FaultStack
    ) -> None:
        async with buying(expiry_stack) as buyer:
            await expiry_stack.faults(confirmLatencyMs=9000)
            orders = await faults.place_orders(buyer, 3, points=500)

            await faults.pay_all(buyer, orders)

            snap = await faults.assert_money_is_right(expiry_stack, orders, Expect.PAID, within=40)
            assert all(p["approvals"] == 1 for ps in snap.ledger.values() for p in ps)

    async def test_canceled_meanwhile_is_refunded_at_the_pg_with_its_points_and_coupon_back(
        self, expiry_stack: FaultStack
    ) -> None:
        async with buying(expiry_stack) as buyer:
            before = (await buyer.gateway.get("/api/me")).json()
            coupon = before["coupons"][0]["code"]
            await expiry_stack.faults(confirmLatencyMs=9000)
            sku = await buyer.first_sku()
            order = await buyer.place_order(
                items=[{"sku": sku, "quantity": 1}], couponCode=coupon, points=1000
            )

            await faults.pay(buyer, order)
            await asyncio.sleep(1)  # the confirm is under way
            canceled = await buyer.gateway.post(
                f"/api/orders/{order['orderId']}/cancel", json={"reason": "changed my mind"}
            )
            assert canceled.json()["status"] == "CANCELED"

            snap = await faults.assert_money_is_right(
                expiry_stack, [order], Expect.REFUNDED, within=40
            )
            assert all(p["approvals"] == 1 for ps in snap.ledger.values() for p in ps)
            after = (await buyer.gateway.get("/api/me")).json()
            assert after["pointsBalance"] == before["pointsBalance"]
            assert coupon in {c["code"] for c in after["coupons"]}
