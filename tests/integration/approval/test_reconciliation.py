"""Reconciling a day of the PG's transactions with our books: what it finds, heals and reports."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from pathlib import Path

import orjson
from prometheus_client import REGISTRY

from services.approval.bootstrap import Worker
from services.approval.metrics import RECONCILIATION_UNRESOLVED
from services.approval.reconciliation import (
    KST,
    Daily,
    Kind,
    Reconciliation,
    Report,
    latest_run_probe,
    reconcile_and_keep,
)
from shared.events import PaymentApproved, PaymentRefunded
from tests.integration.approval.conftest import Approval, eventually, order_placed


def today() -> datetime:
    return datetime.now(UTC)


async def reconcile(approval: Approval, worker: Worker, page: int = 1000) -> Report:
    reconciliation = Reconciliation(approval.db, worker.gateway, worker.sync, page=page)
    return await reconciliation.run(today().astimezone(KST).date(), today())


async def paid(approval: Approval) -> tuple[str, str]:
    order = order_placed()
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    authenticated = approval.authenticated(order)
    await approval.publish(authenticated)
    await approval.next_output(PaymentApproved)
    return order.order_id, authenticated.payment_key


async def test_a_day_that_agrees_finds_nothing_across_pages(approval: Approval) -> None:
    worker = await approval.start_worker()
    for _ in range(3):
        await paid(approval)

    report = await reconcile(approval, worker, page=2)

    assert (report.transactions, report.approvals, report.cancels) == (3, 3, 0)
    assert not report.found


async def test_an_approval_whose_webhook_never_came_is_healed(approval: Approval) -> None:
    worker = await approval.start_worker()
    order = order_placed()
    await approval.publish(order)
    await approval.intent_known(order.order_id)
    payment_key = f"pk_{uuid.uuid4().hex}"
    approval.pg.authenticate(payment_key, order.order_id, order.amount)
    approval.pg.complete(payment_key)  # confirmed by hand; its webhook was lost

    report = await reconcile(approval, worker)

    assert report.found == {Kind.MISSING_OURS: 1}
    assert report.healed == {Kind.MISSING_OURS: 1}
    assert report.unresolved_total == 0
    approved = await approval.next_output(PaymentApproved)
    assert approved.payment_key == payment_key


async def test_a_console_cancel_nobody_told_us_about_is_healed(approval: Approval) -> None:
    worker = await approval.start_worker()
    _, payment_key = await paid(approval)
    approval.pg.console_cancel(payment_key, 5_000)

    report = await reconcile(approval, worker)

    assert report.healed == {Kind.REFUNDED_DIFFERS: 1}
    assert report.unresolved_total == 0
    refunded = await approval.next_output(PaymentRefunded)
    assert (refunded.refunded_amount, refunded.balance_amount) == (5_000, 45_000)


async def test_an_approval_for_an_order_we_never_had_stays_unresolved(approval: Approval) -> None:
    worker = await approval.start_worker()
    payment_key = f"pk_{uuid.uuid4().hex}"
    approval.pg.authenticate(payment_key, "order-of-someone-else", 10_000)
    approval.pg.complete(payment_key)

    report = await reconcile(approval, worker)

    assert report.unresolved == {Kind.MISSING_OURS: 1}
    [detail] = report.details
    assert (detail.payment_key, detail.note) == (
        payment_key,
        "approved at the PG for an order we never had",
    )


async def test_an_approval_of_ours_the_pg_does_not_have_stays_unresolved(
    approval: Approval,
) -> None:
    worker = await approval.start_worker()
    _, payment_key = await paid(approval)
    approval.pg.journal.clear()  # the PG's books lost it
    approval.pg.ledger[payment_key].status = "ABORTED"

    report = await reconcile(approval, worker)

    assert report.unresolved == {Kind.MISSING_AT_PG: 1}


async def test_a_run_is_kept_in_the_database_and_as_a_json_report(
    approval: Approval, tmp_path: Path
) -> None:
    worker = await approval.start_worker()
    payment_key = f"pk_{uuid.uuid4().hex}"
    approval.pg.authenticate(payment_key, "order-of-someone-else", 10_000)
    approval.pg.complete(payment_key)
    reconciliation = Reconciliation(approval.db, worker.gateway, worker.sync)

    done = await reconcile_and_keep(
        approval.db, reconciliation, today().astimezone(KST).date(), "manual", tmp_path
    )

    assert done is not None
    report, path = done
    kept = orjson.loads(path.read_bytes())
    assert kept["unresolvedTotal"] == 1
    assert kept["discrepancies"][0]["paymentKey"] == payment_key
    row = await approval.db.fetchrow(
        "SELECT unresolved, report->>'day' AS day FROM reconciliation_runs"
    )
    assert row is not None
    assert (row["unresolved"], row["day"]) == (1, report.day.isoformat())


async def test_the_daily_run_of_a_day_is_claimed_by_one_worker_only(
    approval: Approval, tmp_path: Path
) -> None:
    first = await approval.start_worker()
    second = await approval.start_worker()
    day = today().astimezone(KST).date()
    runs = [
        await reconcile_and_keep(
            approval.db, Reconciliation(approval.db, w.gateway, w.sync), day, "daily", tmp_path
        )
        for w in (first, second)
    ]

    assert runs[0] is not None
    assert runs[1] is None

    async def one_kept() -> bool:
        return bool(await approval.db.fetchval("SELECT count(*) FROM reconciliation_runs") == 1)

    await eventually(one_kept)


async def test_the_daily_run_reconciles_yesterday_once_its_time_has_come(
    approval: Approval, tmp_path: Path
) -> None:
    worker = await approval.start_worker()
    reconciliation = Reconciliation(approval.db, worker.gateway, worker.sync)
    daily = Daily(approval.db, reconciliation, time(0, 30), tmp_path)
    early = datetime(2026, 12, 2, 0, 10, tzinfo=KST)
    due = datetime(2026, 12, 2, 0, 31, tzinfo=KST)

    assert await daily.run_due(early) is None
    report = await daily.run_due(due)
    again = await daily.run_due(due)

    assert report is not None
    assert report.day == date(2026, 12, 1)
    assert again is None  # claimed: never twice
    assert len(reports_of(tmp_path, "2026-12-01")) == 1


def reports_of(directory: Path, day: str) -> list[Path]:
    return list(directory.glob(f"reconciliation-{day}-*.json"))


async def test_every_worker_exports_the_latest_runs_unresolved_discrepancies(
    approval: Approval, tmp_path: Path
) -> None:
    worker = await approval.start_worker()
    payment_key = f"pk_{uuid.uuid4().hex}"
    approval.pg.authenticate(payment_key, "order-of-someone-else", 10_000)
    approval.pg.complete(payment_key)
    reconciliation = Reconciliation(approval.db, worker.gateway, worker.sync)
    await reconcile_and_keep(
        approval.db, reconciliation, today().astimezone(KST).date(), "manual", tmp_path
    )
    RECONCILIATION_UNRESOLVED.labels(Kind.MISSING_OURS.value).set(0)  # another worker's view

    await latest_run_probe(approval.db)()

    assert (
        REGISTRY.get_sample_value(
            "approval_reconciliation_unresolved", {"kind": Kind.MISSING_OURS.value}
        )
        == 1
    )
    assert (
        REGISTRY.get_sample_value(
            "approval_reconciliation_unresolved", {"kind": Kind.AMOUNT_DIFFERS.value}
        )
        == 0
    )
