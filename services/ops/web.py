"""The console's HTTP edge: HTTP Basic, CSRF, server-rendered pages (Jinja2, autoescaped).

- Every route under ``/ops/`` needs the operator's credentials (``OPERATOR_USER`` /
  ``OPERATOR_PASSWORD``, compared in constant time): 401 with ``WWW-Authenticate`` without or
  with wrong ones; 403 for everything while no credentials are configured (the console is
  closed).
- Every POST carries the token of the ``ops_csrf`` cookie (HttpOnly, SameSite=Strict, set by
  the pages) in its form's ``csrf`` field, and comes from our own origin (``Origin``, else
  ``Referer``, names the request's host: as the storefront's session does). Anything else is
  refused with 403 before the action is looked at.
- Bad input gets a 400 page naming what is wrong; nothing is done or audited.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from services.ops.config import Settings
from services.ops.service import (
    Console,
    InvalidInput,
    Operator,
    Outcome,
    Result,
    shown_finding,
    shown_reason,
)
from shared.logging import masked
from shared.origin import same_origin

HERE = Path(__file__).parent
CSRF_COOKIE = "ops_csrf"
REALM = "operator console"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
STATUS = {
    Outcome.DONE: 200,
    Outcome.NOT_FOUND: 404,
    Outcome.CONFLICT: 409,
    Outcome.UNAVAILABLE: 503,
}


class Refused(Exception):
    """A request the console answers with an error page (and, for 401, a challenge)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def templates() -> Jinja2Templates:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined
    )
    env.filters["mask"] = masked
    env.filters["age"] = _age
    env.filters["when"] = _when
    env.globals["finding"] = shown_finding
    env.globals["reason"] = shown_reason
    return Jinja2Templates(env=env)


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z") if moment else "-"


# --- dependencies ----------------------------------------------------------------------------

_basic = HTTPBasic(auto_error=False, realm=REALM)


def _matches(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode(), expected.encode())


async def operator(
    request: Request, given: Annotated[HTTPBasicCredentials | None, Depends(_basic)]
) -> Operator:
    settings: Settings = request.app.state.settings
    expected = settings.credentials
    if expected is None:
        raise Refused(
            403,
            "Console closed",
            "The operator console is closed: no operator credentials are configured"
            " (set OPERATOR_USER and OPERATOR_PASSWORD).",
        )
    # Both compared whatever the first gives: the time taken says nothing about either.
    user_ok = _matches(given.username if given else "", expected[0])
    password_ok = _matches(given.password if given else "", expected[1])
    if given is None or not (user_ok and password_ok):
        raise Refused(401, "Sign in", "The operator console needs the operator's credentials.")
    return Operator(given.username, request.client.host if request.client else None)


async def csrf_checked(
    request: Request,
    operator: Annotated[Operator, Depends(operator)],
    csrf: Annotated[str, Form()] = "",
) -> Operator:
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not same_origin(origin, request.headers.get("host")):
        raise Refused(403, "Refused", "This request did not come from the console's own page.")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not (cookie and csrf and _matches(csrf, cookie)):
        raise Refused(
            403, "Refused", "The form's security token is missing or stale: reload the page."
        )
    return operator


async def get_console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


OperatorDep = Annotated[Operator, Depends(operator)]
CheckedDep = Annotated[Operator, Depends(csrf_checked)]
ConsoleDep = Annotated[Console, Depends(get_console)]

# --- routes ----------------------------------------------------------------------------------

router = APIRouter(prefix="/ops")


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, who: OperatorDep, console: ConsoleDep) -> Response:
    token = _token(request)
    page = await console.overview()
    context = {
        "o": page,
        "operator": who.name,
        "csrf": token,
        "stuck_after": _age(console.confirm_window_seconds),
    }
    return _page(request, "overview.html", context, 200, token)


@router.post("/refunds/{refund_id}/retry", response_class=HTMLResponse)
async def retry_refund(
    request: Request, refund_id: str, who: CheckedDep, console: ConsoleDep
) -> Response:
    return _result(request, await console.retry_refund(who, refund_id))


@router.post("/dead-letters/replay", response_class=HTMLResponse)
async def replay(
    request: Request,
    who: CheckedDep,
    console: ConsoleDep,
    queue: Annotated[str, Form()] = "",
    message_id: Annotated[str, Form()] = "",
) -> Response:
    return _result(request, await console.replay(who, queue, message_id))


def _token(request: Request) -> str:
    token = request.cookies.get(CSRF_COOKIE, "")
    return token if 32 <= len(token) <= 64 and token.isalnum() else secrets.token_hex(24)


def _page(
    request: Request,
    name: str,
    context: Mapping[str, object],
    status: int,
    token: str | None = None,
) -> Response:
    response = request.app.state.templates.TemplateResponse(request, name, dict(context), status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    if token is not None:
        response.set_cookie(
            CSRF_COOKIE,
            token,
            path="/ops/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    assert isinstance(response, Response)
    return response


def _result(request: Request, result: Result) -> Response:
    ok = result.outcome is Outcome.DONE
    context = {"title": "Done" if ok else "Not done", "message": result.message}
    return _page(request, "message.html", context, STATUS[result.outcome])


def refusal(where: str, why: str) -> Response:
    """What :class:`shared.http.InputGuard` answers for unreadable input (no template: the
    guard runs outside the app's state)."""
    text = f"Bad request: unreadable characters in the {where}; nothing was done.\n"
    return PlainTextResponse(text, 400, headers={"Cache-Control": "no-store"})


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ops/static", StaticFiles(directory=HERE / "static"), name="ops-static")

    async def on_refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        response = _page(
            request, "message.html", {"title": exc.title, "message": exc.message}, exc.status
        )
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"'
        return response

    async def on_invalid(request: Request, exc: Exception) -> Response:
        context = {"title": "Bad request", "message": f"Nothing was done: {exc}."}
        return _page(request, "message.html", context, 400)

    app.add_exception_handler(Refused, on_refused)
    app.add_exception_handler(InvalidInput, on_invalid)
