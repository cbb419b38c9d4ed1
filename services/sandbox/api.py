"""The PG API (``/v1/…``) and the sandbox's own JSON endpoints (console, ledger, faults,
scripts, webhook registration, generator).

Routes translate HTTP into calls of :mod:`services.sandbox.service` and answers back; every
error leaves in the PG's shape ``{"code", "message"}`` with the contract's status.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.sandbox import domain, service
from services.sandbox.domain import IdempotencySlot
from services.sandbox.errors import PgError, wants_english
from services.sandbox.faults import Faults, parse_script
from services.sandbox.metrics import CONFIRMS
from services.sandbox.service import Reply, Sandbox

log = logging.getLogger(__name__)

JSON = "application/json"
# Set by a route on a response that must never reach the caller (see DropResponseMiddleware).
DROP_HEADER = b"x-sandbox-drop-response"
MAX_BODY = 64 * 1024


async def get_sandbox(request: Request) -> Sandbox:
    sandbox: Sandbox = request.app.state.sandbox
    return sandbox


SandboxDep = Annotated[Sandbox, Depends(get_sandbox)]


async def get_secret_key(request: Request) -> str:
    """The caller's secret key, from Basic auth; raises 401/403 in the PG's shape.

    With a test key, a ``TossPayments-Test-Code`` header answers that code's error instead.
    """
    known: frozenset[str] = request.app.state.secret_keys
    key = domain.secret_key_from_basic_auth(request.headers.get("authorization"), known)
    if error := domain.test_code_error(key, request.headers.get("tosspayments-test-code")):
        raise error
    return key


SecretKeyDep = Annotated[str, Depends(get_secret_key)]


def english(request: Request) -> bool:
    return wants_english(request.headers.get("accept-language"))


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON)


def reply_response(reply: Reply) -> Response:
    response = Response(reply.body, status_code=reply.status, media_type=JSON)
    if reply.drop:
        response.raw_headers.append((DROP_HEADER, b"1"))
    return response


async def json_body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise PgError("INVALID_REQUEST", "body too large")
    try:
        return orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise PgError("INVALID_REQUEST", "the body is not valid JSON") from None


def idempotency_slot(request: Request, secret_key: str) -> IdempotencySlot | None:
    """The identity of an idempotent POST: Idempotency-Key + secret key + method + path."""
    key = domain.check_idempotency_key(request.headers.get("idempotency-key"))
    if key is None:
        return None
    return IdempotencySlot(key, domain.secret_digest(secret_key), request.method, request.url.path)


router = APIRouter()


@router.get("/healthz")
async def healthz(sandbox: SandboxDep) -> Response:
    async with sandbox.pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
    return json_response({"status": "ok"})


# ---------------------------------------------------------------- the PG API (/v1)


@router.post("/v1/payments/confirm")
async def confirm(request: Request, sandbox: SandboxDep, secret_key: SecretKeyDep) -> Response:
    confirm_request = domain.parse_confirm_body(await json_body(request))
    slot = idempotency_slot(request, secret_key)
    reply = await service.confirm(sandbox, confirm_request, slot, english(request))
    CONFIRMS.labels(str(reply.status), str(reply.drop).lower()).inc()
    return reply_response(reply)


@router.get("/v1/payments/orders/{order_id}")
async def payment_by_order(
    order_id: str, request: Request, sandbox: SandboxDep, _: SecretKeyDep
) -> Response:
    return reply_response(await service.payment_by_order(sandbox, order_id, english(request)))


@router.get("/v1/payments/{payment_key}")
async def payment_by_key(
    payment_key: str, request: Request, sandbox: SandboxDep, _: SecretKeyDep
) -> Response:
    return reply_response(await service.payment_by_key(sandbox, payment_key, english(request)))


@router.post("/v1/payments/{payment_key}/cancel")
async def cancel(
    payment_key: str, request: Request, sandbox: SandboxDep, secret_key: SecretKeyDep
) -> Response:
    domain.check_payment_key(payment_key)
    cancel_request = domain.parse_cancel_body(await json_body(request))
    slot = idempotency_slot(request, secret_key)
    reply = await service.cancel(sandbox, payment_key, cancel_request, slot, english(request))
    return reply_response(reply)


@router.get("/v1/transactions")
async def transactions(request: Request, sandbox: SandboxDep, _: SecretKeyDep) -> Response:
    query = domain.parse_transaction_query(request.query_params)
    return json_response(await service.transactions(sandbox, query))


# ---------------------------------------------------------------- the sandbox's own endpoints


@router.post("/sandbox/console/payments/{payment_key}/cancel")
async def console_cancel(payment_key: str, request: Request, sandbox: SandboxDep) -> Response:
    """A cancel made in the merchant console: no Basic auth, no Idempotency-Key."""
    domain.check_payment_key(payment_key)
    cancel_request = domain.parse_cancel_body(await json_body(request))
    reply = await service.cancel(
        sandbox, payment_key, cancel_request, None, english(request), console=True
    )
    return reply_response(reply)


@router.get("/sandbox/ledger")
async def ledger(sandbox: SandboxDep, orderId: str | None = None) -> Response:  # noqa: N803
    return json_response(await service.ledger(sandbox, orderId))


@router.get("/sandbox/faults")
async def get_faults(sandbox: SandboxDep) -> Response:
    knobs = await sandbox.refresh_knobs()
    return json_response(knobs.faults.to_json())


@router.put("/sandbox/faults")
async def put_faults(request: Request, sandbox: SandboxDep) -> Response:
    updated = await service.update_faults(sandbox, await json_body(request))
    log.info("faults changed", extra={"faults": updated.to_json()})
    return json_response(updated.to_json())


@router.delete("/sandbox/faults")
async def reset_faults(sandbox: SandboxDep) -> Response:
    await sandbox.set_faults(Faults())
    log.info("faults reset")
    return json_response(Faults().to_json())


@router.get("/sandbox/scripts")
async def list_scripts(sandbox: SandboxDep) -> Response:
    return json_response(await service.scripts(sandbox))


@router.put("/sandbox/scripts/{order_id}")
async def put_script(order_id: str, request: Request, sandbox: SandboxDep) -> Response:
    try:
        domain.check_order_id(order_id)
    except domain.InvalidField as exc:
        raise PgError("INVALID_REQUEST", exc.reason) from None
    script = parse_script(await json_body(request))
    await service.put_script(sandbox, order_id, script)
    return json_response({"orderId": order_id, **script.to_json()})


@router.delete("/sandbox/scripts/{order_id}")
async def delete_script(order_id: str, sandbox: SandboxDep) -> Response:
    if not await service.delete_script(sandbox, order_id):
        raise PgError("NOT_FOUND", "no script for this orderId")
    return Response(status_code=204)


@router.get("/sandbox/webhook")
async def get_webhook(sandbox: SandboxDep) -> Response:
    knobs = await sandbox.refresh_knobs()
    return json_response({"url": knobs.webhook_url})


@router.put("/sandbox/webhook")
async def put_webhook(request: Request, sandbox: SandboxDep) -> Response:
    url = domain.parse_webhook_registration(await json_body(request))
    await sandbox.set_webhook_url(url)
    log.info("webhook url registered", extra={"url": url})
    return json_response({"url": url})


@router.post("/sandbox/generate")
async def generate(request: Request, sandbox: SandboxDep) -> Response:
    generate_request = domain.parse_generate_body(await json_body(request))
    return json_response(await service.generate(sandbox, generate_request))


# ---------------------------------------------------------------- errors and the edge


def refusal(where: str, why: str) -> Response:
    """Input :class:`shared.http.InputGuard` refuses, answered as the PG answers a bad request."""
    return json_response(PgError("INVALID_REQUEST", f"{where} {why}").body(english=True), 400)


def install_error_handlers(app: FastAPI) -> None:
    """Every error, expected or not, in the PG's shape; never a stack trace."""

    async def on_pg_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PgError)
        return json_response(exc.body(english(request)), exc.status)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code)
        error = PgError(code) if code else PgError("INVALID_REQUEST", str(exc.detail)[:100])
        return json_response(error.body(english(request)), exc.status_code)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"path": request.url.path})
        error = PgError("FAILED_INTERNAL_SYSTEM_PROCESSING")
        return json_response(error.body(english(request)), error.status)

    app.add_exception_handler(PgError, on_pg_error)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


class DropResponseMiddleware:
    """Closes the connection instead of answering when a route marked its response to drop.

    The status line and headers (with Content-Length) go out, the body never does, and the app
    returns: uvicorn then closes the transport, so the caller sees a broken response (httpx:
    ``RemoteProtocolError``) although the change behind it has committed.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        dropping = False

        async def guarded_send(message: Message) -> None:
            nonlocal dropping
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if (DROP_HEADER, b"1") in headers:
                    dropping = True
                    headers.remove((DROP_HEADER, b"1"))
                    message = {**message, "headers": headers}
            elif dropping:
                return
            await send(message)

        await self.app(scope, receive, guarded_send)


class _QuietDrops(logging.Filter):
    """uvicorn reports every dropped response as an error; those are on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


def quiet_dropped_responses() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in logger.filters):
        logger.addFilter(_QuietDrops())
