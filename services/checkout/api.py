"""The browser-facing routes: the PG's redirect targets and the result page.

These are browser routes, so errors are HTML pages (never JSON, never a stack trace). Domain
exceptions map to pages in :data:`ERROR_PAGES` and :func:`install_error_pages`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.checkout import pages, repository, service
from services.checkout.config import Settings
from services.checkout.domain import (
    FailRedirect,
    InvalidRedirect,
    Receipt,
    clean_user_agent,
    client_ip,
    parse_fail,
    parse_result,
    parse_success,
)
from services.checkout.metrics import REDIRECTS, WEBHOOKS
from services.checkout.webhook import WebhookRefused, parse_webhook
from shared.clock import Clock
from shared.http import PoolDep
from shared.logging import order_context
from shared.outbox import Handoff
from shared.problems import Problem, problem_response

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
RESULT_PATH = "/payments/result"
NO_STORE = {"Cache-Control": "no-store"}

# The database or the network failed: the request may be retried as it is.
UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.OperatorInterventionError,
)

ERROR_PAGES = {
    404: "Page not found",
    405: "This page cannot be used that way",
}


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_handoff(request: Request) -> Handoff:
    handoff: Handoff = request.app.state.handoff
    return handoff


HandoffDep = Annotated[Handoff, Depends(get_handoff)]

router = APIRouter()


def html(content: str, status_code: int = 200) -> HTMLResponse:
    headers = {**NO_STORE, "Content-Security-Policy": pages.CONTENT_SECURITY_POLICY}
    return HTMLResponse(content, status_code=status_code, headers=headers)


def see_other(path: str, query: dict[str, str]) -> RedirectResponse:
    return RedirectResponse(f"{path}?{urlencode(query)}", status_code=303, headers=NO_STORE)


def receipt_of(request: Request) -> Receipt:
    """When (on the database's clock, which approval judges the confirm window on), from where."""
    peer = request.client.host if request.client else None
    clock: Clock = request.app.state.clock
    return Receipt(
        received_at=clock(),
        client_ip=client_ip(
            request.headers.get("x-real-ip"), request.headers.get("x-forwarded-for"), peer
        ),
        user_agent=clean_user_agent(request.headers.get("user-agent")),
    )


@router.get("/payments/success")
async def payment_succeeded(request: Request, pool: PoolDep, handoff: HandoffDep) -> Response:
    """The PG authenticated the buyer: record it once, then show the live result."""
    redirect = parse_success(request.query_params.multi_items())
    with order_context(redirect.order_id):
        outcome = await service.record_success(pool, handoff, redirect, receipt_of(request))
        log.info("success redirect recorded", extra={"outcome": outcome.value})
    REDIRECTS.labels("success").inc()
    # The paymentKey lets the page tell this attempt's outcome from an earlier attempt's failure.
    return see_other(
        RESULT_PATH, {"orderId": redirect.order_id, "paymentKey": redirect.payment_key}
    )


@router.get("/payments/fail")
async def payment_failed(request: Request, pool: PoolDep) -> Response:
    """The buyer's authentication failed or was canceled: record it, then show why."""
    redirect = parse_fail(request.query_params.multi_items())
    with order_context(redirect.order_id):
        await service.record_failure(pool, redirect, receipt_of(request))
    REDIRECTS.labels("fail").inc()
    return see_other(RESULT_PATH, _failure_query(redirect))


def _failure_query(redirect: FailRedirect) -> dict[str, str]:
    query = {"code": redirect.code}
    if redirect.order_id is not None:
        query = {"orderId": redirect.order_id, **query}
    return query


@router.get(RESULT_PATH)
async def payment_result(request: Request, settings: SettingsDep) -> Response:
    query = parse_result(request.query_params.multi_items())
    page = pages.result_page(
        query.order_id,
        query.failure,
        poll_interval_ms=settings.result_poll_interval_ms,
        poll_limit=settings.result_poll_limit,
        payment_key=query.payment_key,
    )
    return html(page)


@router.post("/webhooks/toss")
async def toss_webhook(request: Request, pool: PoolDep, handoff: HandoffDep) -> Response:
    """The PG's webhook: recorded once by transmission id and answered at once; what it says is
    checked with the PG later (approval asks about the payment it names)."""
    try:
        notice = parse_webhook(
            request.headers.get("tosspayments-webhook-transmission-id"),
            request.headers.get("tosspayments-webhook-transmission-retried-count"),
            await request.body(),
        )
    except WebhookRefused as refused:
        log.info("webhook refused", extra={"code": refused.code})
        WEBHOOKS.labels("refused").inc()
        return problem_response(Problem(refused.status, refused.code, refused.detail))
    with order_context(notice.order_id):
        try:
            new = await service.record_webhook(pool, handoff, notice)
        except UNAVAILABLE:
            return problem_response(
                Problem(503, "DATABASE_UNAVAILABLE", "The webhook could not be recorded; retry.")
            )
        log.info("webhook received", extra={"event_type": notice.event_type, "new": new})
    WEBHOOKS.labels("accepted" if new else "duplicate").inc()
    return JSONResponse({"status": "accepted" if new else "duplicate"}, headers=NO_STORE)


@router.get("/healthz")
async def health(pool: PoolDep) -> Response:
    if await repository.is_ready(pool):
        return JSONResponse({"status": "ok"}, headers=NO_STORE)
    return problem_response(Problem(503, "DATABASE_UNAVAILABLE", "The database does not answer."))


def refusal(where: str, why: str) -> Response:
    """The page for input :class:`shared.http.InputGuard` refuses (a link nobody should send)."""
    log.info("unreadable request", extra={"where": where, "reason": why})
    return html(pages.error_page(400, "This link contains characters we cannot read"), 400)


def install_error_pages(app: FastAPI) -> None:
    """Every error of the app becomes a small HTML page with the right status."""

    async def on_invalid_redirect(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, InvalidRedirect)
        log.info("malformed redirect", extra={"path": request.url.path, "reason": str(exc)})
        return html(pages.invalid_redirect_page(exc.errors), 400)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        message = ERROR_PAGES.get(exc.status_code, "This request could not be handled")
        return html(pages.error_page(exc.status_code, message), exc.status_code)

    async def on_unavailable(request: Request, exc: Exception) -> Response:
        # Recording is idempotent, so the buyer's refresh of the same URL is the retry.
        log.error("database unavailable", extra={"path": request.url.path, "error": repr(exc)})
        message = "We could not record this just now. Please refresh this page in a moment."
        return html(pages.error_page(503, message), 503)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"path": request.url.path})
        message = "Something went wrong on our side. Please refresh in a moment."
        return html(pages.error_page(500, message), 500)

    app.add_exception_handler(InvalidRedirect, on_invalid_redirect)
    app.add_exception_handler(StarletteHTTPException, on_http)
    for unavailable in UNAVAILABLE:
        app.add_exception_handler(unavailable, on_unavailable)
    app.add_exception_handler(Exception, on_unexpected)


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/payments/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_error_pages(app)
