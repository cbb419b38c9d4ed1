"""The operator console: who gets in, what a page shows (and never shows), and what its buttons
do, through the operator commands' own functions, audited."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY

from services.approval.domain import cancel_idempotency_key
from services.ops import repository
from shared.topology import ORDER_PAYMENT_RESULTS
from tests.integration.ops.conftest import OPERATOR_IP, PASSWORD, USER, Ops, authenticated
from tests.integration.shared.helpers import eventually, ready_count
from tests.plans import generic_plan


async def test_the_console_answers_401_and_a_basic_challenge_without_credentials(ops: Ops) -> None:
    response = await ops.client.get("/ops/")

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Basic realm="operator console"')
    assert "needs the operator" in response.text


async def test_the_console_answers_401_with_wrong_credentials(ops: Ops) -> None:
    wrong_password = await ops.client.get("/ops/", auth=(USER, PASSWORD + "x"))
    wrong_user = await ops.client.get("/ops/", auth=("admin", PASSWORD))

    assert wrong_password.status_code == 401
    assert wrong_user.status_code == 401


async def test_the_console_answers_200_with_the_operators_credentials(ops: Ops) -> None:
    response = await ops.client.get("/ops/", auth=(USER, PASSWORD))

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    for section in ("payments", "stuck", "refunds", "dead-letters", "reconciliation", "security"):
        assert f'id="{section}"' in response.text


async def test_a_console_without_configured_credentials_is_closed_to_everyone(closed: Ops) -> None:
    anonymous = await closed.client.get("/ops/")
    guessing = await closed.client.get("/ops/", auth=("operator", ""))
    posting = await closed.client.post("/ops/refunds/rf_1/retry", auth=("operator", ""))

    assert [r.status_code for r in (anonymous, guessing, posting)] == [403, 403, 403]
    assert "console is closed" in anonymous.text
    assert "OPERATOR_PASSWORD" in anonymous.text


async def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(ops: Ops) -> None:
    refund_id = await ops.failed_refund()
    await ops.csrf()  # the cookie is there; the form field is not

    response = await ops.post(f"/ops/refunds/{refund_id}/retry", {})

    assert response.status_code == 403
    assert "security token" in response.text
    assert (await ops.refund(refund_id))["state"] == "FAILED"
    assert await ops.audit() == []


async def test_a_post_with_a_token_that_is_not_the_cookies_is_refused(ops: Ops) -> None:
    refund_id = await ops.failed_refund()
    await ops.csrf()

    response = await ops.post(f"/ops/refunds/{refund_id}/retry", {"csrf": "0" * 48})

    assert response.status_code == 403
    assert (await ops.refund(refund_id))["state"] == "FAILED"


async def test_a_post_from_another_origin_is_refused_and_changes_nothing(ops: Ops) -> None:
    refund_id = await ops.failed_refund()
    token = await ops.csrf()

    response = await ops.post(
        f"/ops/refunds/{refund_id}/retry", {"csrf": token}, Origin="https://evil.example"
    )

    assert response.status_code == 403
    assert "own page" in response.text
    assert (await ops.refund(refund_id))["state"] == "FAILED"
    assert await ops.audit() == []


async def test_a_refund_retry_goes_through_the_clis_function_and_is_audited(ops: Ops) -> None:
    refund_id = await ops.failed_refund()
    token = await ops.csrf()

    response = await ops.post(f"/ops/refunds/{refund_id}/retry", {"csrf": token})

    assert response.status_code == 200, response.text
    assert "will be asked again" in response.text
    # What `python -m services.approval refunds retry ID` does: REQUESTED under the next key.
    assert await ops.refund(refund_id) == {
        "state": "REQUESTED",
        "generation": 1,
        "idempotency_key": cancel_idempotency_key(refund_id, 1),
    }
    [audited] = await ops.audit()
    assert audited == {
        "operator": USER,
        "action": "refund.retry",
        "target": refund_id,
        "result": "done",
        "detail": f"Refund {refund_id} will be asked again.",
        "client_ip": OPERATOR_IP,
    }


async def test_retrying_a_refund_that_is_not_failed_is_refused_and_audited(ops: Ops) -> None:
    refund_id = await ops.failed_refund()
    token = await ops.csrf()
    await ops.post(f"/ops/refunds/{refund_id}/retry", {"csrf": token})

    again = await ops.post(f"/ops/refunds/{refund_id}/retry", {"csrf": token})

    assert again.status_code == 409
    assert "is REQUESTED, not FAILED" in again.text
    assert (await ops.refund(refund_id))["generation"] == 1
    assert [row["result"] for row in await ops.audit()] == ["done", "refused"]


async def test_retrying_an_unknown_refund_is_a_404_that_names_it(ops: Ops) -> None:
    token = await ops.csrf()

    response = await ops.post("/ops/refunds/rf_nobody/retry", {"csrf": token})

    assert response.status_code == 404
    assert "There is no refund rf_nobody." in response.text


async def test_a_dead_letter_replay_republishes_the_message_and_is_audited(ops: Ops) -> None:
    event = authenticated(f"tpk_{uuid.uuid4().hex}")
    await ops.dead_letter(event, "PermanentFailure: no such order")
    topology = ops.broker.topology
    dlq, queue = (
        topology.dead_letter_queue(ORDER_PAYMENT_RESULTS),
        topology.queue(ORDER_PAYMENT_RESULTS),
    )
    await eventually(lambda: _has(ops, dlq, 1))
    page = await ops.client.get("/ops/", auth=(USER, PASSWORD))
    assert str(event.event_id) in page.text
    assert "no such order" in page.text
    token = ops.client.cookies["ops_csrf"]

    response = await ops.post(
        "/ops/dead-letters/replay",
        {"csrf": token, "queue": ORDER_PAYMENT_RESULTS.name, "message_id": str(event.event_id)},
    )

    assert response.status_code == 200, response.text
    await eventually(lambda: _has(ops, queue, 1))
    await eventually(lambda: _has(ops, dlq, 0))
    message = await (await ops.channel.get_queue(queue)).get(no_ack=True)
    assert message.message_id == str(event.event_id)
    assert message.body == event.to_bytes()
    [audited] = await ops.audit()
    assert audited["action"] == "dead-letter.replay"
    assert audited["target"] == f"{dlq}/{event.event_id}"
    assert audited["result"] == "done"
    assert audited["operator"] == USER


async def test_replaying_a_message_that_is_not_there_is_a_404_and_audited(ops: Ops) -> None:
    token = await ops.csrf()

    response = await ops.post(
        "/ops/dead-letters/replay",
        {"csrf": token, "queue": ORDER_PAYMENT_RESULTS.name, "message_id": str(uuid.uuid4())},
    )

    assert response.status_code == 404
    assert [row["result"] for row in await ops.audit()] == ["refused"]


async def test_replaying_from_an_unknown_queue_is_a_400_that_changes_nothing(ops: Ops) -> None:
    token = await ops.csrf()

    response = await ops.post(
        "/ops/dead-letters/replay", {"csrf": token, "queue": "no.such", "message_id": "m-1"}
    )
    missing = await ops.post("/ops/dead-letters/replay", {"csrf": token, "queue": "no.such"})

    assert response.status_code == 400
    assert "there is no queue named no.such" in response.text
    assert missing.status_code == 400
    assert "message id is missing" in missing.text
    assert await ops.audit() == []


async def test_pages_show_stuck_payments_with_their_age_and_last_pg_answer(ops: Ops) -> None:
    await ops.attempt("UNKNOWN", age_seconds=3600)

    page = (await ops.client.get("/ops/", auth=(USER, PASSWORD))).text

    stuck = page.split('id="stuck"')[1].split("</section>")[0]
    assert "UNKNOWN" in stuck
    assert "60 min" in stuck
    assert "read timeout" in stuck


async def test_the_in_flight_list_is_read_through_the_unsettled_index_on_a_generic_plan(
    ops: Ops,
) -> None:
    async with ops.db.acquire() as conn:
        plan = await generic_plan(conn, repository.IN_FLIGHT, ("int",), ("20",))
    assert "payment_attempts_unsettled" in plan


async def test_pages_never_contain_a_full_payment_key(ops: Ops) -> None:
    stuck = await ops.attempt("UNKNOWN", age_seconds=3600)
    in_flight = await ops.attempt("CONFIRMING", age_seconds=5)
    refunded = f"tpk_{uuid.uuid4().hex}"
    await ops.failed_refund(payment_key=refunded)
    dead = f"tpk_{uuid.uuid4().hex}"
    await ops.dead_letter(authenticated(dead), f"UniqueViolation: Key (payment_key)=({dead})")
    replayed = await ops.attempt("REJECTED", age_seconds=5)
    await ops.db.execute(
        "INSERT INTO security_events (kind, order_id, payment_key, expected, presented)"
        " VALUES ('ALREADY_PAID', 'order-1', $1, $2, $1)",
        replayed,
        stuck,
    )
    await eventually(
        lambda: _has(ops, ops.broker.topology.dead_letter_queue(ORDER_PAYMENT_RESULTS), 1)
    )

    page = (await ops.client.get("/ops/", auth=(USER, PASSWORD))).text

    for shown in ("ALREADY_PAID", "UNKNOWN", "CONFIRMING"):
        assert shown in page
    for key in (stuck, in_flight, refunded, dead, replayed):
        assert key not in page
    assert f"{stuck[:4]}…{stuck[-4:]}" in page


async def test_what_a_page_shows_is_escaped(ops: Ops) -> None:
    refund_id = await ops.failed_refund()
    await ops.db.execute(
        "UPDATE refunds SET pg_message = '<script>alert(1)</script>' WHERE refund_id = $1",
        refund_id,
    )

    page = (await ops.client.get("/ops/", auth=(USER, PASSWORD))).text

    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def _has(ops: Ops, queue: str, count: int) -> bool:
    return await ready_count(ops.channel, queue) == count


async def test_the_page_still_shows_the_database_when_the_broker_is_gone(ops: Ops) -> None:
    await ops.failed_refund()
    await ops.console.broker.close()

    response = await ops.client.get("/ops/", auth=(USER, PASSWORD))

    assert response.status_code == 200
    assert "not readable" in response.text
    assert "NOT_CANCELABLE_PAYMENT" in response.text


async def test_a_replay_without_the_broker_is_a_503_audited_as_failed(ops: Ops) -> None:
    token = await ops.csrf()
    await ops.console.broker.close()

    response = await ops.post(
        "/ops/dead-letters/replay",
        {"csrf": token, "queue": ORDER_PAYMENT_RESULTS.name, "message_id": str(uuid.uuid4())},
    )

    assert response.status_code == 503
    assert "broker refused the replay" in response.text
    assert [row["result"] for row in await ops.audit()] == ["failed"]


async def test_the_consoles_requests_are_counted_in_its_http_metrics(ops: Ops) -> None:
    labels = {"handler": "/ops/", "method": "GET", "status": "2xx"}
    before = REGISTRY.get_sample_value("http_requests_total", labels) or 0.0

    assert (await ops.client.get("/ops/", auth=(USER, PASSWORD))).status_code == 200

    assert REGISTRY.get_sample_value("http_requests_total", labels) == before + 1
